/// Creates, per service, one schema and two roles on a PostgreSQL server:
///
/// - `wc_<schema>_owner` owns the schema and runs its migrations;
/// - `wc_<schema>_app` is what the running service connects as: `USAGE` on its own
///   schema and DML (`SELECT, INSERT, UPDATE, DELETE`) on tables the owner creates there,
///   nothing else.
///
/// No role is superuser, can create roles or databases, or has `BYPASSRLS`; `PUBLIC` loses
/// its default rights on the database so a role cannot even connect unless granted. It is
/// idempotent: re-running updates passwords and re-applies grants.
/// Run it as a superuser: on PostgreSQL 15 a role with only `CREATEROLE` may not alter
/// the attributes (`NOSUPERUSER …`) the script sets.
public struct DatabaseBootstrap: Sendable {
    public let database: String
    /// Password per role name.
    public let passwords: [String: String]

    public init(database: String, passwords: [String: String]) {
        self.database = database
        self.passwords = passwords
    }

    /// All role names the bootstrap creates.
    public static var roleNames: [String] {
        ServiceCatalog.withSchemas.flatMap { [$0.ownerRole!, $0.appRole!] }
    }

    /// The SQL script (one transaction-safe script of idempotent statements).
    public func script() throws -> String {
        var sql: [String] = []
        let db = Self.identifier(database)
        sql.append("REVOKE ALL ON DATABASE \(db) FROM PUBLIC")
        sql.append("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for service in ServiceCatalog.withSchemas {
            let schema = service.schema!
            for role in [service.ownerRole!, service.appRole!] {
                guard let password = passwords[role], !password.isEmpty else {
                    throw ConfigurationError(variable: "password for \(role)", problem: "is missing")
                }
                let r = Self.identifier(role)
                sql.append("""
                    DO $bootstrap$ BEGIN
                      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = \(Self.literal(role))) THEN
                        CREATE ROLE \(r) LOGIN;
                      END IF;
                    END $bootstrap$
                    """)
                sql.append("ALTER ROLE \(r) WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD \(Self.literal(password))")
                sql.append("GRANT CONNECT ON DATABASE \(db) TO \(r)")
                sql.append("ALTER ROLE \(r) IN DATABASE \(db) SET search_path = \(Self.identifier(schema))")
            }
            let owner = Self.identifier(service.ownerRole!)
            let app = Self.identifier(service.appRole!)
            let s = Self.identifier(schema)
            sql.append("CREATE SCHEMA IF NOT EXISTS \(s) AUTHORIZATION \(owner)")
            sql.append("ALTER SCHEMA \(s) OWNER TO \(owner)")
            sql.append("REVOKE ALL ON SCHEMA \(s) FROM PUBLIC")
            sql.append("GRANT USAGE ON SCHEMA \(s) TO \(app)")
            sql.append("ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA \(s) GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \(app)")
            sql.append("ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA \(s) GRANT USAGE, SELECT ON SEQUENCES TO \(app)")
            sql.append("ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA \(s) GRANT EXECUTE ON FUNCTIONS TO \(app)")
        }
        return sql.joined(separator: ";\n") + ";\n"
    }

    static func identifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
