import Foundation
import Postgres
import TestSupport
import Testing

/// The bootstrap's promise: run-time roles hold DML on their own schema and nothing else.
@Suite("Per-service roles")
struct RoleTests {
    static let services = ["identity", "records", "ledger", "engagement", "directory"]

    @Test("no service role is superuser, creates roles or databases, or bypasses row security")
    func rolesAreUnprivileged() async throws {
        let admin = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 1)
        let rows = try await admin.query("""
            SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication
            FROM pg_roles WHERE rolname LIKE 'wc\\_%' ORDER BY rolname
            """)
        #expect(rows.count == Self.services.count * 2)
        for row in rows {
            let name = try row.decode("rolname", as: String.self)
            for attribute in ["rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls", "rolreplication"] {
                #expect(try row.decode(attribute, as: Bool.self) == false, "\(name).\(attribute)")
            }
        }
        await admin.shutdown()
    }

    @Test("an app role cannot create tables, even in its own schema", arguments: services)
    func appRoleCannotCreate(service: String) async throws {
        let app = TestDatabase.client(url: try TestDatabase.environment(service.uppercased() + "_DATABASE_URL"), maxConnections: 1)
        let error = await #expect(throws: PostgresError.self) {
            try await app.query(PostgresQuery(unsafeSQL: "CREATE TABLE \(service).intruder (id int)"))
        }
        #expect(error?.sqlState == "42501")
        let inPublic = await #expect(throws: PostgresError.self) {
            try await app.query("CREATE TABLE public.intruder (id int)")
        }
        #expect(inPublic?.sqlState == "42501")
        await app.shutdown()
    }

    @Test("an app role cannot read another service's schema", arguments: services)
    func appRoleConfinedToOwnSchema(service: String) async throws {
        let others = Self.services.filter { $0 != service }
        let app = TestDatabase.client(url: try TestDatabase.environment(service.uppercased() + "_DATABASE_URL"), maxConnections: 1)
        for other in others {
            let row = try await app.query("SELECT has_schema_privilege(\(other), 'USAGE') AS usage")[0]
            #expect(try row.decode("usage", as: Bool.self) == false, "\(service) may use \(other)")
            let error = await #expect(throws: PostgresError.self) {
                try await app.query(PostgresQuery(unsafeSQL: "SELECT * FROM \(other).schema_migrations"))
            }
            #expect(error?.sqlState == "42501")
        }
        // Its own schema is its search path and usable.
        let own = try await app.query("SELECT current_schema() AS s, has_schema_privilege(current_schema(), 'USAGE') AS usage")[0]
        #expect(try own.decode("s", as: String.self) == service)
        #expect(try own.decode("usage", as: Bool.self))
        await app.shutdown()
    }

    @Test("an app role gets DML on tables its owner creates, and no DDL on them")
    func appRoleHasDML() async throws {
        let owner = TestDatabase.client(url: try TestDatabase.environment("LEDGER_OWNER_DATABASE_URL"), maxConnections: 1)
        let app = TestDatabase.client(url: try TestDatabase.environment("LEDGER_DATABASE_URL"), maxConnections: 1)
        let table = "probe_" + UUID().uuidString.prefix(8).lowercased()
        try await owner.query(PostgresQuery(unsafeSQL: "CREATE TABLE ledger.\(table) (id serial PRIMARY KEY, v text)"))
        try await app.query(PostgresQuery(unsafeSQL: "INSERT INTO \(table) (v) VALUES ('x')"))
        try await app.query(PostgresQuery(unsafeSQL: "UPDATE \(table) SET v = 'y'"))
        #expect(try await app.query(PostgresQuery(unsafeSQL: "SELECT v FROM \(table)"))[0].decode("v", as: String.self) == "y")
        let drop = await #expect(throws: PostgresError.self) { try await app.query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)")) }
        #expect(drop?.sqlState == "42501")
        try await owner.query(PostgresQuery(unsafeSQL: "DROP TABLE ledger.\(table)"))
        await owner.shutdown()
        await app.shutdown()
    }
}
