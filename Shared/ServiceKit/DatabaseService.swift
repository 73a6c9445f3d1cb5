import Logging
import Postgres
import ServiceLifecycle

/// Keeps a `PostgresClient` open for the life of the service group and shuts the pool
/// down gracefully (after services that use it, since it is added first).
public struct DatabaseService: Service {
    public let client: PostgresClient

    public init(client: PostgresClient) {
        self.client = client
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await client.shutdown()
    }

    /// A readiness check that runs `SELECT 1`.
    public var readinessCheck: ReadinessCheck {
        let client = client
        return ReadinessCheck(name: "database") {
            (try? await client.query("SELECT 1 AS ok").count) == 1
        }
    }
}
