import Contracts
import Foundation
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import Testing

@Suite("Repeated refusals in the access log")
struct RepeatedRefusalTests {
    @Test("a caller refused again and again gets a few rows, then one row counting the rest; allowed reads always get a row each")
    func repeatedRefusalsAreCounted() async throws {
        try await RecordsHarness.with(refusals: RefusalLog(perWindow: 3, window: .seconds(3600))) { h in
            let p = try await h.people()
            let person = p.person.account.id
            var summary = Wholecare_Records_V1_GetSummaryRequest()
            summary.personID = person
            for attempt in 1...20 {
                summary.purpose = "attempt \(attempt)"
                let denied = await #expect(throws: RPCError.self) {
                    try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.nurseElsewhere.token))
                }
                #expect(denied?.code == .permissionDenied, "every attempt is still refused")
            }
            // Another part is counted on its own.
            var details = Wholecare_Records_V1_GetDetailsRequest()
            details.personID = person
            await #expect(throws: RPCError.self) {
                try await h.records.getDetails(details, options: RecordsHarness.bearer(p.nurseElsewhere.token))
            }
            #expect(try await h.accessLogCount(person) == 4, "three refusals of the summary and one of the details have rows")
            // Allowed reads are never counted together, however many.
            summary.purpose = "review"
            for _ in 1...8 { _ = try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.coordinator.token)) }
            #expect(try await h.accessLogCount(person) == 12)

            // The seventeen refusals held back become one row (written at shutdown, here).
            await h.service.writeHeldRefusals(all: true)
            #expect(try await h.accessLogCount(person) == 13)
            var list = Wholecare_Records_V1_ListAccessLogRequest()
            list.personID = person
            let log = try await h.records.listAccessLog(list, options: RecordsHarness.bearer(p.person.accessToken)).entries
            let counted = try #require(log.first)
            #expect(counted.repeats == 17)
            #expect(counted.allowed == false)
            #expect(counted.part == "summary")
            #expect(counted.basis.hasPrefix("denied"))
            #expect(counted.purpose == "attempt 20", "the row carries the last attempt's purpose")
            #expect(counted.accessorName == "Pro nurse@elsewhere.test")
            #expect(!counted.firstAt.isEmpty && counted.firstAt <= counted.at, "when the counted refusals began and ended")
            #expect(log.dropFirst().allSatisfy { $0.repeats == 1 && $0.firstAt.isEmpty })
            #expect(log.map(\.repeats).reduce(0, +) == 29, "every attempt is counted: 21 refusals and 8 reads")
            // Nothing is written twice.
            await h.service.writeHeldRefusals(all: true)
            #expect(try await h.accessLogCount(person) == 13)
        }
    }

    @Test("refusals counted in a window are written once it is over, and the next refusal opens a new window")
    func windows() {
        let log = RefusalLog(perWindow: 2, window: .seconds(60), capacity: 100)
        let start = ContinuousClock.now
        let key = RefusalLog.Key(accessorID: "a", accessorKind: "professional", organisation: nil, person: UUID(), action: "read", part: "summary")
        func refusal(_ purpose: String) -> RefusalLog.Refusal {
            RefusalLog.Refusal(key: key, basis: "denied: no relationship", purpose: purpose)
        }
        #expect(log.admit(refusal("1"), now: start))
        #expect(log.admit(refusal("2"), now: start + .seconds(1)))
        #expect(!log.admit(refusal("3"), now: start + .seconds(2)))
        #expect(!log.admit(refusal("4"), now: start + .seconds(3)))
        #expect(log.due(now: start + .seconds(59)).isEmpty, "the window is not over yet")
        let due = log.due(now: start + .seconds(60))
        #expect(due.map(\.count) == [2])
        #expect(due.first?.purpose == "4")
        #expect(log.openWindows == 0)
        #expect(log.due(now: start + .seconds(61)).isEmpty, "written once")

        // A window that is over when the next refusal comes: that refusal gets a row, and
        // what the old window counted still waits to be written.
        #expect(log.admit(refusal("5"), now: start + .seconds(100)))
        #expect(log.admit(refusal("6"), now: start + .seconds(100)))
        #expect(!log.admit(refusal("7"), now: start + .seconds(101)))
        #expect(log.admit(refusal("8"), now: start + .seconds(200)))
        #expect(log.due(now: start + .seconds(201)).map(\.purpose) == ["7"])
        // At shutdown, what an open window has counted is written too; what could not be
        // written is offered again.
        #expect(log.admit(refusal("9"), now: start + .seconds(202)))
        #expect(!log.admit(refusal("10"), now: start + .seconds(203)))
        #expect(!log.admit(refusal("11"), now: start + .seconds(203)))
        #expect(log.due(now: start + .seconds(204)).isEmpty)
        let pending = log.due(all: true, now: start + .seconds(204))
        #expect(pending.map(\.purpose) == ["11"])
        #expect(pending.map(\.count) == [2])
        #expect(pending.first.map { $0.firstAt! <= $0.lastAt! } == true)
        log.retry(pending)
        #expect(log.due(now: start + .seconds(205)) == pending)
        #expect(log.due(all: true, now: start + .seconds(206)).isEmpty)
        // A retried count and a new one of the same key become one row, adding up.
        #expect(!log.admit(refusal("12"), now: start + .seconds(207)))
        log.retry(pending)
        let merged = log.due(all: true, now: start + .seconds(208))
        #expect(merged.map(\.count) == [3])
        #expect(merged.map(\.purpose) == ["12"], "the latest reason and purpose")
        #expect(merged.first?.firstAt == pending.first?.firstAt)
    }

    @Test("when the limiter is full, a new caller's refusal is written on its own row rather than dropped")
    func capacity() {
        let log = RefusalLog(perWindow: 1, window: .seconds(60), capacity: 2)
        let start = ContinuousClock.now
        func refusal(_ accessor: String) -> RefusalLog.Refusal {
            RefusalLog.Refusal(key: .init(accessorID: accessor, accessorKind: "professional", organisation: nil, person: UUID(),
                                          action: "read", part: "summary"),
                               basis: "denied", purpose: "")
        }
        let a = refusal("a"), b = refusal("b")
        #expect(log.admit(a, now: start))
        #expect(log.admit(b, now: start))
        #expect(!log.admit(a, now: start), "a second refusal of a counted caller is held")
        for n in 0..<5 { #expect(log.admit(refusal("c\(n)"), now: start + .seconds(1)), "no room: written, not dropped") }
        #expect(log.openWindows == 2)
        // Once the windows are over, their room is reused.
        #expect(log.admit(refusal("d"), now: start + .seconds(61)))
        #expect(log.openWindows == 1)
        #expect(log.due(now: start + .seconds(62)).map(\.count) == [1], "a's held refusal was kept")
    }
}
