import Contracts
import Foundation
import Postgres
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import Testing
import WholeCareCrypto

@Suite("Re-sealing fields after a key rotation")
struct FieldResealTests {
    /// A record with every kind of sealed value, sealed with `old`.
    func seedRecord(_ h: RecordsHarness) async throws -> (p: RecordsHarness.People, entry: String, marked: String) {
        let p = try await h.people()
        let person = p.person.account.id
        let entry = try await h.add(RecordsHarness.note("Talked about the stairs at home"), for: person, token: p.coordinator.token)
        let wrong = try await h.add(RecordsHarness.note("Bloods taken"), for: person, token: p.coordinator.token)
        var error = Wholecare_Records_V1_MarkEnteredInErrorRequest()
        error.entryID = wrong.id
        error.reason = "Recorded against the wrong person"
        _ = try await h.records.markEnteredInError(error, options: RecordsHarness.bearer(p.coordinator.token))
        var goal = RecordsHarness.note("", kind: .goal)
        goal.goal.target = "Walk to the shop"
        let goalEntry = try await h.add(goal, for: person, token: p.coordinator.token)
        var progress = Wholecare_Records_V1_AddGoalProgressRequest()
        progress.goalEntryID = goalEntry.id
        progress.percent = 40
        progress.note = "Made it to the corner"
        _ = try await h.records.addGoalProgress(progress, options: RecordsHarness.bearer(p.person.accessToken))
        var details = Wholecare_Records_V1_UpdateDetailsRequest()
        details.personID = person
        details.details.preferredName = "Pat"
        details.details.address = "1 High Street"
        details.expectedVersion = 0
        _ = try await h.records.updateDetails(details, options: RecordsHarness.bearer(p.person.accessToken))
        return (p, entry.id, wrong.id)
    }

    /// One `FIELD_ENCRYPTION_KEYS` entry.
    func keyEntry(_ id: String, _ key: [UInt8]) -> String { "\(id):\(Base64URL.encode(key))" }

    /// Every sealed value's key id, from the bytes themselves.
    func keyIDs(_ db: PostgresClient) async throws -> [String] {
        var ids: [String] = []
        for (table, column) in [("entries", "text_sealed"), ("entries", "error_reason_sealed"), ("goal_progress", "note_sealed"),
                                ("person_details", "sealed")] {
            for row in try await db.query(PostgresQuery(unsafeSQL: "SELECT \(column) AS v FROM \(table) WHERE \(column) IS NOT NULL")) {
                ids.append(FieldCipher.keyID(of: try row.decode("v", as: PostgresBytes.self).bytes) ?? "?")
            }
        }
        return ids
    }

    @Test("after a rotation every value is sealed again with the new key, reads the same with only that key, and a second run finds nothing")
    func resealAfterRotation() async throws {
        let oldKey = SecureRandom.bytes(32), newKey = SecureRandom.bytes(32)
        try await RecordsHarness.with(cipher: try FieldCipher(keys: ["old": oldKey], currentKeyID: "old")) { h in
            let (p, entryID, markedID) = try await seedRecord(h)
            let person = UUID(uuidString: p.person.account.id)!
            let before = try await keyIDs(h.db)
            #expect(before.count == 5 && before.allSatisfy { $0 == "old" }, "two texts, a reason, a note and the details")
            let rotated = RecordsStore(db: h.db, cipher: try FieldCipher(keys: ["new": newKey, "old": oldKey], currentKeyID: "new"))

            let dry = try await rotated.resealFields(pageSize: 2, dryRun: true)
            #expect(dry.resealed == ["entries": 2, "goal_progress": 1, "person_details": 1])
            #expect(try await keyIDs(h.db) == before, "a dry run changes nothing")

            let report = try await rotated.resealFields(pageSize: 2)
            #expect(report.resealed == ["entries": 2, "goal_progress": 1, "person_details": 1])
            #expect(report.totalUnreadable == 0 && report.changedMeanwhile == 0)
            #expect(try await keyIDs(h.db).allSatisfy { $0 == "new" })
            #expect(try await h.db.query("SELECT count(*) AS n FROM entries WHERE text_sealed IS NOT NULL AND key_id <> 'new'")[0]
                .decode("n", as: Int.self) == 0)

            // The old key can go: a store holding only the new key reads everything as before.
            let newOnly = RecordsStore(db: h.db, cipher: try FieldCipher(keys: ["new": newKey], currentKeyID: "new"))
            #expect(try await newOnly.entry(id: UUID(uuidString: entryID)!)?.text == "Talked about the stairs at home")
            let marked = try #require(try await newOnly.entry(id: UUID(uuidString: markedID)!))
            #expect(marked.text == "Bloods taken")
            #expect(marked.errorReason == "Recorded against the wrong person")
            #expect(try await newOnly.currentDetails(person: person)?.document.address == "1 High Street")
            let summary = try await newOnly.summary(person: person, latest: 10)
            #expect(summary.progress.values.map(\.note) == ["Made it to the corner"])

            #expect(try await rotated.resealFields().totalResealed == 0, "nothing left to do")
        }
    }

    @Test("values sealed with a key the list lacks are counted and left alone; the command's exit status says what is left")
    func unreadableKept() async throws {
        let oldKey = SecureRandom.bytes(32)
        try await RecordsHarness.with(cipher: try FieldCipher(keys: ["old": oldKey], currentKeyID: "old")) { h in
            _ = try await seedRecord(h)
            let before = try await keyIDs(h.db)
            let forgetful = keyEntry("new", SecureRandom.bytes(32))
            let report = try await RecordsStore(db: h.db, cipher: try FieldCipher(keyring: forgetful)).resealFields()
            #expect(report.totalResealed == 0)
            #expect(report.unreadable == ["entries": 2, "goal_progress": 1, "person_details": 1])
            #expect(try await keyIDs(h.db) == before)

            // The operator's command, on the same schema: it says so and exits with 1.
            let owner = try TestDatabase.adminURL()
            let refused = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", h.schema],
                                                  environment: ["RECORDS_OWNER_DATABASE_URL": owner, "FIELD_ENCRYPTION_KEYS": forgetful])
            #expect(refused.status == 3)
            #expect(refused.output.contains("do not retire any key yet"))
            // A wrong schema is named, not reported as an SQL error.
            let elsewhere = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", "no_such_schema"],
                                                    environment: ["RECORDS_OWNER_DATABASE_URL": owner, "FIELD_ENCRYPTION_KEYS": forgetful])
            #expect(elsewhere.status == 1)
            #expect(elsewhere.output.contains("no records tables found in schema"))
            let rotated = keyEntry("new", SecureRandom.bytes(32)) + "," + keyEntry("old", oldKey)
            // A dry run with work to do does not say "done".
            let dry = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", h.schema, "--dry-run"],
                                              environment: ["RECORDS_OWNER_DATABASE_URL": owner, "FIELD_ENCRYPTION_KEYS": rotated])
            #expect(dry.status == 2)
            #expect(dry.output.contains("entries: would re-seal 2 row(s) with key new"))
            #expect(try await keyIDs(h.db) == before)
            let done = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", h.schema],
                                               environment: ["RECORDS_OWNER_DATABASE_URL": owner, "FIELD_ENCRYPTION_KEYS": rotated])
            #expect(done.status == 0)
            #expect(done.output.contains("entries: re-sealed 2 row(s) with key new"))
            #expect(try await keyIDs(h.db).allSatisfy { $0 == "new" })
            let again = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", h.schema, "--dry-run"],
                                                environment: ["RECORDS_OWNER_DATABASE_URL": owner, "FIELD_ENCRYPTION_KEYS": rotated])
            #expect(again.status == 0, "nothing left to do: \(again.output)")
        }
    }

    @Test("entries stay immutable: sealed text changes only for the owner with re-sealing switched on; a marked entry's reason never changes")
    func guardHolds() async throws {
        try await RecordsHarness.with { h in
            let (_, entryID, markedID) = try await seedRecord(h)
            let id = UUID(uuidString: entryID)!, marked = UUID(uuidString: markedID)!
            // The owner, without switching re-sealing on.
            let plain = await #expect(throws: PostgresError.self) {
                try await h.db.query("UPDATE entries SET text_sealed = text_sealed || '\\x00'::bytea WHERE id = \(id)")
            }
            #expect(plain?.sqlState == "42501")
            #expect(plain?.serverMessage?.contains("immutable") == true)
            // A marked entry's reason, by anyone, without re-sealing.
            let reason = await #expect(throws: PostgresError.self) {
                try await h.db.query("UPDATE entries SET error_reason_sealed = text_sealed WHERE id = \(marked)")
            }
            #expect(reason?.sqlState == "42501")
            #expect(reason?.serverMessage?.contains("immutable") == true)
            // Re-sealing switched on cannot clear a value either.
            let cleared = await #expect(throws: PostgresError.self) {
                try await h.db.withTransaction { session in
                    try await session.query("SELECT set_config('wholecare.reseal', 'on', true)")
                    try await session.query("UPDATE entries SET text_sealed = NULL WHERE id = \(id)")
                }
            }
            #expect(cleared?.sqlState == "42501")
            #expect(cleared?.serverMessage?.contains("immutable") == true)
            // Nor the effective date, which the guard did not cover before.
            let redated = await #expect(throws: PostgresError.self) {
                try await h.db.query("UPDATE entries SET effective_date = effective_date - 1 WHERE id = \(id)")
            }
            #expect(redated?.serverMessage?.contains("immutable") == true)
            // The records service's own role, with re-sealing switched on: refused.
            let appURL = try TestDatabase.environment("RECORDS_DATABASE_URL")
            let app = TestDatabase.client(url: appURL, maxConnections: 1, searchPath: h.schema)
            let role = try await app.query("SELECT current_user AS r")[0].decode("r", as: String.self)
            try await h.db.query(PostgresQuery(unsafeSQL: """
                GRANT USAGE ON SCHEMA \(PostgresQuery.quoteIdentifier(h.schema)) TO \(PostgresQuery.quoteIdentifier(role));
                """))
            try await h.db.query(PostgresQuery(unsafeSQL: "GRANT SELECT, UPDATE ON entries TO \(PostgresQuery.quoteIdentifier(role))"))
            let byApp = await #expect(throws: PostgresError.self) {
                try await app.withTransaction { session in
                    try await session.query("SELECT set_config('wholecare.reseal', 'on', true)")
                    try await session.query("UPDATE entries SET text_sealed = text_sealed || '\\x00'::bytea WHERE id = \(id)")
                }
            }
            #expect(byApp?.sqlState == "42501")
            #expect(byApp?.serverMessage?.contains("immutable") == true, "refused by the guard, not for want of a grant")
            // The tool itself says plainly that it needs the owner.
            await #expect(throws: RecordsStore.NotOwner.self) {
                try await RecordsStore(db: app, cipher: try FieldCipher(keys: ["k": SecureRandom.bytes(32)], currentKeyID: "k")).resealFields()
            }
            await app.shutdown()
            // The owner with re-sealing on may replace it (the tool's path).
            try await h.db.withTransaction { session in
                try await session.query("SELECT set_config('wholecare.reseal', 'on', true)")
                try await session.query("UPDATE entries SET text_sealed = text_sealed || '\\x00'::bytea WHERE id = \(id)")
            }
        }
    }

    @Test("many pages: every version of every person's details is re-sealed, one row per page")
    func manyPages() async throws {
        let oldKey = SecureRandom.bytes(32), newKey = SecureRandom.bytes(32)
        try await RecordsHarness.with(cipher: try FieldCipher(keys: ["old": oldKey], currentKeyID: "old")) { h in
            let p = try await h.people()
            for (who, token) in [(p.person.account.id, p.person.accessToken), (p.stranger.account.id, p.stranger.accessToken)] {
                for version in 0..<3 {
                    var details = Wholecare_Records_V1_UpdateDetailsRequest()
                    details.personID = who
                    details.details.preferredName = "Name \(version)"
                    details.expectedVersion = Int32(version)
                    _ = try await h.records.updateDetails(details, options: RecordsHarness.bearer(token))
                }
            }
            let rotated = RecordsStore(db: h.db, cipher: try FieldCipher(keys: ["new": newKey, "old": oldKey], currentKeyID: "new"))
            let report = try await rotated.resealFields(pageSize: 1)
            #expect(report.resealed == ["person_details": 6])
            #expect(report.isComplete)
            #expect(try await keyIDs(h.db) == Array(repeating: "new", count: 6))
            let newOnly = RecordsStore(db: h.db, cipher: try FieldCipher(keys: ["new": newKey], currentKeyID: "new"))
            #expect(try await newOnly.detailsVersions(person: UUID(uuidString: p.stranger.account.id)!).map(\.document.preferredName)
                    == ["Name 2", "Name 1", "Name 0"])
        }
    }

    @Test("a value its listed key does not open is reported as damaged, left alone, and the command exits 4")
    func damagedValue() async throws {
        let oldKey = SecureRandom.bytes(32)
        try await RecordsHarness.with(cipher: try FieldCipher(keys: ["old": oldKey], currentKeyID: "old")) { h in
            let (_, entryID, markedID) = try await seedRecord(h)
            // One entry's text copied onto another: intact bytes, bound to the wrong row.
            try await h.db.withTransaction { session in
                try await session.query("SELECT set_config('wholecare.reseal', 'on', true)")
                try await session.query("""
                    UPDATE entries SET text_sealed = (SELECT text_sealed FROM entries WHERE id = \(UUID(uuidString: markedID)!))
                    WHERE id = \(UUID(uuidString: entryID)!)
                    """)
            }
            let rotated = keyEntry("new", SecureRandom.bytes(32)) + "," + keyEntry("old", oldKey)
            let run = try await BuiltTool.run("wholecare", ["reseal-fields", "--schema", h.schema],
                                              environment: ["RECORDS_OWNER_DATABASE_URL": try TestDatabase.adminURL(), "FIELD_ENCRYPTION_KEYS": rotated])
            #expect(run.status == 4)
            #expect(run.output.contains("entries: 1 row(s) whose key is listed but does not open them"))
            #expect(run.output.contains("running again will not help"))
            #expect(run.output.contains("entries: re-sealed 1 row(s) with key new"))
            #expect(try await keyIDs(h.db).filter { $0 == "old" }.count == 1, "the damaged value is left as it was")
        }
    }
}
