import Logging
import Postgres
import RPC
import ServiceKit

/// Wires the identity service together: database pool, RPC server, admin listener.
public enum IdentityServiceApp {
    public static let descriptor = ServiceCatalog.identity

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let database = DatabaseService(client: try runner.makeDatabase())
            let rpc = try runner.makeRPCServer(router: RPCRouter())
            try await runner.run(services: [database, rpc], checks: [database.readinessCheck])
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }
}
