import Foundation
import Logging
import NIOCore
import NIOPosix
import RPC
import Synchronization

/// How an `RPCClientTransport` connects and behaves. Every field has a default.
public struct RPCClientConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Connections in the pool; calls are spread across them and multiplexed on each.
    public var connections: Int
    public var connectTimeout: TimeAmount
    /// Largest frame accepted from the server.
    public var maxFrameSize: Int
    /// Send a ping after this long without traffic.
    public var keepaliveInterval: TimeAmount
    /// Close the connection if a ping is not answered within this.
    public var keepaliveTimeout: TimeAmount
    /// Reconnect backoff: full jitter between 0 and min(max, initial · 2^failures).
    public var initialBackoff: TimeAmount
    public var maxBackoff: TimeAmount
    /// Reported in the hello.
    public var agent: String

    public init(
        host: String, port: Int, connections: Int = 2, connectTimeout: TimeAmount = .seconds(2),
        maxFrameSize: Int = RPCProtocol.defaultMaxFrameSize, keepaliveInterval: TimeAmount = .seconds(30),
        keepaliveTimeout: TimeAmount = .seconds(10), initialBackoff: TimeAmount = .milliseconds(100),
        maxBackoff: TimeAmount = .seconds(5), agent: String = "wholecare-swift"
    ) {
        self.host = host
        self.port = port
        self.connections = max(1, connections)
        self.connectTimeout = connectTimeout
        self.maxFrameSize = maxFrameSize
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveTimeout = keepaliveTimeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.agent = agent
    }
}

/// An `RPCChannel` over TCP to one server: a small pool of multiplexed connections that
/// reconnect with exponential backoff and jitter. While a connection is backing off,
/// calls on it fail fast with UNAVAILABLE rather than queueing.
public final class RPCClientTransport: RPCChannel, Sendable {
    public let configuration: RPCClientConfiguration
    private let pool: [ClientConnection]
    /// The connections that are alone on their event loop: the only ones a caller on that
    /// loop may take directly (where a loop has several, round-robin spreads calls over
    /// them, and keeps all of them warm).
    private let soleOnLoop: [ClientConnection]
    private let next = Atomic<Int>(0)

    public init(configuration: RPCClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "wholecare.rpc.client")) {
        self.configuration = configuration
        // One connection per loop in turn from the group's next one, so that the pool's work
        // (and, on a server that runs calls on their connection's loop, the server's) is
        // spread over every loop, and different pools start on different loops.
        var loops: [any EventLoop] = []
        for loop in group.makeIterator() { loops.append(loop) }
        let first = group.next()
        let start = loops.firstIndex { $0 === first } ?? 0
        self.pool = (0..<configuration.connections).map { index in
            ClientConnection(configuration: configuration, eventLoop: loops.isEmpty ? first : loops[(start + index) % loops.count],
                             logger: logger)
        }
        let pool = self.pool
        self.soleOnLoop = pool.filter { connection in
            pool.count > 1 && pool.filter { $0.eventLoop === connection.eventLoop }.count == 1
        }
    }

    /// An executor on the event loop of the pool's first connection. Tasks that make many
    /// calls can prefer it (`Task(executorPreference:)`): responses then resume them on
    /// the thread that read the response, with no hop to another thread.
    public var preferredExecutor: EventLoopExecutor { pool[0].executor }

    public func unary(_ request: ClientRequest) async throws -> RawResponse {
        // A caller already on one of the pool's event loops uses that loop's connection
        // while it is up: the call is written, and its reply read and resumed, without a
        // hop to another thread (a task that runs on an event loop, a service's handler or
        // the gateway's, stays on it). Callers are spread over the loops as their own
        // connections are, so this spreads calls as round-robin would. Only a connection
        // alone on its loop is taken so: where a loop has several (more connections than
        // loops), round-robin below uses, and so connects, all of them.
        if let local = soleOnLoop.first(where: { $0.eventLoop.inEventLoop }), local.isReady {
            return try await local.call(request)
        }
        // Round-robin, preferring a connection that is up.
        let start = next.wrappingAdd(1, ordering: .relaxed).oldValue
        var chosen = pool[start % pool.count]
        if pool.count > 1, !chosen.isReady {
            for offset in 1..<pool.count where pool[(start + offset) % pool.count].isReady {
                // This call goes on a connection that is up; the one whose turn it was
                // starts connecting for later calls (else a pool that had one connection
                // up would never use the others).
                chosen.warmUp()
                chosen = pool[(start + offset) % pool.count]
                break
            }
        }
        return try await chosen.call(request)
    }

    /// Closes every connection; calls in flight fail with UNAVAILABLE.
    public func close() async {
        for connection in pool { await connection.close() }
    }
}

/// One pooled connection and its reconnect state.
final class ClientConnection: Sendable {
    private enum State {
        case idle(failures: Int)
        case connecting(EventLoopFuture<ReadyConnection>, failures: Int)
        case ready(ReadyConnection)
        case backoff(until: NIODeadline, failures: Int)
        case closed
    }

    struct ReadyConnection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<ClientConnectionHandler>
        let callIDs: CallIDSource
    }

    let configuration: RPCClientConfiguration
    let eventLoop: any EventLoop
    let executor: EventLoopExecutor
    let logger: Logger
    private let state: Mutex<State>

    init(configuration: RPCClientConfiguration, eventLoop: any EventLoop, logger: Logger) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.executor = EventLoopExecutor(eventLoop: eventLoop)
        self.logger = logger
        self.state = Mutex(.idle(failures: 0))
    }

    var isReady: Bool {
        state.withLock { if case .ready = $0 { return true } else { return false } }
    }

    func call(_ request: ClientRequest) async throws -> RawResponse {
        let connection = try await readyConnection()
        let id = connection.callIDs.next()
        let handler = connection.handler
        let loop = connection.channel.eventLoop
        let cancellation = CallCancellation()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RawResponse, any Error>) in
                if loop.inEventLoop {
                    handler.value.start(id: id, request: request, cancellation: cancellation, continuation: continuation)
                } else {
                    loop.execute {
                        handler.value.start(id: id, request: request, cancellation: cancellation, continuation: continuation)
                    }
                }
            }
        } onCancel: {
            cancellation.cancel()
            loop.execute { handler.value.cancel(id: id) }
        }
    }

    /// Starts connecting if this connection is idle (or its backoff is over), without
    /// waiting for it.
    func warmUp() {
        let started: EventLoopFuture<ReadyConnection>? = state.withLock { state in
            switch state {
            case .idle(let failures):
                let future = connect()
                state = .connecting(future, failures: failures)
                return future
            case .backoff(let until, let failures) where NIODeadline.now() >= until:
                let future = connect()
                state = .connecting(future, failures: failures)
                return future
            default:
                return nil
            }
        }
        started?.whenComplete { [weak self] result in self?.connectionAttemptFinished(result) }
    }

    private func readyConnection() async throws -> ReadyConnection {
        enum Action { case use(ReadyConnection), wait(EventLoopFuture<ReadyConnection>), started(EventLoopFuture<ReadyConnection>), fail(RPCError) }
        let action: Action = state.withLock { state in
            switch state {
            case .ready(let ready):
                return .use(ready)
            case .connecting(let future, _):
                return .wait(future)
            case .closed:
                return .fail(RPCError(code: .unavailable, message: "the client has been closed"))
            case .backoff(let until, let failures):
                if NIODeadline.now() < until {
                    return .fail(RPCError(
                        code: .unavailable,
                        message: "\(configuration.host):\(configuration.port) is unreachable; reconnecting with backoff"))
                }
                let future = connect()
                state = .connecting(future, failures: failures)
                return .started(future)
            case .idle(let failures):
                let future = connect()
                state = .connecting(future, failures: failures)
                return .started(future)
            }
        }
        switch action {
        case .use(let ready): return ready
        case .fail(let error): throw error
        case .started(let future):
            // Registered outside the lock: the completion takes the lock itself.
            future.whenComplete { [weak self] result in self?.connectionAttemptFinished(result) }
            return try await wait(for: future)
        case .wait(let future):
            return try await wait(for: future)
        }
    }

    private func wait(for future: EventLoopFuture<ReadyConnection>) async throws -> ReadyConnection {
        do {
            return try await future.get()
        } catch let error as RPCError {
            throw error
        } catch ChannelError.connectTimeout {
            // No address in the message: a service's callers may be outside (a provider
            // system calling it), and an error it cannot handle travels on to them. The log
            // of the failed attempt names the address.
            throw RPCError(code: .unavailable, message: "a service this call needs did not answer in time")
        } catch {
            throw RPCError(code: .unavailable, message: "a service this call needs cannot be reached")
        }
    }

    private func connectionAttemptFinished(_ result: Result<ReadyConnection, any Error>) {
        let configuration = configuration
        state.withLock { state in
            guard case .connecting(_, let failures) = state else {
                if case .success(let ready) = result { ready.channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let ready):
                state = .ready(ready)
            case .failure:
                let ceiling = min(configuration.maxBackoff.nanoseconds,
                                  configuration.initialBackoff.nanoseconds * Int64(1 << min(failures, 20)))
                let pause = TimeAmount.nanoseconds(Int64.random(in: 0...max(ceiling, 1)))
                state = .backoff(until: .now() + pause, failures: failures + 1)
                logger.warning("connect failed; backing off", metadata: [
                    "server": "\(configuration.host):\(configuration.port)", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
                ])
            }
        }
    }

    /// Starts a connection attempt (called with the state lock held; does not block).
    private func connect() -> EventLoopFuture<ReadyConnection> {
        let configuration = configuration
        let logger = logger
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(
                        FrameDecoder(maxFrameSize: configuration.maxFrameSize), maximumBufferSize: configuration.maxFrameSize + 4))
                    try sync.addHandler(IdleStateHandler(allTimeout: configuration.keepaliveInterval))
                    try sync.addHandler(ClientConnectionHandler(configuration: configuration, logger: logger))
                }
            }
        let future = bootstrap.connect(host: configuration.host, port: configuration.port).flatMapThrowing { channel -> ReadyConnection in
            let handler = try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
            let ready = ReadyConnection(
                channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), callIDs: CallIDSource())
            handler.onGoAway = { [weak self] in self?.detach(channel) }
            channel.closeFuture.whenComplete { [weak self] _ in self?.detach(channel) }
            return ready
        }
        return future
    }

    /// A connection closed or was told to go away: new calls open a fresh one.
    private func detach(_ channel: any Channel) {
        state.withLock { state in
            if case .ready(let ready) = state, ready.channel === channel {
                state = .idle(failures: 0)
            }
        }
    }

    func close() async {
        let channel: (any Channel)? = state.withLock { state in
            defer { state = .closed }
            if case .ready(let ready) = state { return ready.channel }
            return nil
        }
        try? await channel?.close()
    }
}

/// Call ids for one connection: 1, 2, 3, … (0 is reserved).
final class CallIDSource: Sendable {
    private let counter = Atomic<UInt64>(0)
    func next() -> UInt64 { counter.wrappingAdd(1, ordering: .relaxed).newValue }
}
