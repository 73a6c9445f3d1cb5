import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A pool of libpq connections.
///
/// `query`, `run` and `pipeline` on a session (and so `PostgresClient.query` and
/// `withTransaction`) send without blocking and await the socket (on Linux; see
/// ``SocketReadiness``): no thread waits for the server. The bodies of
/// `withBlockingConnection` and `withBlockingTransaction`, and connecting, block, and
/// run on the client's own `NIOThreadPool` (one thread per connection), never on an event
/// loop or Swift's cooperative pool.
public final class PostgresClient: Sendable {
    public let configuration: PostgresConfiguration
    let logger: Logger
    let threadPool: NIOThreadPool
    private let state: Mutex<PoolState>
    private let timerLoop: any EventLoop

    private struct Waiter {
        let continuation: CheckedContinuation<PostgresConnection?, any Error>
        /// When the wait fails with `poolTimeout` (see `sweepWaiters`).
        let deadline: NIODeadline
    }

    private struct PoolState {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [(id: UInt64, waiter: Waiter)] = []
        var nextWaiterID: UInt64 = 0
        var nextConnectionID = 0
        var closed = false
        /// A sweep for expired waits is scheduled.
        var sweeping = false
    }

    public init(configuration: PostgresConfiguration, logger: Logger = Logger(label: "wholecare.postgres")) {
        precondition(configuration.maxConnections > 0, "maxConnections must be positive")
        self.configuration = configuration
        self.logger = logger
        self.threadPool = NIOThreadPool(numberOfThreads: configuration.maxConnections)
        self.threadPool.start()
        self.state = Mutex(PoolState())
        self.timerLoop = MultiThreadedEventLoopGroup.singleton.any()
    }

    /// Closes idle connections and fails waiting callers. Connections in use are closed
    /// when they are returned.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { state -> ([PostgresConnection], [Waiter]) in
            state.closed = true
            let idle = state.idle
            state.idle.removeAll()
            state.open -= idle.count
            let waiters = state.waiters.map(\.waiter)
            state.waiters.removeAll()
            return (idle, waiters)
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: Self.closedError)
        }
        for connection in idle {
            _ = try? await threadPool.runIfActive { connection.close() }
        }
        try? await threadPool.shutdownGracefully()
    }

    static let closedError = PostgresError(kind: .poolClosed, safeMessage: "the database client has been shut down")

    // MARK: - Public API

    /// Runs `body` with a connection of its own; the connection returns to the pool after.
    public func withConnection<T: Sendable>(
        _ body: (PostgresSession) async throws -> T
    ) async throws -> T {
        let connection = try await acquire()
        let session = PostgresSession(connection: connection, threadPool: threadPool)
        do {
            let result = try await body(session)
            await release(connection)
            return result
        } catch {
            await release(connection)
            throw error
        }
    }

    /// Runs `body` inside a transaction at the given isolation level. A serialization
    /// failure or deadlock (40001, 40P01), or a lost connection before `COMMIT` was sent,
    /// runs the whole body again on a fresh attempt, up to
    /// ``PostgresConfiguration/transactionAttempts`` times with jittered backoff. The body
    /// must therefore only have effects through the session.
    public func withTransaction<T: Sendable>(
        isolation: PostgresIsolation = .readCommitted,
        _ body: (PostgresSession) async throws -> T
    ) async throws -> T {
        try await retryingTransaction {
            try await withConnection { session in
                try await session.run(unsafeSQL: "BEGIN ISOLATION LEVEL \(isolation.rawValue)")
                let value: T
                do {
                    value = try await body(session)
                } catch {
                    await session.rollbackQuietly()
                    throw error
                }
                do {
                    try await session.finish("COMMIT")
                } catch let error as PostgresError where error.kind == .connectionLost {
                    // The outcome of COMMIT is unknown: never retry it blindly.
                    throw CommitOutcomeUnknown(underlying: error)
                } catch {
                    await session.rollbackQuietly()
                    throw error
                }
                return value
            }
        }
    }

    /// Runs `attempt` again after a serialization failure, deadlock or lost connection
    /// (with jittered backoff, up to ``PostgresConfiguration/transactionAttempts`` times);
    /// a commit whose outcome is unknown is never retried.
    private func retryingTransaction<T: Sendable>(_ attempt: () async throws -> T) async throws -> T {
        var attempts = 0
        while true {
            attempts += 1
            do {
                return try await attempt()
            } catch let error as PostgresError where error.isSerializationFailure || error.kind == .connectionLost {
                guard attempts < configuration.transactionAttempts else {
                    if error.kind == .connectionLost { throw error }
                    throw PostgresError(
                        kind: .retriesExhausted,
                        safeMessage: "the transaction kept conflicting with concurrent work after \(attempts) attempts",
                        sqlState: error.sqlState, serverMessage: error.serverMessage)
                }
                logger.debug("retrying transaction", metadata: ["attempt": "\(attempts)", "sqlstate": "\(error.sqlState ?? "-")"])
                if StatementCancellation.isShielded {
                    // A shielded write is retried even if its task has been cancelled.
                    await StatementCancellation.pause(for: Self.backoff(attempt: attempts))
                } else {
                    try await Task.sleep(for: Self.backoff(attempt: attempts))
                }
            } catch let error as CommitOutcomeUnknown {
                throw error.underlying
            }
        }
    }

    private struct CommitOutcomeUnknown: Error { let underlying: PostgresError }

    /// Like ``withTransaction(isolation:_:)``, but `body` is synchronous and runs with
    /// `BEGIN` and `COMMIT` on one of the pool's threads: one hop to that thread and back
    /// for the whole transaction instead of one per statement. For transactions of several
    /// statements with only computation between them (e.g. a batch of postings). The same
    /// retries apply, so `body` must only have effects through the session.
    public func withBlockingTransaction<T: Sendable>(
        isolation: PostgresIsolation = .readCommitted,
        _ body: @escaping @Sendable (PostgresBlockingSession) throws -> T
    ) async throws -> T {
        try await retryingTransaction {
            let connection = try await acquire()
            let outcome: Result<T, any Error> = await {
                do {
                    return .success(try await threadPool.runIfActive {
                        try connection.executeSimple("BEGIN ISOLATION LEVEL \(isolation.rawValue)")
                        let value: T
                        do {
                            value = try body(PostgresBlockingSession(connection: connection))
                        } catch {
                            if !connection.isBroken { try? connection.executeSimple("ROLLBACK") }
                            throw error
                        }
                        do {
                            try connection.executeSimple("COMMIT")
                        } catch let error as PostgresError where error.kind == .connectionLost {
                            throw CommitOutcomeUnknown(underlying: error)
                        } catch {
                            if !connection.isBroken { try? connection.executeSimple("ROLLBACK") }
                            throw error
                        }
                        return value
                    })
                } catch {
                    return .failure(error)
                }
            }()
            await release(connection)
            return try outcome.get()
        }
    }

    /// Runs the synchronous `body` on one connection, outside an explicit transaction, on
    /// one of the pool's threads, each statement blocking that thread until its answer is
    /// in. Each statement sees its own snapshot, as with separate `query` calls.
    public func withBlockingConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresBlockingSession) throws -> T) async throws -> T {
        let connection = try await acquire()
        let outcome: Result<T, any Error> = await {
            do {
                return .success(try await threadPool.runIfActive { try body(PostgresBlockingSession(connection: connection)) })
            } catch {
                return .failure(error)
            }
        }()
        await release(connection)
        return try outcome.get()
    }

    /// Jittered exponential backoff: uniformly random in [0, 5ms · 2^attempt), capped.
    static func backoff(attempt: Int) -> Duration {
        let ceiling = min(5.0 * pow(2.0, Double(attempt)), 250.0)
        return .microseconds(Int64(Double.random(in: 0..<ceiling) * 1000))
    }

    /// Runs one statement on any free connection, outside an explicit transaction.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await withConnection { try await $0.query(query) }
    }

    // MARK: - Pool

    func acquire() async throws -> PostgresConnection {
        while true {
            enum Next { case use(PostgresConnection), create(Int), wait }
            let next: Next = try state.withLock { state in
                if state.closed { throw Self.closedError }
                if let connection = state.idle.popLast() { return .use(connection) }
                if state.open < configuration.maxConnections {
                    state.open += 1
                    state.nextConnectionID += 1
                    return .create(state.nextConnectionID)
                }
                return .wait
            }
            switch next {
            case .use(let connection):
                // A connection that sat idle may have lost its server (restart, failover):
                // check the socket and replace it if it is gone. The check is a zero-timeout
                // poll(2), so it runs right here rather than costing a hop to the pool's
                // threads and back before every statement.
                if connection.isAlive() { return connection }
                logger.info("replacing a database connection the server closed while idle")
                await discard(connection)
                continue
            case .create(let id):
                do {
                    return try await connect(id: id)
                } catch {
                    state.withLock { $0.open -= 1 }
                    wakeOneWaiterToCreate()
                    throw error
                }
            case .wait:
                if let connection = try await waitForConnection() { return connection }
                // nil: a slot was freed for us to open a new connection.
                let id = state.withLock { s -> Int in s.nextConnectionID += 1; return s.nextConnectionID }
                do {
                    return try await connect(id: id)
                } catch {
                    state.withLock { $0.open -= 1 }
                    wakeOneWaiterToCreate()
                    throw error
                }
            }
        }
    }

    private func connect(id: Int) async throws -> PostgresConnection {
        let configuration = configuration
        return try await threadPool.runIfActive {
            let connection = try PostgresConnection(
                conninfo: configuration.connectionString, applicationName: configuration.applicationName,
                connectTimeout: configuration.connectTimeoutSeconds,
                statementCacheLimit: configuration.statementCacheLimit, id: id)
            if let path = configuration.searchPath {
                try connection.executeSimple("SET search_path = " + PostgresQuery.quoteIdentifier(path))
            }
            if let timeout = configuration.lockTimeout {
                try connection.executeSimple("SET lock_timeout = \(timeout.lockTimeoutMilliseconds)")
            }
            return connection
        }
    }

    private func waitForConnection() async throws -> PostgresConnection? {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let deadline = NIODeadline.now() + .nanoseconds(acquireTimeoutNanoseconds)
        // Shielded writes wait for a connection even when their task is cancelled.
        let shielded = StatementCancellation.isShielded
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let (refused, startSweeping) = state.withLock { state -> (Bool, Bool) in
                    if state.closed { return (true, false) }
                    // Cancelled before the wait was listed: the cancellation handler found
                    // nothing to fail, so fail here rather than wait out the timeout.
                    if Task.isCancelled && !shielded { return (true, false) }
                    state.waiters.append((id, Waiter(continuation: continuation, deadline: deadline)))
                    let start = !state.sweeping
                    state.sweeping = true
                    return (false, start)
                }
                if refused { continuation.resume(throwing: Task.isCancelled && !shielded ? CancellationError() : Self.closedError) }
                if startSweeping { scheduleSweep() }
            }
        } onCancel: {
            if !shielded { self.failWaiter(id: id, with: CancellationError()) }
        }
    }

    /// How often expired waits are looked for: a wait fails at most this long after its
    /// deadline. One timer for all waiters while any wait, rather than one scheduled and
    /// cancelled per wait on an event loop that also serves the network.
    private var sweepInterval: TimeAmount {
        .nanoseconds(max(10_000_000, min(100_000_000, acquireTimeoutNanoseconds / 4)))
    }

    private var acquireTimeoutNanoseconds: Int64 {
        let parts = configuration.acquireTimeout.components
        return parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
    }

    private func scheduleSweep() {
        timerLoop.scheduleTask(in: sweepInterval) { self.sweepWaiters() }
    }

    /// Fails the waits past their deadline; sweeps again while any remain.
    private func sweepWaiters() {
        let now = NIODeadline.now()
        let (expired, again) = state.withLock { state -> ([Waiter], Bool) in
            var expired: [Waiter] = []
            state.waiters.removeAll { entry in
                guard entry.waiter.deadline <= now else { return false }
                expired.append(entry.waiter)
                return true
            }
            state.sweeping = !state.waiters.isEmpty
            return (expired, state.sweeping)
        }
        let timeout = configuration.acquireTimeout
        for waiter in expired {
            waiter.continuation.resume(throwing: PostgresError(
                kind: .poolTimeout,
                safeMessage: "no database connection became free within \(timeout) (pool size \(configuration.maxConnections))"))
        }
        if again { scheduleSweep() }
    }

    private func failWaiter(id: UInt64, with error: any Error) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).waiter
        }
        waiter?.continuation.resume(throwing: error)
    }

    /// Returns a connection: to the first waiter, to the idle list, or closes it if broken.
    func release(_ connection: PostgresConnection) async {
        if !connection.isBroken, connection.inTransaction {
            // A body escaped without finishing its transaction; never hand that state on.
            await PostgresSession(connection: connection, threadPool: threadPool).rollbackQuietly()
        }
        if connection.isBroken || connection.inTransaction {
            await discard(connection)
            return
        }
        let waiter = state.withLock { state -> Waiter? in
            if state.closed {
                state.open -= 1
                return nil
            }
            if !state.waiters.isEmpty { return state.waiters.removeFirst().waiter }
            state.idle.append(connection)
            return nil
        }
        if let waiter {
            waiter.continuation.resume(returning: connection)
        } else if state.withLock({ $0.closed }) {
            _ = try? await threadPool.runIfActive { connection.close() }
        }
    }

    private func discard(_ connection: PostgresConnection) async {
        _ = try? await threadPool.runIfActive { connection.close() }
        state.withLock { $0.open -= 1 }
        wakeOneWaiterToCreate()
    }

    /// A slot freed up: let the first waiter open a new connection in it.
    private func wakeOneWaiterToCreate() {
        let waiter = state.withLock { state -> Waiter? in
            guard !state.waiters.isEmpty, state.open < configuration.maxConnections else { return nil }
            state.open += 1
            return state.waiters.removeFirst().waiter
        }
        if let waiter {
            waiter.continuation.resume(returning: nil)
        }
    }

    // MARK: - LISTEN / NOTIFY

    /// Listens on the given channels on a dedicated connection (outside the pool) and
    /// yields notifications until the consuming task stops iterating. After a lost
    /// connection the listener reconnects with backoff and yields a notification with
    /// `isReconnect == true`, since notifications sent meanwhile were missed.
    public func listen(channels: [String]) -> AsyncStream<PostgresNotification> {
        let configuration = configuration
        let logger = logger
        return AsyncStream(bufferingPolicy: .bufferingNewest(10_000)) { continuation in
            let stop = Atomic<Bool>(false)
            let thread = Thread {
                #if os(Linux)
                nameThisThread("pg-listen")
                #endif
                PostgresListenerLoop(
                    configuration: configuration, channels: channels, logger: logger,
                    yield: { continuation.yield($0) }, shouldStop: { stop.load(ordering: .relaxed) }
                ).run()
                continuation.finish()
            }
            continuation.onTermination = { _ in stop.store(true, ordering: .relaxed) }
            thread.start()
        }
    }
}

/// A session for the synchronous body of ``PostgresClient/withBlockingTransaction(isolation:_:)``,
/// already on a pool thread: each statement blocks until its result is in.
public struct PostgresBlockingSession: @unchecked Sendable {
    let connection: PostgresConnection

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) throws -> PostgresRows {
        try connection.execute(query)
    }

    /// Runs the statements in one round trip and returns their rows in order; if one
    /// fails, the later ones are not run and, outside an explicit transaction, nothing the
    /// list wrote is kept (libpq pipeline mode).
    public func pipeline(_ queries: [PostgresQuery]) throws -> [PostgresRows] {
        try connection.executePipeline(queries)
    }
}

/// A session on one connection, handed to `withConnection` / `withTransaction` bodies.
public struct PostgresSession: Sendable {
    let connection: PostgresConnection
    let threadPool: NIOThreadPool

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        let connection = connection
        #if os(Linux)
        if connection.canWaitWithoutBlocking { return try await connection.executeAsync(query) }
        #endif
        return try await threadPool.runIfActive { try connection.execute(query) }
    }

    /// Runs the statements in one round trip and returns their rows in order; if one
    /// fails, the later ones are not run and, outside an explicit transaction, nothing the
    /// list wrote is kept (libpq pipeline mode).
    public func pipeline(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        let connection = connection
        #if os(Linux)
        if connection.canWaitWithoutBlocking { return try await connection.executePipelineAsync(queries) }
        #endif
        return try await threadPool.runIfActive { try connection.executePipeline(queries) }
    }

    /// Runs a script of statements without binds (migrations, session settings).
    public func run(unsafeSQL sql: String) async throws {
        try await run(sql, interruptible: true)
    }

    func rollbackQuietly() async {
        guard !connection.isBroken else { return }
        try? await finish("ROLLBACK")
    }

    /// `COMMIT` or `ROLLBACK`: never interrupted by the task's cancellation (see
    /// ``PostgresConnection/executeSimpleAsync(_:interruptible:)``).
    func finish(_ sql: String) async throws {
        try await run(sql, interruptible: false)
    }

    private func run(_ sql: String, interruptible: Bool) async throws {
        let connection = connection
        #if os(Linux)
        if connection.canWaitWithoutBlocking { return try await connection.executeSimpleAsync(sql, interruptible: interruptible) }
        #endif
        try await threadPool.runIfActive { try connection.executeSimple(sql) }
    }
}
