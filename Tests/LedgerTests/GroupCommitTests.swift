import Contracts
import Foundation
import LedgerService
import Postgres
import RPC
import ServiceTestSupport
import TestSupport
import Synchronization
import Testing

/// Single invoices that arrive while another is being written are committed together
/// (`InvoiceCoalescer`); each must still behave exactly as if it had been posted alone.
/// The harness checks the double-entry and budget invariants after each test.
@Suite("Budget ledger: invoices committed together")
struct GroupCommitTests {
    @Test("concurrent invoices against one budget: exactly those that fit are posted, the rest refused, nothing overspent")
    func concurrentInvoicesShareCommits() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency
            // 40 invoices of £30 against £1,000: 33 fit, 7 must be refused.
            let results = try await withThrowingTaskGroup(of: String?.self) { group in
                for n in 0..<40 {
                    group.addTask {
                        let request = LedgerHarness.invoice(budget: budget, provider: agency, amount: 3_000, key: "together-\(n)", rate: 2_500)
                        do {
                            return try await ledger.postInvoice(request, options: LedgerHarness.bearer(token)).id
                        } catch let error as RPCError where error.code == .failedPrecondition {
                            return nil
                        }
                    }
                }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            let posted = results.compactMap { $0 }
            #expect(posted.count == 33)
            #expect(Set(posted).count == 33, "every posted invoice has its own transaction")
            #expect(try await h.transactionCount() == 34)  // the allocation and 33 invoices
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            let b = try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator))
            #expect(b.availablePence == 1_000)
            #expect(b.spentPence == 99_000)
            // The care account counted each posted invoice at the council rate, once.
            let journal = try await h.store.careJournal(person: UUID(uuidString: p.personID)!)
            #expect(journal.stored.eligible == 33 * 2_500)
            #expect(journal.lines.reduce(0) { $0 + $1.towardCap } == 33 * 2_500)
            // Every posted invoice reads back as written.
            for id in posted {
                let t = try #require(try await h.store.transaction(UUID(uuidString: id)!))
                #expect(t.amount == 3_000 && t.kind == "purchase" && t.postings.count == 2)
            }
        }
    }

    @Test("a key sent twice at the same time while others are in flight makes one transaction; both callers get it")
    func repeatedKeysAmongConcurrentInvoices() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 10_000_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency
            let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for n in 0..<30 {
                    let key = "pair-\(n / 2)"
                    group.addTask {
                        let request = LedgerHarness.invoice(budget: budget, provider: agency, amount: Int64(1_000 + n / 2), key: key)
                        return (n / 2, try await ledger.postInvoice(request, options: LedgerHarness.bearer(token)).id)
                    }
                }
                return try await group.reduce(into: [Int: Set<String>]()) { $0[$1.0, default: []].insert($1.1) }
            }
            #expect(answers.count == 15)
            #expect(answers.values.allSatisfy { $0.count == 1 }, "both callers of a key got the same transaction")
            #expect(try await h.transactionCount() == 16)
            // While others are in flight, a key reused with another body is still refused.
            let reused = await #expect(throws: RPCError.self) {
                async let other = ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 777, key: "fresh-key"),
                                                     options: LedgerHarness.bearer(token))
                _ = try await ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 999, key: "pair-0"),
                                                 options: LedgerHarness.bearer(token))
                _ = try await other
            }
            #expect(reused?.code == .alreadyExists)
            // Keys belong to their caller: the same key from the provider system and from
            // the care coordinator, sent together, makes two transactions.
            let coordinator = p.coordinator
            async let fromProvider = ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 1_111, key: "shared-key"),
                                                        options: LedgerHarness.bearer(token))
            async let fromCoordinator = ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 2_222, key: "shared-key"),
                                                           options: LedgerHarness.bearer(coordinator))
            let (a, b) = try await (fromProvider, fromCoordinator)
            #expect(a.id != b.id)
            #expect(a.amountPence == 1_111 && b.amountPence == 2_222)
        }
    }

    @Test("invoices that queue behind a write in progress are committed as one group; an overdraft in a group refuses only its invoice")
    func queuedInvoicesAreGrouped() async throws {
        // The held lock must not count as a stall here (see the next test), or the queued
        // invoices would be posted on their own instead of together.
        try await LedgerHarness.with(invoiceStallAfter: .seconds(60)) { h in
            let p = try await h.people()
            let first = try await h.budget(for: p, allocate: 100_000)
            let second = try await h.budget(for: p, allocate: 50_000, name: "Second budget")
            let ledger = h.ledger, db = h.db
            let post = Self.poster(h, p)
            /// Holds the first budget's row so that the invoice written first waits on it,
            /// sends the others, and lets go once they are all queued behind that write
            /// (or 30 s pass); returns their results.
            func whileWriterIsHeld(_ queued: [(String, Int64, String)]) async throws -> [Result<String, RPCError>] {
                let (held, holding) = AsyncStream.makeStream(of: Int.self)
                let (done, finish) = AsyncStream.makeStream(of: Void.self)
                let lock = Task {
                    try await db.withTransaction { s in
                        try await s.query("SELECT id FROM budgets WHERE id = \(UUID(uuidString: first)!) FOR UPDATE")
                        holding.yield(try await s.query("SELECT pg_backend_pid() AS pid").first!.decode("pid", as: Int.self))
                        await Self.wait(for: done, atMost: .seconds(30))
                    }
                }
                var signals = held.makeAsyncIterator()
                let holder = try #require(await signals.next())
                let queuedBefore = h.store.invoicesQueued
                let blocked = Task { try await post(first, 100, "blocked-\(queued.count)") }
                try await Self.waitUntilBlocked(by: holder, db: db)
                let sending = Task {
                    await withTaskGroup(of: (Int, Result<String, RPCError>).self) { group in
                        for (n, invoice) in queued.enumerated() {
                            group.addTask {
                                do {
                                    return (n, .success(try await post(invoice.0, invoice.1, invoice.2).id))
                                } catch let error as RPCError {
                                    return (n, .failure(error))
                                } catch {
                                    return (n, .failure(RPCError(code: .unknown, message: "\(error)")))
                                }
                            }
                        }
                        return await group.reduce(into: [Int: Result<String, RPCError>]()) { $0[$1.0] = $1.1 }
                    }
                }
                let giveUp = ContinuousClock.now + .seconds(30)
                while h.store.invoicesQueued - queuedBefore < queued.count && ContinuousClock.now < giveUp {
                    try await Task.sleep(for: .milliseconds(5))
                }
                finish.yield()
                let results = await sending.value
                _ = try await blocked.value
                try await lock.value
                return queued.indices.map { results[$0]! }
            }

            // Round one: everything fits. The queued invoices go as one group, and a key
            // already in flight waits for it and gets the same transaction.
            let before = h.store.invoiceGroups
            let one = try await whileWriterIsHeld([
                (first, 1_000, "g-1"), (second, 2_000, "g-2"), (first, 3_000, "g-3"), (second, 4_000, "g-4"), (first, 5_000, "g-5"),
            ])
            let after = h.store.invoiceGroups
            #expect(one.filter(\.isSuccess).count == one.count)
            #expect(after.groups > before.groups, "the queued invoices were written together")
            #expect(after.invoices - before.invoices >= 2)
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = first
            #expect(try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 100_000 - 100 - 1_000 - 3_000 - 5_000)
            get.budgetID = second
            #expect(try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 50_000 - 2_000 - 4_000)

            // Round two: two invoices of £300 against the second budget's £440 cannot both
            // fit, so the group is written invoice by invoice: exactly one is refused.
            let two = try await whileWriterIsHeld([(second, 30_000, "h-1"), (second, 30_000, "h-2"), (first, 1_000, "h-3")])
            let refused = two.filter { Self.code($0) == .failedPrecondition }
            #expect(refused.count == 1)
            #expect(two.filter(\.isSuccess).count == 2)
            get.budgetID = second
            #expect(try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 44_000 - 30_000)
        }
    }

    @Test("a budget row locked by another session holds up only that budget's invoices, not those queued behind its write")
    func stalledWriteDoesNotHoldUpOtherBudgets() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let locked = try await h.budget(for: p, allocate: 100_000)
            let free = try await h.budget(for: p, allocate: 100_000, name: "Other budget")
            let ledger = h.ledger, db = h.db
            let post = Self.poster(h, p)
            let released = Flag()
            let (held, holding) = AsyncStream.makeStream(of: Int.self)
            let (done, finish) = AsyncStream.makeStream(of: Void.self)
            // Held until the other budget's invoices are checked (at most 30 s: if they
            // waited for the lock, they finish only after it is released, and fail).
            let lock = Task {
                try await db.withTransaction { s in
                    try await s.query("SELECT id FROM budgets WHERE id = \(UUID(uuidString: locked)!) FOR UPDATE")
                    holding.yield(try await s.query("SELECT pg_backend_pid() AS pid").first!.decode("pid", as: Int.self))
                    await Self.wait(for: done, atMost: .seconds(30))
                    released.set()
                }
            }
            var signals = held.makeAsyncIterator()
            let holder = try #require(await signals.next())
            let before = h.store.invoicesPostedAroundStall
            // Written first: the invoice writer waits on the locked row (checked in the
            // server, so that everything below is sent while it waits).
            let stuck = Task { try await post(locked, 1_000, "stuck") }
            try await Self.waitUntilBlocked(by: holder, db: db)
            // Sent (in a quiet run) before the write counts as stalled: these queue, then go
            // around it; in a busy one they may go around it at once.
            async let queuedEarly = post(free, 2_000, "early")
            async let queuedForLocked = post(locked, 500, "also-locked")
            try await Task.sleep(for: .milliseconds(300))
            // More invoices for the locked budget wait their turn instead of each taking a
            // connection: reads still find one free.
            let piling = (0..<8).map { n in Task { try await post(locked, 10, "pile-\(n)") } }
            // They (and "also-locked") have reached the queue before the lock's waiters are counted.
            #expect(try await waitUntil(within: .seconds(10), every: .milliseconds(5)) { h.store.invoicesQueued >= 9 },
                    "the locked budget's invoices wait in the queue")
            var read = Wholecare_Ledger_V1_GetBudgetRequest()
            read.budgetID = free
            _ = try await ledger.getBudget(read, options: LedgerHarness.bearer(p.coordinator))
            let busy = try await db.query("SELECT count(*) AS n FROM pg_stat_activity WHERE \(holder) = ANY(pg_blocking_pids(pid))")
                .first!.decode("n", as: Int.self)
            #expect(busy == 1, "only the stalled write waits on the lock: its budget's other invoices wait in the queue")
            // Sent once it is stalled: posted around the stalled write, ahead of the queued
            // invoices for the locked budget.
            let late = try await post(free, 3_000, "late")
            let early = try await queuedEarly
            #expect(!released.isSet, "the other budget's invoices did not wait for the lock")
            #expect(early.amountPence == 2_000 && late.amountPence == 3_000)
            #expect(h.store.invoicesPostedAroundStall - before >= 2)
            finish.yield()
            // The locked budget's invoices post once the lock is gone.
            let first = try await stuck.value
            let second = try await queuedForLocked
            #expect(released.isSet)
            #expect(first.amountPence == 1_000 && second.amountPence == 500)
            for task in piling { #expect(try await task.value.amountPence == 10) }
            try await lock.value
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = locked
            #expect(try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 100_000 - 1_500 - 80)
            get.budgetID = free
            #expect(try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 100_000 - 5_000)
            // Back to normal: invoices sent together after the stall still post.
            async let a = post(free, 100, "after-1")
            async let b = post(locked, 100, "after-2")
            _ = try await (a, b)
        }
    }

    @Test("an invoice that waits longer than the lock timeout is refused as UNAVAILABLE, writes nothing, and its retry posts")
    func lockTimeoutRefusesAndRetrySucceeds() async throws {
        try await LedgerHarness.with(lockTimeout: .milliseconds(300)) { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency, db = h.db
            let request = LedgerHarness.invoice(budget: budget, provider: agency, amount: 4_000, key: "held-up")
            let transactionsBefore = try await h.transactionCount()
            let (held, holding) = AsyncStream.makeStream(of: Void.self)
            let (done, finished) = AsyncStream.makeStream(of: Void.self)
            let lock = Task {
                try await db.withTransaction { s in
                    try await s.query("SELECT id FROM budgets WHERE id = \(UUID(uuidString: budget)!) FOR UPDATE")
                    holding.yield()
                    var wait = done.makeAsyncIterator()
                    _ = await wait.next()
                }
            }
            var signals = held.makeAsyncIterator()
            _ = await signals.next()
            let refused = await #expect(throws: RPCError.self) {
                _ = try await ledger.postInvoice(request, options: LedgerHarness.bearer(token))
            }
            #expect(refused?.code == .unavailable)
            #expect(refused?.message.contains("retried") == true)
            #expect(refused.map { !$0.message.contains("budgets") && !$0.message.contains("55P03") } == true, "no SQL or server detail")
            finished.yield()
            try await lock.value
            #expect(try await h.transactionCount() == transactionsBefore, "the refused invoice wrote nothing")
            let posted = try await ledger.postInvoice(request, options: LedgerHarness.bearer(token))
            #expect(posted.amountPence == 4_000)
            let replayed = try await ledger.postInvoice(request, options: LedgerHarness.bearer(token))
            #expect(replayed.id == posted.id)
        }
    }

    @Test("a group that meets the lock timeout on one budget fails only that budget's invoices; the others are posted")
    func lockTimeoutInAGroupFailsOnlyTheLockedBudget() async throws {
        // Stalls are not detected here, so that the queued invoices are written as a group.
        // The lock timeout (1 s) leaves the test time to see the first invoice waiting; if
        // a busy machine misses it, the next one for the locked budget meets it instead.
        try await LedgerHarness.with(lockTimeout: .seconds(1), invoiceStallAfter: .seconds(60)) { h in
            let p = try await h.people()
            let locked = try await h.budget(for: p, allocate: 100_000)
            let free = try await h.budget(for: p, allocate: 100_000, name: "Other budget")
            let db = h.db
            let post = Self.poster(h, p)
            let (held, holding) = AsyncStream.makeStream(of: Int.self)
            let (done, finish) = AsyncStream.makeStream(of: Void.self)
            let lock = Task {
                try await db.withTransaction { s in
                    try await s.query("SELECT id FROM budgets WHERE id = \(UUID(uuidString: locked)!) FOR UPDATE")
                    holding.yield(try await s.query("SELECT pg_backend_pid() AS pid").first!.decode("pid", as: Int.self))
                    var wait = done.makeAsyncIterator()
                    _ = await wait.next()
                }
            }
            var signals = held.makeAsyncIterator()
            let holder = try #require(await signals.next())
            @Sendable func attempt(_ budget: String, _ amount: Int64, _ key: String) async -> RPCError.Code {
                do {
                    _ = try await post(budget, amount, key)
                    return .ok
                } catch let error as RPCError {
                    return error.code
                } catch {
                    return .unknown
                }
            }
            // The writer waits on the locked row; what arrives meanwhile queues, and is
            // written as one group when the writer's wait times out.
            let stuckDone = Flag()
            let stuck = Task {
                let code = await attempt(locked, 1_000, "stuck")
                stuckDone.set()
                return code
            }
            try await Self.waitUntilBlocked(by: holder, db: db, unless: stuckDone)
            async let free1 = attempt(free, 2_000, "free-1")
            async let lockedToo = attempt(locked, 500, "locked-2")
            async let free2 = attempt(free, 3_000, "free-2")
            let results = await (stuck.value, free1, lockedToo, free2)
            finish.yield()
            try await lock.value
            #expect(results.0 == .unavailable && results.2 == .unavailable, "the locked budget's invoices timed out")
            #expect(results.1 == .ok && results.3 == .ok, "the other budget's invoices in the same group were posted")
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = free
            #expect(try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 100_000 - 5_000)
            get.budgetID = locked
            #expect(try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == 100_000)
            // Once the lock is gone, the refused invoices go through when sent again.
            #expect(await attempt(locked, 1_000, "stuck") == .ok)
            #expect(await attempt(locked, 500, "locked-2") == .ok)
        }
    }

    @Test("many concurrent invoices while budget rows are locked now and then: every call is answered, nothing is lost or overspent")
    func concurrentInvoicesAroundRepeatedStalls() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            var budgets: [String] = []
            for n in 0..<3 { budgets.append(try await h.budget(for: p, allocate: 60_000, name: "Budget \(n)")) }
            let db = h.db, post = Self.poster(h, p), all = budgets
            let before = h.store.invoicesPostedAroundStall
            let store = h.store, workersDone = Flag()
            // Another session holds one budget's row for 300 ms, five times over, and
            // goes on (up to 200 times) while the callers are still sending and no write
            // has stalled yet (on a busy machine the callers may start late).
            let locker = Task {
                var round = 0
                while round < 5 || (round < 200 && !workersDone.isSet && store.invoicesPostedAroundStall == before) {
                    defer { round += 1 }
                    let budget = UUID(uuidString: all[round % all.count])!
                    try await db.withTransaction { s in
                        try await s.query("SELECT id FROM budgets WHERE id = \(budget) FOR UPDATE")
                        try await Task.sleep(for: .milliseconds(300))
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            // Eight callers, 25 invoices each, over the three budgets; every fifth key is
            // sent twice (a retry) by the same caller.
            let answers = try await withThrowingTaskGroup(of: [(String, Int64, RPCError.Code)].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var mine: [(String, Int64, RPCError.Code)] = []
                        for n in 0..<25 {
                            let budget = all[(worker + n) % all.count]
                            let amount = Int64(500 + (worker * 37 + n * 11) % 900)
                            let key = "w\(worker)-\(n)"
                            for _ in 0..<(n % 5 == 0 ? 2 : 1) {
                                do {
                                    mine.append((key, try await post(budget, amount, key).amountPence, .ok))
                                } catch let error as RPCError {
                                    mine.append((key, amount, error.code))
                                }
                            }
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            workersDone.set()
            try await locker.value
            let calls = 8 * 25 + 8 * 5
            #expect(answers.count == calls, "every call was answered")
            let onlyFunds = answers.allSatisfy { $0.2 == .ok || $0.2 == .failedPrecondition }
            #expect(onlyFunds, "only refusals for funds")
            // A retried key got the same answer both times.
            let byKey: [String: [RPCError.Code]] = Dictionary(grouping: answers, by: \.0).mapValues { $0.map(\.2) }
            let consistent = byKey.values.allSatisfy { Set($0).count == 1 }
            #expect(consistent)
            // The budgets moved by exactly what was posted, once per key.
            var postedPence: Int64 = 0
            var postedKeys: Set<String> = []
            for (key, amount, code) in answers where code == .ok && postedKeys.insert(key).inserted { postedPence += amount }
            var spent: Int64 = 0
            for budget in all {
                let b = try await h.read(budget: budget, token: p.coordinator)
                #expect(b.availablePence >= 0)
                spent += b.spentPence
            }
            #expect(spent == postedPence)
            let transactions = try await h.transactionCount()
            #expect(transactions == 3 + postedKeys.count)
            #expect(h.store.invoicesPostedAroundStall > before, "some invoices went around a stalled write")
        }
    }

    /// Returns when something is sent on `signal`, or after `limit`.
    static func wait(for signal: AsyncStream<Void>, atMost limit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var iterator = signal.makeAsyncIterator()
                _ = await iterator.next()
            }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Waits until a session waits on a lock the backend `holder` holds (or `unless` is
    /// set); fails the test after 30 s.
    static func waitUntilBlocked(by holder: Int, db: PostgresClient, unless: Flag? = nil) async throws {
        let giveUp = ContinuousClock.now + .seconds(30)
        while try await db.query("SELECT count(*) AS n FROM pg_stat_activity WHERE \(holder) = ANY(pg_blocking_pids(pid))")
            .first!.decode("n", as: Int.self) == 0 {
            if unless?.isSet == true { return }
            try #require(ContinuousClock.now < giveUp, "nothing came to wait on the held row within 30 s")
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Posts an invoice from the agency's provider system: `post(budget, amount, key)`.
    static func poster(_ h: LedgerHarness, _ p: LedgerHarness.People)
        -> @Sendable (String, Int64, String) async throws -> Wholecare_Ledger_V1_Transaction {
        let ledger = h.ledger, token = p.provider, agency = p.agency
        return { budget, amount, key in
            try await ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: amount, key: key),
                                         options: LedgerHarness.bearer(token))
        }
    }

    static func code(_ result: Result<String, RPCError>) -> RPCError.Code? {
        switch result {
        case .success: nil
        case .failure(let error): error.code
        }
    }
}

/// A flag tasks can set and read.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

extension Result {
    var isSuccess: Bool {
        switch self {
        case .success: true
        case .failure: false
        }
    }
}
