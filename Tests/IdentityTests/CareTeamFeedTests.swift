import Foundation
import IdentityService
import Postgres
import TestSupport
import Testing

/// Identity's care-relationship change feed (migration 0002), at the database.
@Suite("Care-relationship change feed")
struct CareTeamFeedTests {
    static func sequences(_ db: PostgresClient) async throws -> [(Int64, UUID)] {
        try await db.query("SELECT sequence, relationship_id FROM care_relationship_changes ORDER BY sequence").map {
            (try $0.decode("sequence"), try $0.decode("relationship_id"))
        }
    }

    @Test("relationships made before the feed existed are its first changes; each later assignment or ending adds one, numbered in commit order")
    func backfillAndOrder() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 3) { db, schema in
            let all = try IdentityServiceApp.migrations()
            #expect(all.map(\.version).starts(with: [1, 2]))
            _ = try await Migrator(schema: schema, migrations: Array(all.prefix(1))).migrate(using: db)
            let (org, person, pro, old) = (UUID(), UUID(), UUID(), UUID())
            try await db.query("INSERT INTO organisations (id, name, kind) VALUES (\(org), 'Council', 'council')")
            try await db.query("""
                INSERT INTO accounts (id, kind, email, display_name, password_hash, organisation_id) VALUES
                (\(person), 'service_user', 'p@example.org', 'P', 'x', NULL), (\(pro), 'professional', 'c@example.org', 'C', 'x', \(org))
                """)
            try await db.query("""
                INSERT INTO care_relationships (id, person_id, professional_id, organisation_id, role, created_by)
                VALUES (\(old), \(person), \(pro), \(org), 'care_coordinator', \(pro))
                """)
            _ = try await Migrator(schema: schema, migrations: all).migrate(using: db)
            #expect(try await Self.sequences(db).map(\.1) == [old])

            // Ending it, then a new one: two more changes, in that order.
            try await db.query("UPDATE care_relationships SET ended_at = now() WHERE id = \(old)")
            let new = UUID()
            try await db.query("""
                INSERT INTO care_relationships (id, person_id, professional_id, organisation_id, role, created_by)
                VALUES (\(new), \(person), \(pro), \(org), 'care_team_member', \(pro))
                """)
            let feed = try await Self.sequences(db)
            #expect(feed.map(\.1) == [old, old, new])
            #expect(feed.map(\.0) == feed.map(\.0).sorted())

            // A writer that has changed a relationship but not committed holds the others
            // back, so no later number can be seen before its own.
            let third = UUID()
            let second = try await db.withTransaction { first in
                try await first.query("UPDATE care_relationships SET ended_at = now() WHERE id = \(new)")
                // (A coordinator: nothing the first writer holds conflicts with this row.)
                let second = Task {
                    try await db.query("""
                        INSERT INTO care_relationships (id, person_id, professional_id, organisation_id, role, created_by)
                        VALUES (\(third), \(person), \(pro), \(org), 'care_coordinator', \(pro))
                        """)
                }
                // Once the second writer waits for the feed's lock, the feed shows nothing
                // new: its number is not drawn while the first's is uncommitted.
                let deadline = ContinuousClock.now + .seconds(10)
                var waiting = 0
                while waiting == 0, ContinuousClock.now < deadline {
                    // This schema's feed lock only (its key: a fixed high word, the table's oid).
                    waiting = try await db.query("""
                        SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND classid = x'57434354'::bigint::oid AND objid = 'care_relationship_changes'::regclass::oid AND objsubid = 1
                        """)[0].decode("n")
                    if waiting == 0 { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(waiting == 1)
                #expect(try await Self.sequences(db).count == 3)
                return second
            }
            _ = try await second.value
            let after = try await Self.sequences(db)
            #expect(after.map(\.1) == [old, old, new, new, third])
            #expect(after.map(\.0) == after.map(\.0).sorted())
        }
    }
}
