import NIOCore

/// Runs Swift tasks on a NIO event loop. The server starts each call's handler task with
/// this as its executor preference, so a call that does not block is decoded, handled
/// and answered on the connection's own thread, with no hop to the cooperative pool and
/// back. Handlers must not block: blocking work (libpq, scrypt) belongs on a thread pool.
public final class EventLoopExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
