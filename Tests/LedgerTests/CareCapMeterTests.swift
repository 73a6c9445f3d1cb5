import LedgerService
import RPC
import Testing

/// How the care cap is metered, as a table (no database).
@Suite("Care cap metering")
struct CareCapMeterTests {
    struct Row: Sendable, CustomTestStringConvertible {
        let name: String
        let amount: Int64, eligible: Bool, rate: Int64, dailyLiving: Int64
        let toward: Int64, excluded: Int64, above: Int64
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "council rate equals the price", amount: 50_000, eligible: true, rate: 50_000, dailyLiving: 0, toward: 50_000, excluded: 0, above: 0),
        Row(name: "council rate below the price: only the rate counts", amount: 60_000, eligible: true, rate: 45_000, dailyLiving: 0,
            toward: 45_000, excluded: 0, above: 15_000),
        Row(name: "council rate above the price: the price counts", amount: 40_000, eligible: true, rate: 45_000, dailyLiving: 0,
            toward: 40_000, excluded: 0, above: 0),
        Row(name: "daily living costs never count", amount: 120_000, eligible: true, rate: 100_000, dailyLiving: 23_000,
            toward: 77_000, excluded: 23_000, above: 20_000),
        Row(name: "not eligible: nothing counts", amount: 30_000, eligible: false, rate: 30_000, dailyLiving: 0, toward: 0, excluded: 0, above: 0),
        Row(name: "daily living larger than the council rate counts nothing", amount: 30_000, eligible: true, rate: 10_000, dailyLiving: 15_000,
            toward: 0, excluded: 10_000, above: 20_000),
    ]

    @Test("each invoice's contribution", arguments: rows)
    func contribution(row: Row) {
        let c = CareCapMeter.contribution(amount: row.amount, eligible: row.eligible, councilRate: row.rate, dailyLiving: row.dailyLiving)
        #expect(c.towardCap == row.toward)
        #expect(c.dailyLivingExcluded == row.excluded)
        #expect(c.aboveCouncilRate == row.above)
    }

    static func date(_ s: String) -> CalendarDate { CalendarDate(s)! }

    @Test("an invoice crossing the cap counts only up to it; later invoices add nothing")
    func crossingTheCap() {
        let policies = [CareCapMeter.Policy(effectiveFrom: Self.date("1900-01-01"), cap: 100_000)]
        let reading = CareCapMeter.meter([
            .init(serviceDate: Self.date("2026-01-01"), towardCap: 80_000),
            .init(serviceDate: Self.date("2026-02-01"), towardCap: 50_000),  // crosses: only 20,000 counts
            .init(serviceDate: Self.date("2026-03-01"), towardCap: 10_000),
        ], policies: policies)
        #expect(reading.accrued == 100_000)
        #expect(reading.steps.map(\.accrued) == [80_000, 100_000, 100_000])
    }

    @Test("a policy change applies from its date: care before it meters against the old cap")
    func policyChangeAcrossDates() {
        let policies = [
            CareCapMeter.Policy(effectiveFrom: Self.date("1900-01-01"), cap: 7_400_000),
            CareCapMeter.Policy(effectiveFrom: Self.date("2027-04-01"), cap: 8_600_000),
        ]
        #expect(CareCapMeter.policy(on: Self.date("2027-03-31"), among: policies)?.cap == 7_400_000)
        #expect(CareCapMeter.policy(on: Self.date("2027-04-01"), among: policies)?.cap == 8_600_000)
        let reading = CareCapMeter.meter([
            .init(serviceDate: Self.date("2027-03-01"), towardCap: 7_500_000),  // capped at £74,000 then
            .init(serviceDate: Self.date("2027-05-01"), towardCap: 500_000),    // the new cap allows more
        ], policies: policies)
        #expect(reading.steps.map(\.accrued) == [7_400_000, 7_900_000])
    }

    @Test("refunds and reversals reduce the total, never below zero")
    func reductions() {
        let policies = [CareCapMeter.Policy(effectiveFrom: Self.date("1900-01-01"), cap: 100_000)]
        let reading = CareCapMeter.meter([
            .init(serviceDate: Self.date("2026-01-01"), towardCap: 30_000),
            .init(serviceDate: Self.date("2026-01-05"), towardCap: -10_000),
            .init(serviceDate: Self.date("2026-01-06"), towardCap: -50_000),
        ], policies: policies)
        #expect(reading.accrued == 0)
    }

    @Test("weekly rate over 12 weeks and the projected date within 18 months")
    func projection() {
        let today = Self.date("2026-11-26")
        var lines: [CareCapMeter.Line] = []
        for week in 0..<12 { lines.append(.init(serviceDate: today.adding(days: -7 * week), towardCap: 50_000)) }
        lines.sort { $0.serviceDate < $1.serviceDate }
        let reading = CareCapMeter.meter(lines, policies: [CareCapMeter.Policy(effectiveFrom: Self.date("1900-01-01"), cap: 7_400_000)])
        let rate = CareCapMeter.weeklyRate(reading, today: today)
        #expect(rate == 50_000)
        let projected = CareCapMeter.projectedCapDate(accrued: reading.accrued, cap: 7_400_000, weeklyRate: rate, today: today)
        #expect(projected == nil)  // (7,400,000 − 600,000) ÷ 50,000 = 136 weeks: beyond 18 months
        let near = CareCapMeter.projectedCapDate(accrued: 7_000_000, cap: 7_400_000, weeklyRate: 50_000, today: today)
        #expect(near == today.adding(days: 56))
    }
}
