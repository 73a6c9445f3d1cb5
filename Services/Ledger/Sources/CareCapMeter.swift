import Foundation
import RPC

/// How the care cap is metered. No I/O: the input is the journal's care facts.
///
/// - An invoice counts only if it meets eligible needs, and then only at the rate the
///   council would pay: `min(actual, council rate)`; anything paid above that rate does
///   not count.
/// - Daily living costs (a care home's board and lodging) never count:
///   `toward cap = max(0, min(actual, council rate) − daily living)`.
/// - The cap is the policy in force on the invoice's service date; a later, lower or
///   higher cap applies to care delivered from its date on.
/// - The accrued total never exceeds the cap in force: an invoice that crosses it
///   counts only up to the cap (the rest is the council's to pay).
/// - Refunds and reversals carry negative amounts and reduce the total, never below 0.
public enum CareCapMeter {
    /// The per-invoice contribution and the parts that do not count.
    public struct Contribution: Sendable, Equatable {
        public var towardCap: Int64
        public var dailyLivingExcluded: Int64
        public var aboveCouncilRate: Int64

        /// Nothing toward the cap and nothing excluded: the care account does not change.
        public static let none = Contribution(towardCap: 0, dailyLivingExcluded: 0, aboveCouncilRate: 0)
    }

    public static func contribution(amount: Int64, eligible: Bool, councilRate: Int64, dailyLiving: Int64) -> Contribution {
        guard eligible else { return Contribution(towardCap: 0, dailyLivingExcluded: min(dailyLiving, amount), aboveCouncilRate: 0) }
        let atRate = min(amount, councilRate)
        return Contribution(
            towardCap: max(0, atRate - dailyLiving),
            dailyLivingExcluded: min(dailyLiving, atRate),
            aboveCouncilRate: max(0, amount - councilRate))
    }

    public struct Policy: Sendable, Equatable {
        public var effectiveFrom: CalendarDate
        public var cap: Int64
        public init(effectiveFrom: CalendarDate, cap: Int64) {
            self.effectiveFrom = effectiveFrom
            self.cap = cap
        }
    }

    /// One journal line that moves the meter.
    public struct Line: Sendable, Equatable {
        public var serviceDate: CalendarDate
        public var towardCap: Int64
        public init(serviceDate: CalendarDate, towardCap: Int64) {
            self.serviceDate = serviceDate
            self.towardCap = towardCap
        }
    }

    /// The policy in force on a date (the latest that started on or before it).
    public static func policy(on date: CalendarDate, among policies: [Policy]) -> Policy? {
        policies.filter { $0.effectiveFrom <= date }.max { $0.effectiveFrom < $1.effectiveFrom }
    }

    public struct Reading: Sendable, Equatable {
        /// Accrued toward the cap, never above the cap in force at each step.
        public var accrued: Int64
        /// Cumulative accrued after each line, by service date (for charts and projections).
        public var steps: [(date: CalendarDate, accrued: Int64)]

        public static func == (lhs: Reading, rhs: Reading) -> Bool {
            lhs.accrued == rhs.accrued && lhs.steps.map(\.accrued) == rhs.steps.map(\.accrued)
                && lhs.steps.map(\.date) == rhs.steps.map(\.date)
        }
    }

    /// Replays lines in service-date order (the caller keeps ties in journal order).
    public static func meter(_ lines: [Line], policies: [Policy]) -> Reading {
        var accrued: Int64 = 0
        var steps: [(CalendarDate, Int64)] = []
        for line in lines {
            let cap = policy(on: line.serviceDate, among: policies)?.cap ?? .max
            if line.towardCap >= 0 {
                accrued = accrued >= cap ? accrued : min(cap, accrued + line.towardCap)
            } else {
                accrued = max(0, accrued + line.towardCap)
            }
            steps.append((line.serviceDate, accrued))
        }
        return Reading(accrued: accrued, steps: steps)
    }

    /// Average accrued per week over the `weeks` before `today`, from the steps.
    public static func weeklyRate(_ reading: Reading, today: CalendarDate, weeks: Int = 12) -> Int64 {
        let start = today.adding(days: -7 * weeks)
        let before = reading.steps.last { $0.date < start }?.accrued ?? 0
        let now = reading.steps.last { $0.date <= today }?.accrued ?? 0
        return max(0, (now - before) / Int64(weeks))
    }

    /// The date the cap would be reached at `weeklyRate`, if that is within 18 months.
    public static func projectedCapDate(accrued: Int64, cap: Int64, weeklyRate: Int64, today: CalendarDate) -> CalendarDate? {
        guard accrued < cap, weeklyRate > 0 else { return nil }
        let weeks = Double(cap - accrued) / Double(weeklyRate)
        let days = Int((weeks * 7).rounded(.up))
        guard days <= 548 else { return nil }  // 18 months
        return today.adding(days: days)
    }
}
