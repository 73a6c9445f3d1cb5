import Foundation
import Postgres
import Synchronization

/// Group commit for single invoices.
///
/// Each invoice is its own all-or-nothing posting, and its caller is answered only after
/// it has committed. While `writers` postings are already being written, invoices that
/// arrive wait in a queue; when a write finishes, everything queued (up to `maxBatch`)
/// goes to the database together: one statement when every invoice fits its budget
/// (`postInvoicesTogether`), otherwise `postBatch`, which decides invoice by invoice in
/// arrival order. Either way each invoice gets the outcome it would have had alone, and
/// under load the cost of a statement, a trip to the database and a commit is shared.
/// With nothing in flight an invoice goes straight to the single-statement path and
/// waits for nobody.
///
/// Two invoices with the same idempotency key (in the same caller's scope) are never in
/// flight at once: the second waits for the first, then finds its key and replays it.
///
/// A write waits for the budget rows it locks. If another session holds one of them for
/// long (a long transaction, an idle `psql`), the write stalls, and so would everything
/// queued behind it: so once every writer has been on one write for longer than expected
/// (`stallAfter`, plus half a millisecond per invoice in it), queued and newly arriving
/// invoices are posted on their own, in arrival order, until the stalled write finishes —
/// except those for a budget the stalled write or another such invoice is writing (they
/// would only wait for the same lock), and at most `aroundLimit` at a time, so that
/// waiting invoices cannot take every connection of the pool. The connection's lock
/// timeout (`DATABASE_LOCK_TIMEOUT`) bounds every wait; when a group reaches it, its
/// invoices are tried again on their own, so only those for the locked budget fail
/// (UNAVAILABLE, which their callers may retry with the same keys).
final class InvoiceCoalescer: Sendable {
    typealias Outcome = Result<PostOutcome, any Error>

    private struct Waiting {
        let item: BatchInvoice
        let continuation: CheckedContinuation<Outcome, Never>
    }

    /// Invoices one writer is writing together.
    private struct Group {
        let id: UInt64
        var waiting: [Waiting]
    }

    private enum Route {
        case write(UInt64)
        case alone
        case queue
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = 0
        var keysInFlight: Set<ScopedKey> = []
        /// When each write in progress counts as stalled, and the budgets it writes, by
        /// write id.
        var stallDeadlines: [UInt64: ContinuousClock.Instant] = [:]
        var writeBudgets: [UInt64: Set<UUID>] = [:]
        /// Budgets of the invoices being posted on their own around a stalled write (one
        /// at a time per budget).
        var aroundBudgets: Set<UUID> = []
        var nextWriteID: UInt64 = 0
        /// A task is watching the queue for a stalled write.
        var watching = false

        mutating func beginWrite(_ items: [BatchInvoice], stallAfter: Duration) -> UInt64 {
            nextWriteID += 1
            writing += 1
            stallDeadlines[nextWriteID] = .now + stallAfter + .microseconds(500) * items.count
            writeBudgets[nextWriteID] = Set(items.map(\.budgetID))
            return nextWriteID
        }

        /// A write (`id`) or an invoice posted around one (`id` nil) finished.
        mutating func release(write id: UInt64?, _ items: [BatchInvoice]) {
            if let id {
                writing -= 1
                stallDeadlines[id] = nil
                writeBudgets[id] = nil
            } else {
                for item in items { aroundBudgets.remove(item.budgetID) }
            }
            for item in items { keysInFlight.remove(item.scopedKey) }
        }

        /// Whether an invoice for `budget` may be posted around a stalled write now.
        func mayGoAround(_ budget: UUID, limit: Int) -> Bool {
            aroundBudgets.count < limit && !aroundBudgets.contains(budget) && !writeBudgets.values.contains { $0.contains(budget) }
        }

        /// Every writer is busy and one of them has been on the same write too long.
        func stalled(writers: Int) -> Bool {
            guard writing >= writers else { return false }
            let now = ContinuousClock.now
            return stallDeadlines.values.contains { now >= $0 }
        }
    }

    private let state = Mutex(State())
    /// Invoices waiting for a writer.
    var queued: Int { state.withLock { $0.queue.count } }
    /// Groups of more than one invoice written so far, and the invoices in them.
    let groupsWritten = Atomic<Int>(0)
    let invoicesGrouped = Atomic<Int>(0)
    /// Invoices posted on their own because the writers were stalled.
    let postedAroundStall = Atomic<Int>(0)
    let writers: Int
    let maxBatch: Int
    let stallAfter: Duration
    let aroundLimit: Int

    init(writers: Int, maxBatch: Int, stallAfter: Duration = .milliseconds(100), aroundLimit: Int = 2) {
        precondition(writers > 0 && maxBatch > 0 && stallAfter > .zero && aroundLimit > 0)
        self.writers = writers
        self.maxBatch = maxBatch
        self.stallAfter = stallAfter
        self.aroundLimit = aroundLimit
    }

    func post(_ item: BatchInvoice, store: LedgerStore) async throws -> PostOutcome {
        let key = item.scopedKey
        let route = state.withLock { s -> Route in
            if !s.keysInFlight.contains(key) {
                if s.writing < writers, s.queue.isEmpty {
                    s.keysInFlight.insert(key)
                    return .write(s.beginWrite([item], stallAfter: stallAfter))
                }
                if s.queue.isEmpty, s.stalled(writers: writers), s.mayGoAround(item.budgetID, limit: aroundLimit) {
                    s.keysInFlight.insert(key)
                    s.aroundBudgets.insert(item.budgetID)
                    return .alone
                }
            }
            return .queue
        }
        switch route {
        case .write(let id):
            let outcome = await Self.single(item, store)
            finished(write: id, [item], store)
            return try outcome.get()
        case .alone:
            return try await postAround(item, store).get()
        case .queue:
            let outcome = await withCheckedContinuation { continuation in
                let (next, around, armWatchdog) = state.withLock { s -> (Group?, [Waiting], Bool) in
                    s.queue.append(Waiting(item: item, continuation: continuation))
                    let next = Self.takeGroup(&s, writers: writers, maxBatch: maxBatch, stallAfter: stallAfter)
                    let around = next == nil ? takeAround(&s) : []
                    let arm = !s.watching && !s.queue.isEmpty
                    if arm { s.watching = true }
                    return (next, around, arm)
                }
                if let next { startWriting(next, store) }
                postAround(around, store)
                if armWatchdog { watchForStalls(store) }
            }
            return try outcome.get()
        }
    }

    /// The next group if a writer is free: queued invoices in arrival order, skipping
    /// keys already in flight (they stay queued), at most `maxBatch`.
    private static func takeGroup(_ s: inout State, writers: Int, maxBatch: Int, stallAfter: Duration) -> Group? {
        guard s.writing < writers, !s.queue.isEmpty else { return nil }
        let (taken, kept) = takeQueued(&s, limit: maxBatch)
        guard !taken.isEmpty else { return nil }
        s.queue = kept
        return Group(id: s.beginWrite(taken.map(\.item), stallAfter: stallAfter), waiting: taken)
    }

    /// Splits the queue into up to `limit` invoices whose keys are not in flight (now
    /// marked in flight) and the rest.
    private static func takeQueued(_ s: inout State, limit: Int) -> (taken: [Waiting], kept: [Waiting]) {
        var taken: [Waiting] = []
        var kept: [Waiting] = []
        for waiting in s.queue {
            let key = waiting.item.scopedKey
            if taken.count < limit, !s.keysInFlight.contains(key) {
                s.keysInFlight.insert(key)
                taken.append(waiting)
            } else {
                kept.append(waiting)
            }
        }
        return (taken, kept)
    }

    /// Queued invoices to post on their own now, if the writers are stalled: in arrival
    /// order, keys not in flight, budgets that `mayGoAround`.
    private func takeAround(_ s: inout State) -> [Waiting] {
        guard !s.queue.isEmpty, s.aroundBudgets.count < aroundLimit, s.stalled(writers: writers) else { return [] }
        var taken: [Waiting] = []
        var kept: [Waiting] = []
        for waiting in s.queue {
            let item = waiting.item
            if !s.keysInFlight.contains(item.scopedKey), s.mayGoAround(item.budgetID, limit: aroundLimit) {
                s.keysInFlight.insert(item.scopedKey)
                s.aroundBudgets.insert(item.budgetID)
                taken.append(waiting)
            } else {
                kept.append(waiting)
            }
        }
        s.queue = kept
        return taken
    }

    /// A write (or an invoice posted on its own, `write` nil) finished: frees its writer,
    /// keys and budgets, and starts the next group, or posts queued invoices around a
    /// write still stalled.
    private func finished(write id: UInt64?, _ items: [BatchInvoice], _ store: LedgerStore) {
        let (next, around) = state.withLock { s -> (Group?, [Waiting]) in
            s.release(write: id, items)
            if let next = Self.takeGroup(&s, writers: writers, maxBatch: maxBatch, stallAfter: stallAfter) { return (next, []) }
            return (nil, takeAround(&s))
        }
        if let next { startWriting(next, store) }
        postAround(around, store)
    }

    private func postAround(_ waiting: [Waiting], _ store: LedgerStore) {
        for entry in waiting {
            Task { entry.continuation.resume(returning: await postAround(entry.item, store)) }
        }
    }

    /// One invoice posted on its own around a stalled write (its key and budget already
    /// marked), then freed.
    private func postAround(_ item: BatchInvoice, _ store: LedgerStore) async -> Outcome {
        postedAroundStall.add(1, ordering: .relaxed)
        let outcome = await Self.single(item, store)
        finished(write: nil, [item], store)
        return outcome
    }

    private func startWriting(_ group: Group, _ store: LedgerStore) {
        Task { await write(group, store) }
    }

    private func write(_ group: Group, _ store: LedgerStore) async {
        var current = group
        while true {
            let outcomes = await Self.run(current.waiting.map(\.item), store)
            if current.waiting.count > 1 {
                groupsWritten.add(1, ordering: .relaxed)
                invoicesGrouped.add(current.waiting.count, ordering: .relaxed)
            }
            for (index, entry) in current.waiting.enumerated() { entry.continuation.resume(returning: outcomes[index]) }
            let items = current.waiting.map(\.item)
            guard let next = state.withLock({ s -> Group? in
                s.release(write: current.id, items)
                return Self.takeGroup(&s, writers: writers, maxBatch: maxBatch, stallAfter: stallAfter)
            }) else { return }
            current = next
        }
    }

    /// While anything is queued, checks twice per `stallAfter` whether the writers are
    /// stalled; if so, posts queued invoices on their own (see `takeAround`).
    private func watchForStalls(_ store: LedgerStore) {
        Task {
            while true {
                try? await Task.sleep(for: stallAfter / 2)
                let (around, done) = state.withLock { s -> ([Waiting], Bool) in
                    if s.queue.isEmpty {
                        s.watching = false
                        return ([], true)
                    }
                    return (takeAround(&s), false)
                }
                postAround(around, store)
                if done { return }
            }
        }
    }

    /// One outcome per item, in order. One invoice alone takes the single-statement path.
    /// If the group fails as a whole over its data (which refusals never cause), each item is
    /// tried on its own, so one item's error is not every item's error; if the database is
    /// unavailable, every item gets that error at once.
    private static func run(_ items: [BatchInvoice], _ store: LedgerStore) async -> [Outcome] {
        if items.count == 1 { return [await single(items[0], store)] }
        let indexed = items.enumerated().map { offset, item -> BatchInvoice in
            var item = item
            item.index = offset
            return item
        }
        do {
            let outcomes = try await store.writeInvoices(indexed)
            return indexed.map { item in
                switch outcomes[item.index] {
                case .posted(let id): .success(.posted(id))
                case .replayed(let id): .success(.replayed(id))
                case .keyReused: .success(.keyReused)
                case .insufficientFunds: .success(.insufficientFunds)
                case nil: .failure(PostgresBatchGap())
                }
            }
        } catch let error as PostgresError where error.kind == .server && Self.isAboutData(error) {
            // Something in the data refused the whole group: try each invoice on its own.
            var outcomes: [Outcome] = []
            for item in items { outcomes.append(await single(item, store)) }
            return outcomes
        } catch let error as PostgresError where error.isLockTimeout {
            // One budget stayed locked by another session: the others need not fail with it.
            return await retryByBudget(items, store)
        } catch {
            // The database is unreachable, busy or shutting down: one answer for all,
            // at once, rather than every invoice waiting out the same failure in turn.
            return items.map { _ in .failure(error) }
        }
    }

    /// Each invoice on its own, a few budgets at a time (each budget's invoices in order):
    /// those for a budget still locked wait out the lock timeout again, the rest go through.
    private static func retryByBudget(_ items: [BatchInvoice], _ store: LedgerStore, workers: Int = 4) async -> [Outcome] {
        var buckets: [[Int]] = []
        var bucketOf: [UUID: Int] = [:]
        for (index, item) in items.enumerated() {
            if let bucket = bucketOf[item.budgetID] {
                buckets[bucket].append(index)
            } else {
                bucketOf[item.budgetID] = buckets.count
                buckets.append([index])
            }
        }
        return await withTaskGroup(of: [(Int, Outcome)].self) { group in
            @Sendable func retry(_ bucket: [Int]) async -> [(Int, Outcome)] {
                var done: [(Int, Outcome)] = []
                for index in bucket { done.append((index, await single(items[index], store))) }
                return done
            }
            var started = 0
            while started < min(workers, buckets.count) {
                let bucket = buckets[started]
                group.addTask { await retry(bucket) }
                started += 1
            }
            var outcomes = [Outcome?](repeating: nil, count: items.count)
            while let done = await group.next() {
                for (index, outcome) in done { outcomes[index] = outcome }
                if started < buckets.count {
                    let bucket = buckets[started]
                    group.addTask { await retry(bucket) }
                    started += 1
                }
            }
            return outcomes.map { $0 ?? .failure(PostgresBatchGap()) }
        }
    }

    /// Errors that one invoice's data can cause (invalid data, a violated constraint, a
    /// refusal raised by the statement), as opposed to the database being unavailable.
    static func isAboutData(_ error: PostgresError) -> Bool {
        guard let state = error.sqlState else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23") || state == "P0001"
    }

    private static func single(_ item: BatchInvoice, _ store: LedgerStore) async -> Outcome {
        do {
            return .success(try await store.post(item.transaction, plan: item.plan, scope: item.scope, requestHash: item.requestHash))
        } catch {
            return .failure(error)
        }
    }

    /// The batch path returned no outcome for an item (a bug, never expected).
    struct PostgresBatchGap: Error {}
}
