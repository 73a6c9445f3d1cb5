import CLibPQ
import Dispatch
import Foundation
import Synchronization

/// Stops a connection's statement in the server when the task waiting for it has been
/// cancelled (an RPC deadline passed, the caller went away, the service is stopping) and
/// the statement is still running a moment later (``grace``), so that abandoned work does
/// not go on holding a backend, its locks and a pooled connection. libpq's `PQcancel`
/// asks the server, over a short connection of its own, to cancel whatever that backend
/// is running; the statement then fails with `57014` and the connection stays usable.
///
/// The grace period lets the short statements of a handler finish (an audit row, an
/// event after an action) even when its caller has gone; what is cancelled is what would
/// otherwise run on (a long query, a wait for a lock).
///
/// Each statement is a new generation, and a request is sent only while the statement of
/// its generation is still in flight. If a request is still being sent when its statement
/// ends, the statement's end waits for it (``settle(_:)``) before the connection is used
/// again, and drops the connection if sending takes too long. The server ignores a request
/// that arrives while the backend waits for its next statement, and one that arrives
/// before the statement does is lost, so the request is sent again while the statement
/// runs on (``attempts`` in all).
final class StatementCanceller: @unchecked Sendable {  // PGcancel may be used from any thread
    static let grace: DispatchTimeInterval = .milliseconds(200)
    static let attempts = 4

    private struct State {
        var generation: UInt64 = 0
        var running = false
        var sent = false
        var sending = false
        var requests = 0
        /// For tests: how long each request waits before it is sent (a slow network).
        var delay: Double = 0
        /// A statement's end waiting for a request being sent (see ``settle(_:)``).
        var waiter: (generation: UInt64, continuation: CheckedContinuation<Bool, Never>)?
    }

    private let request: OpaquePointer
    private let state = Mutex(State())

    /// nil if libpq cannot make a cancel request for this connection.
    init?(_ connection: OpaquePointer) {
        guard let request = PQgetCancel(connection) else { return nil }
        self.request = request
    }

    deinit { PQfreeCancel(request) }

    /// A statement is about to be sent; its generation.
    func begin() -> UInt64 {
        state.withLock { state in
            state.generation &+= 1
            state.running = true
            state.sent = false
            return state.generation
        }
    }

    /// The statement has ended: whether a cancel request was sent for it, and whether one
    /// is being sent right now (then call ``settle(_:)`` before using the connection again).
    func end() -> (sent: Bool, sending: Bool) {
        state.withLock { state in
            state.running = false
            return (state.sent, state.sending)
        }
    }

    /// Waits, without holding a thread, until the request being sent for statement
    /// `generation` has gone; false if that takes longer than `limit` (the caller then
    /// drops the connection: the request could still reach its next statement).
    func settle(_ generation: UInt64, limit: DispatchTimeInterval = .seconds(2)) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let settled = state.withLock { state -> Bool in
                guard state.sending else { return true }
                state.waiter = (generation, continuation)
                return false
            }
            if settled { return continuation.resume(returning: true) }
            DispatchQueue.global().asyncAfter(deadline: .now() + limit) { [self] in
                let late = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                    guard let waiter = state.waiter, waiter.generation == generation else { return nil }
                    state.waiter = nil
                    return waiter.continuation
                }
                late?.resume(returning: false)
            }
        }
    }

    /// Cancel requests sent so far (for tests).
    var requestsSent: Int { state.withLock { $0.requests } }

    /// For tests: makes every request take `seconds` longer to send.
    func delaySending(by seconds: Double) { state.withLock { $0.delay = seconds } }

    /// The task waiting for statement `generation` was cancelled: after the grace period,
    /// if that statement still runs, ask the server to cancel it.
    func cancel(_ generation: UInt64, attempt: Int = 1) {
        DispatchQueue.global().asyncAfter(deadline: .now() + (attempt == 1 ? Self.grace : .milliseconds(250))) { [self] in
            let go = state.withLock { state -> Double? in
                guard state.generation == generation, state.running, !state.sending else { return nil }
                state.sent = true
                state.sending = true
                state.requests += 1
                return state.delay
            }
            guard let delay = go else { return }
            // Sending blocks (it connects to the server), so it happens on a thread of its
            // own, outside the lock: not on a dispatch or Swift concurrency pool thread.
            Thread.detachNewThread { [self] in
                if delay > 0 { Thread.sleep(forTimeInterval: delay) }
                var message = [CChar](repeating: 0, count: 256)
                _ = PQcancel(request, &message, Int32(message.count))
                let waiting = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                    state.sending = false
                    defer { state.waiter = nil }
                    return state.waiter?.continuation
                }
                waiting?.resume(returning: true)
                if attempt < Self.attempts { cancel(generation, attempt: attempt + 1) }
            }
        }
    }
}

/// Statements that must run to their end whatever happens to the task that sends them.
public enum StatementCancellation {
    @TaskLocal static var isShielded = false

    /// Runs `body` so that none of its statements is cancelled in the server when the task
    /// is cancelled, and neither waiting for a pooled connection (only the pool's acquire
    /// timeout ends it) nor a transaction's retries are cut short: writes that must happen
    /// whatever the caller does (a failed sign-in counted, an access to a record logged,
    /// sessions revoked, a lock released).
    @discardableResult
    public static func shielded<T>(_ body: () async throws -> T) async rethrows -> T {
        try await $isShielded.withValue(true) { try await body() }
    }

    /// A pause that the task's cancellation does not cut short (`Task.sleep` would end at
    /// once), for retrying shielded transactions.
    static func pause(for duration: Duration) async {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { continuation.resume() }
        }
    }
}
