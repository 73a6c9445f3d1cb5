import Foundation
import Logging
import Postgres
import ServiceKit

/// Runs `DatabaseBootstrap` against a server given a superuser URL.
enum Bootstrapper {
    static func run(adminURL: String, database: String, passwords: [String: String]) async throws {
        let logger = Logger(label: "wholecare.bootstrap")
        let maintenance = PostgresClient(
            configuration: PostgresConfiguration(connectionString: adminURL, maxConnections: 1, applicationName: "wholecare-bootstrap"),
            logger: logger)
        do {
            let exists = try await maintenance.query("SELECT 1 AS present FROM pg_database WHERE datname = \(database)").count == 1
            if !exists {
                try await maintenance.withConnection { try await $0.run(unsafeSQL: "CREATE DATABASE \(PostgresQuery.quoteIdentifier(database)) ENCODING 'UTF8'") }
            }
        } catch {
            await maintenance.shutdown()
            throw error
        }
        await maintenance.shutdown()

        let target = PostgresClient(
            configuration: PostgresConfiguration(
                connectionString: replacingDatabase(in: adminURL, with: database), maxConnections: 1,
                applicationName: "wholecare-bootstrap"),
            logger: logger)
        do {
            let script = try DatabaseBootstrap(database: database, passwords: passwords).script()
            try await target.withTransaction { try await $0.run(unsafeSQL: script) }
        } catch {
            await target.shutdown()
            throw error
        }
        await target.shutdown()
    }

    /// Replaces the database path of a `postgresql://` URL.
    static func replacingDatabase(in url: String, with database: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + database
        return components.string ?? url
    }

    /// Derives a role's URL from an admin URL: same host, port and options.
    static func url(from adminURL: String, user: String, password: String, database: String) -> String {
        guard var components = URLComponents(string: adminURL) else { return adminURL }
        components.user = user
        components.password = password
        components.path = "/" + database
        return components.string ?? adminURL
    }
}
