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
/// Migrations wait for a lock up to their own `lockTimeout` (5 s by default), not the lock
/// timeout a service's connections carry for serving calls, and a migration that meets it
/// is rolled back and tried again, up to `lockAttempts` times (about a minute in all). A
/// migration waiting for a table's lock holds up the queries queued behind it, so it
/// waits a few seconds at a time rather than a minute at once; and one that meets a
/// lock held briefly (a catalog lock, a long query) still goes through.
public struct Migrator: Sendable {
    public let schema: String
    public let migrations: [Migration]
    /// How long one attempt at a migration may wait for a lock.
    public let lockTimeout: Duration
    /// How many times a migration is tried when it meets `lockTimeout`.
    public let lockAttempts: Int
    let logger: Logger

    public init(schema: String, migrations: [Migration], lockTimeout: Duration = .seconds(5), lockAttempts: Int = 12,
                logger: Logger = Logger(label: "wholecare.migrate")) {
        self.schema = schema
        self.migrations = migrations
        self.lockTimeout = lockTimeout
        self.lockAttempts = max(1, lockAttempts)
        self.logger = logger
    }

    /// Applies pending migrations; returns the versions applied by this call.
    @discardableResult
    public func migrate(using client: PostgresClient) async throws -> [Int] {
        let schema = schema
        let migrations = migrations
        let logger = logger
        let lockTimeout = lockTimeout, lockAttempts = lockAttempts
        return try await client.withConnection { session in
            // Polled rather than waited for, so that the connection's own lock timeout does
            // not apply; another process's run may take as long as all its attempts (with
            // their pauses) at every migration.
            let otherRun = (lockTimeout + .seconds(2)) * lockAttempts * max(1, migrations.count)
            let deadline = ContinuousClock.now + otherRun
            while try await !session.query(
                "SELECT pg_try_advisory_lock(hashtext(\("wholecare.migrate." + schema))) AS locked"
            )[0].decode("locked", as: Bool.self) {
                guard ContinuousClock.now < deadline else {
                    throw PostgresError(
                        kind: .migration,
                        safeMessage: "another process kept migrating schema \(schema) for longer than \(otherRun)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            do {
                let applied = try await Self.run(
                    session: session, schema: schema, migrations: migrations, lockTimeout: lockTimeout, lockAttempts: lockAttempts,
                    logger: logger)
                try await StatementCancellation.shielded {
                    try await session.query("SELECT pg_advisory_unlock(hashtext(\("wholecare.migrate." + schema)))")
                }
                return applied
            } catch {
                _ = try? await StatementCancellation.shielded {
                    try await session.query("SELECT pg_advisory_unlock(hashtext(\("wholecare.migrate." + schema)))")
                }
                throw error
            }
        }
    }

    private static func run(
        session: PostgresSession, schema: String, migrations: [Migration], lockTimeout: Duration, lockAttempts: Int, logger: Logger
    ) async throws -> [Int] {
        let quoted = PostgresQuery.quoteIdentifier(schema)
        /// One transaction with the migration lock timeout, tried again (after a pause that
        /// grows) while it meets that timeout.
        func transaction(_ what: String, _ body: () async throws -> Void) async throws {
            var attempt = 0
            while true {
                attempt += 1
                try await session.run(unsafeSQL: "BEGIN")
                do {
                    try await session.run(unsafeSQL: "SET LOCAL lock_timeout = \(lockTimeout.lockTimeoutMilliseconds)")
                    try await body()
                    try await session.finish("COMMIT")
                    return
                } catch let error as PostgresError where error.isLockTimeout && attempt < lockAttempts {
                    await session.rollbackQuietly()
                    logger.warning("a lock was held too long; trying again", metadata: [
                        "schema": "\(schema)", "step": "\(what)", "attempt": "\(attempt)"])
                    try await Task.sleep(for: .milliseconds(min(2_000, 250 * attempt)))
                } catch {
                    await session.rollbackQuietly()
                    throw error
                }
            }
        }
        try await transaction("schema_migrations") {
            try await session.run(unsafeSQL: """
                CREATE TABLE IF NOT EXISTS \(quoted).schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
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
            do {
                try await transaction(migration.name) {
                    try await session.run(unsafeSQL: "SET LOCAL search_path = \(quoted)")
                    try await session.run(unsafeSQL: migration.sql)
                    try await session.query(PostgresQuery(
                        unsafeSQL: "INSERT INTO \(quoted).schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        binds: [migration.version.postgresBind, migration.name.postgresBind, checksum.postgresBind]))
                }
            } catch {
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
