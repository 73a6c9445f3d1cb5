#if os(Linux)
import CLibPQ
import Foundation
import Synchronization

/// Waits for libpq sockets without holding a thread per wait: one thread per process
/// blocks in `epoll_wait` for every connection's socket and resumes the tasks whose
/// socket became ready. A statement sent this way costs its task no thread hop and no
/// blocked thread, where a blocking libpq call costs a wake-up of a pool thread, a
/// sleep in `poll(2)` and a wake-up back.
///
/// Each wait is one-shot (`EPOLLONESHOT`): a socket is armed only while a task waits on
/// it, and at most one task waits on a socket (a connection is used by one task at a time).
final class SocketReadiness: Sendable {
    static let shared = SocketReadiness()

    private let epoll: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<Void, any Error>]>([:])
    /// Set if the waiting thread has stopped (see `run`), while holding `waiters`' lock.
    private let dead = Atomic<Bool>(false)

    private init() {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { return }
        let thread = Thread { [unowned self] in
            nameThisThread("pg-wait")
            self.run()
        }
        thread.start()
    }

    /// False if epoll could not be set up or its thread stopped: connections then block
    /// on the client's thread pool as before.
    var isRunning: Bool { epoll >= 0 && !dead.load(ordering: .acquiring) }

    struct Failed: Error {
        let errno: Int32
    }

    /// Suspends until `socket` is readable (or, with `writable`, readable or writable), or
    /// has an error or hang-up, which the caller then learns of from libpq.
    func wait(for socket: Int32, writable: Bool = false) async throws {
        guard epoll >= 0 else { throw Failed(errno: EBADF) }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let refused = waiters.withLock { waiting -> Bool in
                if dead.load(ordering: .relaxed) { return true }
                precondition(waiting[socket] == nil, "two tasks wait on one database socket")
                waiting[socket] = continuation
                return false
            }
            if refused { return continuation.resume(throwing: Failed(errno: EBADF)) }
            var event = epoll_event()
            event.events = (writable ? EPOLLIN.rawValue | EPOLLOUT.rawValue : EPOLLIN.rawValue) | EPOLLONESHOT.rawValue
            event.data.fd = socket
            // A socket seen before is re-armed; a new one (or a number reused after a
            // close, which removes the old registration) is added.
            var status = epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event)
            if status != 0, errno == ENOENT { status = epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) }
            if status != 0 {
                let code = errno
                if let waiting = waiters.withLock({ $0.removeValue(forKey: socket) }) {
                    waiting.resume(throwing: Failed(errno: code))
                }
            }
        }
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32($0.count), -1) }
            if count < 0 {
                if errno == EINTR { continue }
                // Not expected (a bad descriptor or argument): fail every wait, now and
                // later, rather than leave tasks suspended; their connections are dropped.
                let code = errno
                let stranded = waiters.withLock { waiting in
                    dead.store(true, ordering: .releasing)
                    defer { waiting.removeAll() }
                    return Array(waiting.values)
                }
                for continuation in stranded { continuation.resume(throwing: Failed(errno: code)) }
                return
            }
            let ready = waiters.withLock { waiting in
                (0..<Int(count)).compactMap { waiting.removeValue(forKey: events[$0].data.fd) }
            }
            for continuation in ready { continuation.resume() }
        }
    }
}
/// Names the calling thread as `top -H`, `ps -L` and profilers show it (Linux keeps at most
/// 15 characters, and a longer name is not set at all). Foundation's `Thread.name`, set before
/// `start()`, is not applied on Linux: the thread would show its creator's name (an event
/// loop's, say). Set on the running thread, it is.
func nameThisThread(_ name: String) {
    Thread.current.name = String(decoding: name.utf8.prefix(15), as: UTF8.self)
}
#endif
