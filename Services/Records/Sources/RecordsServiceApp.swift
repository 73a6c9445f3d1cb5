import Auth
import Foundation
import Logging
import Postgres
import RPC
import ServiceKit
import ServiceLifecycle
import WholeCareCrypto

/// Wires the records service together: database pool, field cipher, identity link, RPC
/// server, admin listener.
public enum RecordsServiceApp {
    public static let descriptor = ServiceCatalog.records

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let cipher = try fieldCipher(runner.environment)
            let identity = try IdentityLink.fromEnvironment(runner.environment, service: descriptor.name, logger: runner.logger)
            let client = try runner.makeDatabase()
            let database = DatabaseService(client: client)
            let service = RecordsRPCService(store: RecordsStore(db: client, cipher: cipher), identity: identity, refusals: RefusalLog())
            var router = RPCRouter()
            router.register(service)
            service.registerEncodedReplies(into: &router)
            router.interceptors = [identity.authInterceptor()]
            let rpc = try runner.makeRPCServer(router: router)
            // Shutdown runs in reverse: the RPC server stops first, then the care-team
            // follower, then the held refusals are written, then the database closes.
            let refusals = HeldRefusalWriter(service: service, logger: runner.logger)
            let interval = try runner.environment.duration("CARE_TEAM_SYNC_INTERVAL", default: .seconds(1))
            // At most a third of how stale the copy may get before summaries stop reading it
            // (`CareTeamCopy.maxLag`, 30 s).
            guard interval >= .milliseconds(50), interval <= .seconds(10) else {
                throw ConfigurationError(variable: "CARE_TEAM_SYNC_INTERVAL", problem: "must be between 50ms and 10s")
            }
            let follower = CareTeamFollower(copy: service.careTeams, interval: interval, logger: runner.logger)
            try await runner.run(services: [database, refusals, follower, rpc], checks: [database.readinessCheck])
            await identity.close()
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }

    /// The field cipher from `FIELD_ENCRYPTION_KEYS` (the current key first).
    public static func fieldCipher(_ environment: EnvironmentConfiguration) throws -> FieldCipher {
        do {
            return try FieldCipher(keyring: try environment.require("FIELD_ENCRYPTION_KEYS"))
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(variable: "FIELD_ENCRYPTION_KEYS", problem: "must be id:base64url-key entries (32-byte keys), current first")
        }
    }

    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile)
        }
        return try Migration.load(directory: directory)
    }
}

/// Writes the refusals the records service has counted (see `RefusalLog`) every few
/// seconds, and all of them at shutdown (after the RPC server has stopped, before the
/// database closes: services stop in the reverse of their order).
struct HeldRefusalWriter: Service {
    let service: RecordsRPCService
    let logger: Logger
    var interval: Duration = .seconds(5)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                let outcome = await service.writeHeldRefusals()
                if outcome.unwritten > 0 {
                    logger.warning("could not write counted refusals to the access log; will retry", metadata: ["rows": "\(outcome.unwritten)"])
                }
            }
        }
        let outcome = await service.writeHeldRefusals(all: true)
        if outcome.unwritten > 0 {
            logger.error("counted refusals not written to the access log at shutdown", metadata: ["rows": "\(outcome.unwritten)"])
        }
    }
}
