import Foundation
import Postgres
import WholeCareCrypto

extension RecordsStore {
    /// What ``resealFields(pageSize:dryRun:)`` did (or would do), per table.
    public struct ResealReport: Sendable, Equatable {
        /// Rows with a value sealed by an older key, now sealed again with the current one
        /// (with `dryRun`: that would be).
        public var resealed: [String: Int] = [:]
        /// Rows with a value sealed by a key the keyring does not hold: left as they are.
        /// Until there are none, the key that sealed them must not be retired.
        public var unreadable: [String: Int] = [:]
        /// Rows with a value no key opens although its key is in the keyring: damaged, or
        /// not bound to its row (left as they are, for investigation).
        public var damaged: [String: Int] = [:]
        /// Rows that changed while being re-sealed (left for the next run).
        public var changedMeanwhile = 0

        public var totalResealed: Int { resealed.values.reduce(0, +) }
        public var totalUnreadable: Int { unreadable.values.reduce(0, +) }
        public var totalDamaged: Int { damaged.values.reduce(0, +) }
        /// Nothing left sealed with another key: the other keys may be retired.
        public var isComplete: Bool { totalUnreadable == 0 && totalDamaged == 0 && changedMeanwhile == 0 }
    }

    /// The schema searched has no records tables (or the user may not use it).
    public struct NoRecordsTables: Error, CustomStringConvertible {
        public var schema: String
        public var description: String { "no records tables found in schema \(schema) (wrong --schema, or the user may not use it)" }
    }

    /// The reseal must run as the owner of the records tables (see ``resealFields``).
    public struct NotOwner: Error, CustomStringConvertible {
        public var description: String {
            "the database user is not the owner of the records tables: use the schema owner's URL (RECORDS_OWNER_DATABASE_URL)"
        }
    }

    /// Re-seals, with the cipher's current key, every stored sealed field (entry text and
    /// entered-in-error reasons, goal-progress notes, personal details) that an older key
    /// sealed, keeping its plaintext and associated data; after a run with nothing
    /// unreadable, the older keys can be removed from `FIELD_ENCRYPTION_KEYS`.
    ///
    /// Runs as the records schema's **owner**: entries are immutable, and their guard lets
    /// only the owner, in a transaction that sets `wholecare.reseal`, replace sealed text
    /// (migration 0003). Pages of `pageSize` rows; each page's values are re-sealed in
    /// memory, then written in one transaction, each row only if it has not changed since
    /// it was read. Safe to run while the service runs, and again after an interruption.
    public func resealFields(pageSize: Int = 500, dryRun: Bool = false) async throws -> ResealReport {
        let owner = try await db.query("""
            SELECT current_schema() AS schema, c.oid IS NOT NULL AS found, pg_catalog.pg_get_userbyid(c.relowner) = current_user AS owner
            FROM (SELECT pg_catalog.to_regclass('entries') AS oid) t LEFT JOIN pg_catalog.pg_class c ON c.oid = t.oid
            """)[0]
        guard try owner.decode("found", as: Bool.self) else {
            throw NoRecordsTables(schema: try owner.decode("schema", as: String?.self) ?? "(none)")
        }
        guard try owner.decode("owner", as: Bool.self) else { throw NotOwner() }
        var report = ResealReport()
        let current = cipher.currentKeyID
        let zero = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

        // Entries: text and (for entries marked entered-in-error) the reason.
        try await resealPages("entries", into: &report, dryRun: dryRun, page: { last in
            """
            SELECT id, text_sealed, error_reason_sealed FROM entries
            WHERE id > \(try last?.decode("id", as: UUID.self) ?? zero) AND (text_sealed IS NOT NULL OR error_reason_sealed IS NOT NULL)
            ORDER BY id LIMIT \(pageSize)
            """
        }, update: { row in
            let id: UUID = try row.decode("id")
            let text = try row.decode("text_sealed", as: PostgresBytes?.self)?.bytes
            let reason = try row.decode("error_reason_sealed", as: PostgresBytes?.self)?.bytes
            let newText = try resealed(text, Self.aad(id, "text")), newReason = try resealed(reason, Self.aad(id, "reason"))
            guard newText != nil || newReason != nil else { return nil }
            return """
                UPDATE entries SET text_sealed = \((newText ?? text).map(PostgresBytes.init)),
                    error_reason_sealed = \((newReason ?? reason).map(PostgresBytes.init)),
                    key_id = CASE WHEN \(newText != nil) THEN \(current) ELSE key_id END
                WHERE id = \(id) AND text_sealed IS NOT DISTINCT FROM \(text.map(PostgresBytes.init))
                    AND error_reason_sealed IS NOT DISTINCT FROM \(reason.map(PostgresBytes.init))
                """
        })

        // Goal-progress notes.
        try await resealPages("goal_progress", into: &report, dryRun: dryRun, page: { last in
            """
            SELECT id, note_sealed FROM goal_progress
            WHERE id > \(try last?.decode("id", as: UUID.self) ?? zero) AND note_sealed IS NOT NULL ORDER BY id LIMIT \(pageSize)
            """
        }, update: { row in
            let id: UUID = try row.decode("id")
            let note = try row.decode("note_sealed", as: PostgresBytes.self).bytes
            guard let sealed = try resealed(note, Self.goalProgressAAD(id)) else { return nil }
            return """
                UPDATE goal_progress SET note_sealed = \(PostgresBytes(sealed)), key_id = \(current)
                WHERE id = \(id) AND note_sealed = \(PostgresBytes(note))
                """
        })

        // Personal details, every version.
        try await resealPages("person_details", into: &report, dryRun: dryRun, page: { last in
            """
            SELECT person_id, version, sealed FROM person_details
            WHERE (person_id, version) > (\(try last?.decode("person_id", as: UUID.self) ?? zero), \(try last?.decode("version", as: Int.self) ?? 0))
            ORDER BY person_id, version LIMIT \(pageSize)
            """
        }, update: { row in
            let person: UUID = try row.decode("person_id")
            let version: Int = try row.decode("version")
            let value = try row.decode("sealed", as: PostgresBytes.self).bytes
            guard let sealed = try resealed(value, Self.detailsAAD(person, version)) else { return nil }
            return """
                UPDATE person_details SET sealed = \(PostgresBytes(sealed)), key_id = \(current)
                WHERE person_id = \(person) AND version = \(version) AND sealed = \(PostgresBytes(value))
                """
        })
        return report
    }

    private struct Unreadable: Error {}
    private struct Damaged: Error {}

    /// The value sealed again with the current key; nil if it already is. Throws
    /// `Unreadable` if the keyring lacks its key, `Damaged` if its key does not open it.
    private func resealed(_ sealed: [UInt8]?, _ aad: [UInt8]) throws -> [UInt8]? {
        guard let sealed, FieldCipher.keyID(of: sealed) != cipher.currentKeyID else { return nil }
        let plaintext: [UInt8]
        do {
            plaintext = try cipher.open(sealed, associatedData: aad)
        } catch let error as CryptoError where error.kind == .unknownKey {
            throw Unreadable()
        } catch {
            throw Damaged()
        }
        return try cipher.seal(plaintext, associatedData: aad)
    }

    /// One table's pass: reads pages (`page` is given the previous page's last row, nil at
    /// first), asks `update` for each row's update (nil: nothing to do), writes each page,
    /// and counts what was re-sealed, unreadable, damaged or changed meanwhile.
    private func resealPages(
        _ table: String, into report: inout ResealReport, dryRun: Bool,
        page: (PostgresRow?) throws -> PostgresQuery, update: (PostgresRow) throws -> PostgresQuery?
    ) async throws {
        var last: PostgresRow?
        while true {
            let rows = try await db.query(try page(last))
            guard let end = rows.last else { return }
            last = end
            var updates: [PostgresQuery] = []
            for row in rows {
                do {
                    if let query = try update(row) { updates.append(query) }
                } catch is Unreadable {
                    report.unreadable[table, default: 0] += 1
                } catch is Damaged {
                    report.damaged[table, default: 0] += 1
                }
            }
            let missed = try await write(updates, dryRun: dryRun)
            report.changedMeanwhile += missed
            if !updates.isEmpty { report.resealed[table, default: 0] += updates.count - missed }
        }
    }

    /// Runs a page's updates in one transaction that allows re-sealing; returns how many
    /// rows had changed since they were read (and so were left alone).
    private func write(_ updates: [PostgresQuery], dryRun: Bool) async throws -> Int {
        guard !updates.isEmpty, !dryRun else { return 0 }
        return try await db.withBlockingTransaction { session in
            try session.query("SELECT set_config('wholecare.reseal', 'on', true)")
            return try updates.reduce(0) { missed, update in missed + (try session.query(update).affectedRows == 1 ? 0 : 1) }
        }
    }
}
