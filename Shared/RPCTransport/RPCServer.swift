import Logging
import NIOCore
import NIOPosix
import RPC
import ServiceLifecycle
import Synchronization

/// Serves a router over TCP with the WholeCare framing. Adds Health and the method
/// listing to whatever the router serves. Run it in a `ServiceGroup` (it drains on
/// graceful shutdown) or drive it with `start()` / `shutdown()`.
public final class RPCServer: Service, Sendable {
    public let configuration: RPCServerConfiguration
    let router: RPCRouter
    let logger: Logger
    let group: any EventLoopGroup
    private let state = Mutex<State>(State())
    let connectionCount = Atomic<Int>(0)

    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: ServerConnectionHandle] = [:]
        /// Connections held, by client address (`addressKey`).
        var perAddress: [String: Int] = [:]
        var stopping = false
        var serving = true
    }

    public init(
        configuration: RPCServerConfiguration, router: RPCRouter, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.logger = logger
        self.group = group
        var router = router
        let methods = Mutex<[String]>([])
        let health = HealthService(serverName: configuration.serverName, methods: { methods.withLock { $0 } })
        router.register(health)
        methods.withLock { $0 = router.methodNames }
        self.router = router
    }

    /// Every method served (including Health).
    public var methodNames: [String] { router.methodNames }

    /// Binds and starts accepting; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let configuration = configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.initializeConnection(channel)
                }
            }
        let listener = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        state.withLock { $0.listener = listener }
        let port = listener.localAddress?.port ?? configuration.port
        logger.info("rpc server listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        return port
    }

    private func initializeConnection(_ channel: any Channel) throws {
        let count = connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        let address = Self.addressKey(channel.remoteAddress)
        let (stopping, fromAddress) = state.withLock { state -> (Bool, Int) in
            state.perAddress[address, default: 0] += 1
            return (state.stopping, state.perAddress[address]!)
        }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { state in
                _ = state.connections.removeValue(forKey: ObjectIdentifier(channel))
                let left = (state.perAddress[address] ?? 1) - 1
                state.perAddress[address] = left > 0 ? left : nil
            }
            // Last, so that a connection no longer counted has freed its address's place too.
            connectionCount.wrappingSubtract(1, ordering: .relaxed)
        }
        let sync = channel.pipeline.syncOperations
        if count > configuration.maxConnections || fromAddress > configuration.maxConnectionsPerAddress || stopping {
            // Over a cap: say why, then close. The client backs off and retries.
            try sync.addHandler(RefusingHandler(
                status: stopping ? .unavailable : .resourceExhausted,
                reason: stopping ? "server is shutting down"
                    : count > configuration.maxConnections ? "too many connections" : "too many connections from this address"))
            return
        }
        var connectionLogger = logger
        connectionLogger[metadataKey: "peer"] = "\(channel.remoteAddress?.description ?? "?")"
        let handler = ServerConnectionHandler(
            router: router, configuration: configuration, logger: connectionLogger,
            peer: channel.remoteAddress?.description ?? "unknown")
        try sync.addHandler(ByteToMessageHandler(
            FrameDecoder(maxFrameSize: configuration.maxFrameSize, arrivalBudget: configuration.frameArrivalBudget),
            maximumBufferSize: configuration.maxFrameSize + 4))
        try sync.addHandler(IdleStateHandler(allTimeout: configuration.idleTimeout))
        try sync.addHandler(handler)
        let handle = ServerConnectionHandle(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
        state.withLock { $0.connections[ObjectIdentifier(channel)] = handle }
    }

    /// What the per-address cap counts by: the IP address; an IPv6 one by its /64 (the
    /// network one customer is given, where a client can pick any address).
    static func addressKey(_ address: SocketAddress?) -> String {
        switch address {
        case .v6(let v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                return bytes[12...].map { String($0) }.joined(separator: ".")  // IPv4-mapped
            }
            return bytes[0..<8].map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
        case let address?:
            return address.ipAddress ?? "unknown"
        case nil:
            return "unknown"
        }
    }

    /// Stops accepting, sends GOAWAY on every connection, lets in-flight calls finish
    /// within the drain timeout, then closes what is left.
    public func shutdown() async {
        let (listener, connections) = state.withLock { state -> ((any Channel)?, [ServerConnectionHandle]) in
            state.stopping = true
            return (state.listener, Array(state.connections.values))
        }
        try? await listener?.close()
        for connection in connections {
            connection.channel.eventLoop.execute { connection.handler.value.beginDrain() }
        }
        let deadline = ContinuousClock.now + .nanoseconds(configuration.drainTimeout.nanoseconds)
        for connection in connections {
            let remaining = deadline - ContinuousClock.now
            if remaining > .zero {
                _ = try? await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await connection.channel.closeFuture.get() }
                    group.addTask { try await Task.sleep(for: remaining) }
                    try await group.next()
                    group.cancelAll()
                }
            }
            try? await connection.channel.close()
        }
        logger.info("rpc server stopped")
    }

    /// `Service`: start, wait for graceful shutdown, drain.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Connections currently open (for tests and metrics).
    public var openConnections: Int { connectionCount.load(ordering: .relaxed) }
}

struct ServerConnectionHandle: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ServerConnectionHandler>
}

/// Sends a GOAWAY and closes; installed on connections over the cap.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let status: RPCError.Code
    let reason: String

    init(status: RPCError.Code, reason: String) {
        self.status = status
        self.reason = reason
    }

    func channelActive(context: ChannelHandlerContext) {
        var frame = Wholecare_Rpc_V1_Frame()
        var goaway = Wholecare_Rpc_V1_GoAway()
        goaway.status = UInt32(status.rawValue)
        goaway.reason = reason
        frame.goaway = goaway
        if let buffer = try? FrameWriter.write(frame, allocator: context.channel.allocator) {
            context.writeAndFlush(NIOAny(buffer)).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
