import Foundation
import Logging
import Metrics
import Postgres
import Prometheus
import RPC
import RPCTransport
import ServiceLifecycle

/// What every executable needs: configuration, logging, metrics, a database pool, the
/// admin listener, and one `ServiceGroup` with graceful shutdown on SIGTERM/SIGINT.
public struct ServiceRunner: Sendable {
    public let name: String
    public let environment: EnvironmentConfiguration
    public let logger: Logger
    public let registry: PrometheusCollectorRegistry
    public let rpcPort: Int
    public let adminPort: Int
    public let bindHost: String

    /// Bootstraps logging and metrics once per process and reads the common settings:
    /// `<NAME>_RPC_PORT` (default `defaultPort`), `<NAME>_ADMIN_PORT` (RPC port + 1000),
    /// `BIND_HOST` (default 127.0.0.1).
    public init(name: String, defaultRPCPort: Int, environment: EnvironmentConfiguration = .init()) throws {
        self.name = name
        self.environment = environment
        LoggingSetup.bootstrap(service: name, environment: environment)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        self.registry = registry
        var logger = Logger(label: "wholecare.\(name)")
        logger[metadataKey: "service"] = .string(name)
        self.logger = logger
        let prefix = name.uppercased()
        self.rpcPort = try environment.port("\(prefix)_RPC_PORT", default: defaultRPCPort)
        self.adminPort = try environment.port("\(prefix)_ADMIN_PORT", default: rpcPort + 1000)
        self.bindHost = environment.string("BIND_HOST", default: "127.0.0.1")
    }

    /// Opens the service's database pool from `DATABASE_URL` (the service's app role)
    /// and `DATABASE_POOL_SIZE`.
    public func makeDatabase() throws -> PostgresClient {
        let url = try environment.databaseURL("DATABASE_URL")
        let size = try environment.int("DATABASE_POOL_SIZE", default: 8, range: 1...200)
        let timeout = try environment.duration("DATABASE_ACQUIRE_TIMEOUT", default: .seconds(5))
        let lockTimeout = try environment.duration("DATABASE_LOCK_TIMEOUT", default: .seconds(5))
        var dbLogger = logger
        dbLogger[metadataKey: "component"] = "postgres"
        return PostgresClient(
            configuration: PostgresConfiguration(
                connectionString: url, maxConnections: size, acquireTimeout: timeout, applicationName: "wholecare-\(name)",
                lockTimeout: lockTimeout == .zero ? nil : lockTimeout),
            logger: dbLogger)
    }

    /// The service's RPC server on `BIND_HOST:<NAME>_RPC_PORT`, with logging and metrics
    /// interceptors ahead of whatever the router already has (authentication).
    public func makeRPCServer(router: RPCRouter) throws -> RPCServer {
        var router = router
        router.interceptors = [LoggingServerInterceptor(), MetricsServerInterceptor()] + router.interceptors
        let configuration = RPCServerConfiguration(
            host: bindHost, port: rpcPort, serverName: name,
            maxFrameSize: try environment.int("RPC_MAX_FRAME_SIZE", default: RPCProtocol.defaultMaxFrameSize, range: 1024...(64 << 20)),
            maxConcurrentCallsPerConnection: try environment.int("RPC_MAX_CONCURRENT_CALLS", default: 1024, range: 1...100_000),
            maxConnections: try environment.int("RPC_MAX_CONNECTIONS", default: 4096, range: 1...1_000_000),
            maxConnectionsPerAddress: try environment.int("RPC_MAX_CONNECTIONS_PER_ADDRESS", default: 256, range: 1...1_000_000))
        var rpcLogger = logger
        rpcLogger[metadataKey: "component"] = "rpc"
        return RPCServer(configuration: configuration, router: router, logger: rpcLogger)
    }

    /// Runs the given services plus the admin listener until SIGTERM/SIGINT, then shuts
    /// down in reverse order. Services listed first are started first and stopped last.
    public func run(services: [any Service], checks: [ReadinessCheck]) async throws {
        let admin = AdminServer.make(
            service: name, host: bindHost, port: adminPort, checks: checks, registry: registry, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: (services + [admin]).map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        logger.info("starting", metadata: ["rpc_port": "\(rpcPort)", "admin_port": "\(adminPort)"])
        try await group.run()
        logger.info("stopped")
    }

    /// Reports a start-up failure on standard error and exits with status 2.
    public static func fail(_ error: any Error, service: String) -> Never {
        FileHandle.standardError.write(Data("\(service): \(error)\n".utf8))
        exit(2)
    }
}
