import CLibPQ
import Dispatch
import Synchronization

/// Stops a connection's statement in the server when the task waiting for it is
/// cancelled (an RPC deadline passed, the caller went away, the service is stopping), so
/// that abandoned work does not go on holding a backend, its locks and a pooled
/// connection. libpq's `PQcancel` asks the server, over a short connection of its own, to
/// cancel whatever that backend is running; the statement then fails with `57014` and the
/// connection stays usable.
///
/// A request is sent only while the statement it was made for is in flight, and the
/// statement's end waits for a request being sent: a late request can never reach the
/// backend after the connection has moved on to another caller's statement. (The server
/// ignores a request that arrives while the backend waits for its next statement.)
final class StatementCanceller: @unchecked Sendable {  // PGcancel may be used from any thread
    private struct State {
        var running = false
        var sent = false
    }

    private let request: OpaquePointer
    private let state = Mutex(State())

    /// nil if libpq cannot make a cancel request for this connection.
    init?(_ connection: OpaquePointer) {
        guard let request = PQgetCancel(connection) else { return nil }
        self.request = request
    }

    deinit { PQfreeCancel(request) }

    /// A statement has been sent and is being waited for.
    func begin() {
        state.withLock { $0 = State(running: true, sent: false) }
    }

    /// The statement has ended; whether a cancel request was sent for it. Waits while one
    /// is being sent.
    func end() -> Bool {
        state.withLock { state in
            state.running = false
            return state.sent
        }
    }

    /// Asks the server to cancel the statement in flight, if there still is one. Sending
    /// blocks (it opens a connection), so it happens off the caller's thread.
    func cancel() {
        DispatchQueue.global().async { [self] in
            state.withLock { state in
                guard state.running, !state.sent else { return }
                state.sent = true
                var message = [CChar](repeating: 0, count: 256)
                _ = PQcancel(request, &message, Int32(message.count))
            }
        }
    }
}
