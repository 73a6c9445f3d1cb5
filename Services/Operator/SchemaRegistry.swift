import IdentityService
import RecordsService
import Postgres

/// Every service's migrations, in start-up order.
enum SchemaRegistry {
    static func all() throws -> [(service: String, migrations: [Migration])] {
        [
            ("identity", try IdentityServiceApp.migrations()),
            ("records", try RecordsServiceApp.migrations()),
        ]
    }
}
