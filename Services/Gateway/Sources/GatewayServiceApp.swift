import Hummingbird
import Logging
import ServiceKit

/// Wires the HTTP/JSON gateway together.
public enum GatewayServiceApp {
    public static let descriptor = ServiceCatalog.gateway

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let router = Router()
            router.get("/healthz") { _, _ in "ok\n" }
            let app = Application(
                router: router,
                configuration: .init(address: .hostname(runner.bindHost, port: runner.rpcPort), serverName: "wholecare-gateway"),
                logger: runner.logger)
            try await runner.run(services: [app], checks: [])
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }
}
