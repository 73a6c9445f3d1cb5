import ArgumentParser
import Foundation
import Logging
import Postgres
import ServiceKit

/// `wholecare migrate`: apply each service's migrations as that service's owner role.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending migrations for every service (or one), as each schema's owner role.",
        discussion: "Reads <SERVICE>_OWNER_DATABASE_URL for each service, e.g. IDENTITY_OWNER_DATABASE_URL.")

    @Option(help: "Only this service.")
    var service: String?

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let environment = EnvironmentConfiguration()
        for (name, migrations) in try SchemaRegistry.all() where service == nil || service == name {
            let descriptor = ServiceCatalog.named(name)!
            let url = try environment.databaseURL(name.uppercased() + "_OWNER_DATABASE_URL")
            let client = PostgresClient(configuration: PostgresConfiguration(
                connectionString: url, maxConnections: 1, applicationName: "wholecare-migrate"))
            do {
                let applied = try await Migrator(schema: descriptor.schema!, migrations: migrations).migrate(using: client)
                print("\(name): \(applied.isEmpty ? "up to date" : "applied \(applied.count) migration(s)") (\(migrations.count) total)")
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }
}
