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
/// queued behind it: so once every writer has been busy on one write for `stallAfter`,
/// queued and newly arriving invoices stop waiting for the writers and are each posted on
/// their own, waiting only for their own budget's row, until the stalled write finishes.
/// (The connection's lock timeout, `DATABASE_LOCK_TIMEOUT`, bounds how long any of them
/// waits for a lock.)
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
        /// When each write in progress began, by write id.
        var writeStarts: [UInt64: ContinuousClock.Instant] = [:]
        var nextWriteID: UInt64 = 0
        /// A task is watching the queue for a stalled write.
        var watching = false

        mutating func beginWrite() -> UInt64 {
            nextWriteID += 1
            writing += 1
            writeStarts[nextWriteID] = .now
            return nextWriteID
        }

        /// Every writer is busy and one of them has been on the same write too long.
        func stalled(after limit: Duration, writers: Int) -> Bool {
            guard writing >= writers else { return false }
            let now = ContinuousClock.now
            return writeStarts.values.contains { now - $0 >= limit }
        }
    }

    private let state = Mutex(State())
    /// Groups of more than one invoice written so far, and the invoices in them.
    let groupsWritten = Atomic<Int>(0)
    let invoicesGrouped = Atomic<Int>(0)
    /// Invoices posted on their own because the writers were stalled.
    let postedAroundStall = Atomic<Int>(0)
    let writers: Int
    let maxBatch: Int
    let stallAfter: Duration

    init(writers: Int, maxBatch: Int, stallAfter: Duration = .milliseconds(100)) {
        precondition(writers > 0 && maxBatch > 0 && stallAfter > .zero)
        self.writers = writers
        self.maxBatch = maxBatch
        self.stallAfter = stallAfter
    }

    func post(_ item: BatchInvoice, store: LedgerStore) async throws -> PostOutcome {
        let key = item.scopedKey
        let route = state.withLock { s -> Route in
            if !s.keysInFlight.contains(key) {
                if s.writing < writers, s.queue.isEmpty {
                    s.keysInFlight.insert(key)
                    return .write(s.beginWrite())
                }
                if s.stalled(after: stallAfter, writers: writers) {
                    s.keysInFlight.insert(key)
                    return .alone
                }
            }
            return .queue
        }
        switch route {
        case .write(let id):
            let outcome = await Self.single(item, store)
            finished(write: id, keys: [key], store)
            return try outcome.get()
        case .alone:
            postedAroundStall.add(1, ordering: .relaxed)
            let outcome = await Self.single(item, store)
            finished(write: nil, keys: [key], store)
            return try outcome.get()
        case .queue:
            let outcome = await withCheckedContinuation { continuation in
                let (next, armWatchdog) = state.withLock { s -> (Group?, Bool) in
                    s.queue.append(Waiting(item: item, continuation: continuation))
                    let next = Self.takeGroup(&s, writers: writers, maxBatch: maxBatch)
                    let arm = !s.watching && !s.queue.isEmpty
                    if arm { s.watching = true }
                    return (next, arm)
                }
                if let next { startWriting(next, store) }
                if armWatchdog { watchForStalls(store) }
            }
            return try outcome.get()
        }
    }

    /// The next group if a writer is free: queued invoices in arrival order, skipping
    /// keys already in flight (they stay queued), at most `maxBatch`.
    private static func takeGroup(_ s: inout State, writers: Int, maxBatch: Int) -> Group? {
        guard s.writing < writers, !s.queue.isEmpty else { return nil }
        let (taken, kept) = takeQueued(&s, limit: maxBatch)
        guard !taken.isEmpty else { return nil }
        s.queue = kept
        return Group(id: s.beginWrite(), waiting: taken)
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

    /// A write (or an invoice posted on its own, `write` nil) finished: frees its writer
    /// and keys, and starts the next group, if any.
    private func finished(write id: UInt64?, keys: [ScopedKey], _ store: LedgerStore) {
        if let next = release(write: id, keys: keys) { startWriting(next, store) }
    }

    private func release(write id: UInt64?, keys: [ScopedKey]) -> Group? {
        state.withLock { s -> Group? in
            if let id {
                s.writing -= 1
                s.writeStarts[id] = nil
            }
            for key in keys { s.keysInFlight.remove(key) }
            return Self.takeGroup(&s, writers: writers, maxBatch: maxBatch)
        }
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
            guard let next = release(write: current.id, keys: current.waiting.map(\.item.scopedKey)) else { return }
            current = next
        }
    }

    /// While anything is queued, checks twice per `stallAfter` whether the writers are
    /// stalled; if so, posts every queued invoice whose key is free on its own.
    private func watchForStalls(_ store: LedgerStore) {
        Task {
            while true {
                try? await Task.sleep(for: stallAfter / 2)
                let (around, done) = state.withLock { s -> ([Waiting], Bool) in
                    if s.queue.isEmpty {
                        s.watching = false
                        return ([], true)
                    }
                    guard s.stalled(after: stallAfter, writers: writers) else { return ([], false) }
                    let (taken, kept) = Self.takeQueued(&s, limit: .max)
                    s.queue = kept
                    return (taken, false)
                }
                for waiting in around {
                    postedAroundStall.add(1, ordering: .relaxed)
                    Task {
                        let outcome = await Self.single(waiting.item, store)
                        waiting.continuation.resume(returning: outcome)
                        finished(write: nil, keys: [waiting.item.scopedKey], store)
                    }
                }
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
        } catch {
            // The database is unreachable, busy or shutting down: one answer for all,
            // at once, rather than every invoice waiting out the same failure in turn.
            return items.map { _ in .failure(error) }
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
