import IdentityService
import LedgerService
import RecordsService
import Postgres

/// Every service's migrations, in start-up order.
enum SchemaRegistry {
    static func all() throws -> [(service: String, migrations: [Migration])] {
        [
            ("identity", try IdentityServiceApp.migrations()),
            ("records", try RecordsServiceApp.migrations()),
            ("ledger", try LedgerServiceApp.migrations()),
        ]
    }
}
