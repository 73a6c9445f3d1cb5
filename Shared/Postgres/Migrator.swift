import Foundation
import Logging

/// One versioned SQL migration.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Loads `NNNN_description.sql` files from a directory (a bundled resource folder),
    /// in version order. Any other `.sql` file name is an error, so a typo cannot be
    /// silently skipped; duplicate versions are an error too.
    public static func load(directory: URL) throws -> [Migration] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var migrations: [Migration] = []
        for name in names where name.hasSuffix(".sql") {
            let stem = name.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]), version > 0 else {
                throw PostgresError(kind: .migration, safeMessage: "migration file \(name) is not named NNNN_description.sql")
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            migrations.append(Migration(version: version, name: String(stem), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw PostgresError(kind: .migration, safeMessage: "migrations \(a.name) and \(b.name) share version \(a.version)")
        }
        return migrations
    }
}

/// Applies migrations to one schema.
///
/// Runs under a session advisory lock keyed by the schema name, so two processes
/// migrating at once take turns. Each migration runs in its own transaction with
/// `search_path` set to the schema, and is recorded in `<schema>.schema_migrations`
/// with a SHA-256 checksum of its text. An applied migration whose text has changed
/// stops everything with an error naming it.
///
/// Migrations wait for locks up to their own `lockTimeout` (a minute by default), not the
/// short lock timeout a service's connections carry for serving calls: that limit is
/// there to keep calls quick, and a migration at start-up would otherwise fail whenever
/// another session briefly held a catalog lock it needs.
public struct Migrator: Sendable {
    public let schema: String
    public let migrations: [Migration]
    /// How long a migration (or waiting for another process's migration run) may wait
    /// for a lock before it fails.
    public let lockTimeout: Duration
    let logger: Logger

    public init(schema: String, migrations: [Migration], lockTimeout: Duration = .seconds(60),
                logger: Logger = Logger(label: "wholecare.migrate")) {
        self.schema = schema
        self.migrations = migrations
        self.lockTimeout = lockTimeout
        self.logger = logger
    }

    /// Applies pending migrations; returns the versions applied by this call.
    @discardableResult
    public func migrate(using client: PostgresClient) async throws -> [Int] {
        let schema = schema
        let migrations = migrations
        let logger = logger
        let lockTimeout = lockTimeout
        return try await client.withConnection { session in
            // Polled rather than waited for, so that the connection's own lock timeout does
            // not apply and the wait is bounded by `lockTimeout` instead.
            let deadline = ContinuousClock.now + lockTimeout
            while try await !session.query(
                "SELECT pg_try_advisory_lock(hashtext(\("wholecare.migrate." + schema))) AS locked"
            )[0].decode("locked", as: Bool.self) {
                guard ContinuousClock.now < deadline else {
                    throw PostgresError(
                        kind: .migration,
                        safeMessage: "another process kept migrating schema \(schema) for longer than \(lockTimeout)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            do {
                let applied = try await Self.run(
                    session: session, schema: schema, migrations: migrations, lockTimeout: lockTimeout, logger: logger)
                try await session.query("SELECT pg_advisory_unlock(hashtext(\("wholecare.migrate." + schema)))")
                return applied
            } catch {
                _ = try? await session.query("SELECT pg_advisory_unlock(hashtext(\("wholecare.migrate." + schema)))")
                throw error
            }
        }
    }

    private static func run(
        session: PostgresSession, schema: String, migrations: [Migration], lockTimeout: Duration, logger: Logger
    ) async throws -> [Int] {
        let quoted = PostgresQuery.quoteIdentifier(schema)
        let setLockTimeout = "SET LOCAL lock_timeout = \(lockTimeout.lockTimeoutMilliseconds)"
        try await session.run(unsafeSQL: "BEGIN")
        do {
            try await session.run(unsafeSQL: setLockTimeout)
            try await session.run(unsafeSQL: """
                CREATE TABLE IF NOT EXISTS \(quoted).schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            try await session.run(unsafeSQL: "COMMIT")
        } catch {
            await session.rollbackQuietly()
            throw error
        }
        let rows = try await session.query(
            PostgresQuery(unsafeSQL: "SELECT version, name, checksum FROM \(quoted).schema_migrations"))
        var applied: [Int: (name: String, checksum: String)] = [:]
        for row in rows {
            applied[try row.decode("version")] = (try row.decode("name"), try row.decode("checksum"))
        }
        var done: [Int] = []
        for migration in migrations {
            let checksum = try await session.query(
                "SELECT encode(sha256(convert_to(\(migration.sql), 'UTF8')), 'hex') AS sum"
            )[0].decode("sum", as: String.self)
            if let existing = applied[migration.version] {
                guard existing.checksum == checksum else {
                    throw PostgresError(
                        kind: .migration,
                        safeMessage: "migration \(migration.name) in schema \(schema) was changed after it was applied; "
                            + "add a new migration instead of editing an applied one")
                }
                continue
            }
            try await session.run(unsafeSQL: "BEGIN")
            do {
                try await session.run(unsafeSQL: setLockTimeout)
                try await session.run(unsafeSQL: "SET LOCAL search_path = \(quoted)")
                try await session.run(unsafeSQL: migration.sql)
                try await session.query(PostgresQuery(
                    unsafeSQL: "INSERT INTO \(quoted).schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    binds: [migration.version.postgresBind, migration.name.postgresBind, checksum.postgresBind]))
                try await session.run(unsafeSQL: "COMMIT")
            } catch {
                await session.rollbackQuietly()
                throw PostgresError(
                    kind: .migration, safeMessage: "migration \(migration.name) in schema \(schema) failed",
                    sqlState: (error as? PostgresError)?.sqlState,
                    serverMessage: (error as? PostgresError)?.serverMessage)
            }
            logger.info("applied migration", metadata: ["schema": "\(schema)", "migration": "\(migration.name)"])
            done.append(migration.version)
        }
        return done
    }
}
