import Auth
import Contracts
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import RPC
import RPCTransport
import ServiceKit
import Synchronization

/// Wires the gateway: upstream RPC clients, the HTTP/JSON API on Hummingbird, the OpenAPI
/// document, health and readiness, and the admin listener. It never touches a database.
public enum GatewayServiceApp {
    public static let descriptor = ServiceCatalog.gateway

    /// Makes NIO's event loops Swift's global executor, so that the gateway's handlers run
    /// on the threads that read requests and RPC replies, not on a second pool of threads
    /// that each request and each reply must wake and hop to. Call it first, before any
    /// task runs (the `gateway` executable does). It is safe here because nothing the
    /// gateway runs blocks a thread: no database, no password hashing, no file read after
    /// start-up. (`make bench-gateway`: about 7 % more summary requests a second.)
    /// Returns whether NIO installed it (false: tasks stay on Swift's pool, which works, only
    /// slower); a second call returns the first call's answer.
    @discardableResult
    public static func runTasksOnEventLoops() -> Bool {
        tasksOnEventLoops.withLock { installed in
            if let installed { return installed }
            let result = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
            installed = result
            return result
        }
    }

    private static let tasksOnEventLoops = Mutex<Bool?>(nil)

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            if tasksOnEventLoops.withLock({ $0 }) == false {
                runner.logger.warning("tasks run on Swift's thread pool: NIO could not become the global executor")
            }
            let settings = try GatewaySettings(environment: runner.environment)
            func channel(_ upstream: GatewaySettings.Upstream) -> RPCClientTransport {
                RPCClientTransport(configuration: RPCClientConfiguration(host: upstream.host, port: upstream.port, agent: "wholecare-gateway"),
                                   logger: runner.logger)
            }
            let identity = channel(settings.identity), records = channel(settings.records), ledger = channel(settings.ledger)
            let api = API(settings: settings, identity: identity, records: records, ledger: ledger, logger: runner.logger)
            let (router, _) = try makeRouter(api: api, logger: runner.logger)
            let app = Application(
                router: router,
                configuration: .init(address: .hostname(runner.bindHost, port: runner.rpcPort), serverName: "wholecare-gateway"),
                logger: runner.logger)
            try await runner.run(services: [app], checks: [ReadinessCheck(name: "upstreams") { await api.upstreamsReady() }])
            for transport in [identity, records, ledger] { await transport.close() }
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }

    /// The OpenAPI document served at `/openapi.json` (Services/Gateway/Sources/openapi.json).
    public static func openAPIDocument() throws -> Data {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json") else { throw CocoaError(.fileNoSuchFile) }
        return try Data(contentsOf: url)
    }

    /// The router with every route, and the table of documented routes.
    public static func makeRouter(api: API, logger: Logger) throws -> (Router<GatewayContext>, [RouteSpec]) {
        let router = Router(context: GatewayContext.self)
        let documentData = try openAPIDocument()
        let rules = try OperationRules.load(from: documentData)
        // A first pass learns the route table, which the middleware needs for 405 answers.
        var probe = Registrar(router: Router(context: GatewayContext.self), api: api, rules: rules)
        api.register(on: &probe)
        router.add(middleware: GatewayMiddleware(settings: api.settings, logger: logger, methods: MethodTable(specs: probe.specs)))
        var registrar = Registrar(router: router, api: api, rules: rules)
        api.register(on: &registrar)
        let document = ByteBuffer(data: documentData)
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "public, max-age=300"],
                     body: .init(byteBuffer: document))
        }
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}")))
        }
        router.get("/readyz") { _, _ in
            let ready = await api.upstreamsReady()
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not ready\"}")))
        }
        return (router, registrar.specs)
    }
}

extension API {
    /// Ready when every service it needs answers its health check within a second.
    func upstreamsReady() async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            for (_, client) in health {
                group.addTask {
                    (try? await client.check(.init(), options: CallOptions(timeout: .seconds(1))).status) == .serving
                }
            }
            return await group.allSatisfy { $0 }
        }
    }
}
