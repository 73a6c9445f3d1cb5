import Auth
import Foundation
import Logging
import Postgres
import RPC
import ServiceKit
import WholeCareCrypto

/// Wires the records service together: database pool, field cipher, identity link, RPC
/// server, admin listener.
public enum RecordsServiceApp {
    public static let descriptor = ServiceCatalog.records

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let cipher: FieldCipher
            do {
                cipher = try FieldCipher(keyring: try runner.environment.require("FIELD_ENCRYPTION_KEYS"))
            } catch let error as ConfigurationError {
                throw error
            } catch {
                throw ConfigurationError(variable: "FIELD_ENCRYPTION_KEYS", problem: "must be id:base64url-key entries (32-byte keys), current first")
            }
            let identity = try IdentityLink.fromEnvironment(runner.environment, service: descriptor.name, logger: runner.logger)
            let client = try runner.makeDatabase()
            let database = DatabaseService(client: client)
            let service = RecordsRPCService(store: RecordsStore(db: client, cipher: cipher), identity: identity)
            var router = RPCRouter()
            router.register(service)
            router.interceptors = [identity.authInterceptor()]
            let rpc = try runner.makeRPCServer(router: router)
            try await runner.run(services: [database, rpc], checks: [database.readinessCheck])
            await identity.close()
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile)
        }
        return try Migration.load(directory: directory)
    }
}
