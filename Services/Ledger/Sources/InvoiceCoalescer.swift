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
/// Known limit: a write waits for the budget rows it locks, so a lock held for long on
/// one budget (by another session) holds up every queued invoice, not only that budget's.
final class InvoiceCoalescer: Sendable {
    typealias Outcome = Result<PostOutcome, any Error>

    private struct Waiting {
        let item: BatchInvoice
        let continuation: CheckedContinuation<Outcome, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = 0
        var keysInFlight: Set<ScopedKey> = []
    }

    private let state = Mutex(State())
    /// Groups of more than one invoice written so far, and the invoices in them.
    let groupsWritten = Atomic<Int>(0)
    let invoicesGrouped = Atomic<Int>(0)
    let writers: Int
    let maxBatch: Int

    init(writers: Int, maxBatch: Int) {
        precondition(writers > 0 && maxBatch > 0)
        self.writers = writers
        self.maxBatch = maxBatch
    }

    func post(_ item: BatchInvoice, store: LedgerStore) async throws -> PostOutcome {
        let key = item.scopedKey
        let goesNow = state.withLock { s -> Bool in
            guard s.writing < writers, s.queue.isEmpty, !s.keysInFlight.contains(key) else { return false }
            s.writing += 1
            s.keysInFlight.insert(key)
            return true
        }
        if goesNow {
            let outcome = await Self.single(item, store)
            finished([key], store)
            return try outcome.get()
        }
        let outcome = await withCheckedContinuation { continuation in
            let next = state.withLock { s -> [Waiting]? in
                s.queue.append(Waiting(item: item, continuation: continuation))
                return Self.takeBatch(&s, writers: writers, maxBatch: maxBatch)
            }
            if let next { startWriting(next, store) }
        }
        return try outcome.get()
    }

    /// The next batch if a writer is free: queued invoices in arrival order, skipping
    /// keys already in flight (they stay queued), at most `maxBatch`.
    private static func takeBatch(_ s: inout State, writers: Int, maxBatch: Int) -> [Waiting]? {
        guard s.writing < writers, !s.queue.isEmpty else { return nil }
        var taken: [Waiting] = []
        var kept: [Waiting] = []
        for waiting in s.queue {
            let key = waiting.item.scopedKey
            if taken.count < maxBatch, !s.keysInFlight.contains(key) {
                s.keysInFlight.insert(key)
                taken.append(waiting)
            } else {
                kept.append(waiting)
            }
        }
        guard !taken.isEmpty else { return nil }
        s.queue = kept
        s.writing += 1
        return taken
    }

    /// A write finished: frees its writer and keys, and hands back the next batch, if any.
    private func release(_ keys: [ScopedKey]) -> [Waiting]? {
        state.withLock { s -> [Waiting]? in
            s.writing -= 1
            for key in keys { s.keysInFlight.remove(key) }
            return Self.takeBatch(&s, writers: writers, maxBatch: maxBatch)
        }
    }

    private func finished(_ keys: [ScopedKey], _ store: LedgerStore) {
        if let next = release(keys) { startWriting(next, store) }
    }

    private func startWriting(_ waiting: [Waiting], _ store: LedgerStore) {
        Task { await write(waiting, store) }
    }

    private func write(_ waiting: [Waiting], _ store: LedgerStore) async {
        var current = waiting
        while true {
            let outcomes = await Self.run(current.map(\.item), store)
            if current.count > 1 {
                groupsWritten.add(1, ordering: .relaxed)
                invoicesGrouped.add(current.count, ordering: .relaxed)
            }
            for (index, entry) in current.enumerated() { entry.continuation.resume(returning: outcomes[index]) }
            guard let next = release(current.map(\.item.scopedKey)) else { return }
            current = next
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
