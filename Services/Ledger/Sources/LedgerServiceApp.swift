import Auth
import Foundation
import Logging
import Postgres
import RPC
import ServiceKit
import ServiceLifecycle

/// Wires the ledger together: database pool, identity link, RPC server, the annual
/// care-statement job, admin listener.
public enum LedgerServiceApp {
    public static let descriptor = ServiceCatalog.ledger

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let identity = try IdentityLink.fromEnvironment(runner.environment, service: descriptor.name, logger: runner.logger)
            let client = try runner.makeDatabase()
            let database = DatabaseService(client: client)
            let service = LedgerRPCService(store: LedgerStore(db: client), identity: identity)
            var router = RPCRouter()
            router.register(service)
            router.interceptors = [identity.authInterceptor()]
            let rpc = try runner.makeRPCServer(router: router)
            let statements = AnnualStatementJob(service: service, logger: runner.logger)
            try await runner.run(services: [database, rpc, statements], checks: [database.readinessCheck])
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

/// Issues each person's annual care-account statement when their last one is a year old.
/// Checks hourly; several ledger instances may run it (a person may at worst get two
/// statements the same hour, never none).
struct AnnualStatementJob: Service {
    let service: LedgerRPCService
    let logger: Logger

    func run() async throws {
        // Stop promptly on SIGTERM rather than finishing an hour's sleep.
        await cancelWhenGracefulShutdown { await loop() }
    }

    private func loop() async {
        while !Task.isCancelled {
            do {
                for person in try await service.store.peopleDueAnnualStatement() {
                    _ = try await service.issueStatement(person: person, kind: "annual")
                }
            } catch {
                logger.warning("annual statement run failed; will retry", metadata: ["error": "\(type(of: error))"])
            }
            try? await Task.sleep(for: .seconds(3600))
            if Task.isCancelled { break }
        }
    }
}
