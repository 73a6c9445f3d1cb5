import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Migrations")
struct MigrationTests {
    static let first = Migration(version: 1, name: "0001_people", sql: """
        CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL);
        CREATE INDEX people_name ON people (name);
        """)
    static let second = Migration(version: 2, name: "0002_people_email", sql: "ALTER TABLE people ADD COLUMN email text;")

    @Test("migrations apply in order, once, and are recorded with checksums")
    func idempotent() async throws {
        try await TestDatabase.withFreshSchema { db, schema in
            let migrator = Migrator(schema: schema, migrations: [Self.second, Self.first].sorted { $0.version < $1.version })
            #expect(try await migrator.migrate(using: db) == [1, 2])
            #expect(try await migrator.migrate(using: db) == [])
            let recorded = try await db.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
            #expect(recorded.count == 2)
            #expect(try recorded[0].decode("checksum", as: String.self).count == 64)
            try await db.query("INSERT INTO people (name, email) VALUES ('a', 'b')")
        }
    }

    @Test("concurrent migrators take turns under the advisory lock")
    func concurrentMigrators() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 4) { db, schema in
            let migrator = Migrator(schema: schema, migrations: [Self.first, Self.second])
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 { group.addTask { try await migrator.migrate(using: db) } }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
            #expect(applied.sorted() == [1, 2])
        }
    }

    @Test("a migration changed after it was applied is refused by name")
    func changedMigrationRefused() async throws {
        try await TestDatabase.withFreshSchema { db, schema in
            try await Migrator(schema: schema, migrations: [Self.first]).migrate(using: db)
            var edited = Self.first
            edited.sql += "\n-- a quiet edit\n"
            let error = await #expect(throws: PostgresError.self) {
                try await Migrator(schema: schema, migrations: [edited, Self.second]).migrate(using: db)
            }
            #expect(error?.kind == .migration)
            #expect(error?.description.contains("0001_people") == true)
            // Nothing after the refused one was applied.
            let columns = try await db.query(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = \(schema) AND column_name = 'email'")
            #expect(try columns[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("a migration waits out a lock held a while, even on connections with a short lock timeout, retries, and gives up cleanly")
    func migrationLockTimeout() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 3, lockTimeout: .milliseconds(50)) { db, schema in
            try await Migrator(schema: schema, migrations: [Self.first]).migrate(using: db)
            // Holds a lock on `people` until a migration is seen waiting for it (or 10 s
            // pass), then for `hold` more (nil: until the migration has ended).
            @Sendable func whileLocked<T: Sendable>(hold: Duration?, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
                try await db.withConnection { holder in
                    let pid = try await holder.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                    try await holder.run(unsafeSQL: "BEGIN")
                    try await holder.run(unsafeSQL: "LOCK TABLE people IN ACCESS SHARE MODE")
                    let (ended, end) = AsyncStream.makeStream(of: Void.self)
                    let work = Task {
                        defer { end.finish() }
                        return try await body()
                    }
                    let giveUp = ContinuousClock.now + .seconds(10)
                    while ContinuousClock.now < giveUp, try await db.query(
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE \(pid) = ANY(pg_blocking_pids(pid))"
                    )[0].decode("n", as: Int.self) == 0 {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    guard let hold else {
                        // Until the migration has ended, but at most 15 s: one that never gives
                        // up would otherwise hang the test.
                        let inTime = await withTaskGroup(of: Bool.self) { group in
                            group.addTask {
                                for await _ in ended {}
                                return !Task.isCancelled
                            }
                            group.addTask {
                                try? await Task.sleep(for: .seconds(15))
                                return false
                            }
                            let first = await group.next() ?? false
                            group.cancelAll()
                            return first
                        }
                        try await holder.run(unsafeSQL: "COMMIT")
                        #expect(inTime, "the migration did not give up while the lock was held")
                        return try await work.value
                    }
                    try await Task.sleep(for: hold)
                    try await holder.run(unsafeSQL: "COMMIT")
                    return try await work.value
                }
            }

            // Waits 300 ms, six times the connections' 50 ms, and is applied.
            let applied = try await whileLocked(hold: .milliseconds(300)) {
                try await Migrator(schema: schema, migrations: [Self.first, Self.second]).migrate(using: db)
            }
            #expect(applied == [2])

            // With 100 ms attempts, it meets the timeout while a lock is held for 500 ms,
            // and goes through on a later attempt.
            let third = Migration(version: 3, name: "0003_people_phone", sql: "ALTER TABLE people ADD COLUMN phone text;")
            let retried = try await whileLocked(hold: .milliseconds(500)) {
                try await Migrator(schema: schema, migrations: [Self.first, Self.second, third], lockTimeout: .milliseconds(100),
                                   lockAttempts: 20).migrate(using: db)
            }
            #expect(retried == [3])

            // Two attempts of 200 ms against a lock held until it has stopped trying: it
            // stops, and nothing of it is kept.
            let fourth = Migration(version: 4, name: "0004_people_city", sql: "ALTER TABLE people ADD COLUMN city text;")
            let failure = try await whileLocked(hold: nil) { () -> PostgresError? in
                do {
                    _ = try await Migrator(schema: schema, migrations: [Self.first, Self.second, third, fourth], lockTimeout: .milliseconds(200),
                                           lockAttempts: 2).migrate(using: db)
                    return nil
                } catch let error as PostgresError {
                    return error
                }
            }
            #expect(failure?.kind == .migration)
            #expect(failure?.sqlState == "55P03")
            let versions = try await db.query("SELECT version FROM schema_migrations ORDER BY version").map { try $0.decode("version", as: Int.self) }
            #expect(versions == [1, 2, 3])
            // The advisory lock was let go: the same migration applies once the table is free.
            #expect(try await Migrator(schema: schema, migrations: [Self.first, Self.second, third, fourth]).migrate(using: db) == [4])
        }
    }

    @Test("a failing migration leaves no partial change")
    func failingMigrationAtomic() async throws {
        try await TestDatabase.withFreshSchema { db, schema in
            let broken = Migration(version: 1, name: "0001_broken", sql: "CREATE TABLE half (id int); SELECT * FROM no_such_table;")
            await #expect(throws: PostgresError.self) { try await Migrator(schema: schema, migrations: [broken]).migrate(using: db) }
            let tables = try await db.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = \(schema) AND table_name = 'half'")
            #expect(try tables[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("migration files load in version order and odd names are refused")
    func loadsFromDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "SELECT 2;".write(to: directory.appendingPathComponent("0002_b.sql"), atomically: true, encoding: .utf8)
        try "SELECT 1;".write(to: directory.appendingPathComponent("0001_a.sql"), atomically: true, encoding: .utf8)
        try "notes".write(to: directory.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        let loaded = try Migration.load(directory: directory)
        #expect(loaded.map(\.version) == [1, 2])
        #expect(loaded.map(\.name) == ["0001_a", "0002_b"])
        try "SELECT 3;".write(to: directory.appendingPathComponent("three.sql"), atomically: true, encoding: .utf8)
        #expect(throws: PostgresError.self) { try Migration.load(directory: directory) }
    }
}
