import Foundation
import Postgres
import RPC
import WholeCareCrypto

/// Who is writing, as stored on an entry.
public struct EntrySource: Sendable, Equatable {
    public var kind: String               // professional | organisation | self
    public var organisationID: UUID?
    public var authorID: UUID
    public var display: String
}

/// Keyset position for entry pages: (effective date, recorded at, id), newest first.
struct EntryCursor: Codable {
    var d: String
    var r: Double
    var i: String
}

/// The records schema's SQL, with field encryption. Every value is a bind, except the
/// summary's constant count of latest entries (see `latestEntriesQuery`).
public struct RecordsStore: Sendable {
    public let db: PostgresClient
    public let cipher: FieldCipher

    public init(db: PostgresClient, cipher: FieldCipher) {
        self.db = db
        self.cipher = cipher
    }

    static let entryColumns = """
        id, lineage_id, version, person_id, kind, status, source_kind, source_organisation_id, author_id, author_display,
        effective_start, effective_end, effective_date::text AS effective_date, code_system, code, code_display, text_sealed,
        details::text AS details, next_refill_on::text AS next_refill_on, supersedes_id, superseded_by_id,
        error_reason_sealed, recorded_at
        """

    /// `records.entries:<id>:<column>`, the associated data an entry's sealed field is bound to.
    static func aad(_ id: UUID, _ column: String) -> [UInt8] {
        var bytes = Array("records.entries:".utf8)
        bytes.reserveCapacity(64)
        ProtoWriter.appendText(of: id, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: column.utf8)
        return bytes
    }
    /// `aad(id, column)`'s bytes, built on the stack for as long as `body` runs.
    static func withAAD<T>(_ id: UUID, _ column: StaticString, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let prefix: StaticString = "records.entries:"
        let count = prefix.utf8CodeUnitCount + 36 + 1 + column.utf8CodeUnitCount
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { buffer in
            var at = 0
            func put(_ bytes: UnsafeBufferPointer<UInt8>) {
                _ = UnsafeMutableBufferPointer(rebasing: buffer[at..<(at + bytes.count)]).initialize(from: bytes)
                at += bytes.count
            }
            prefix.withUTF8Buffer { put($0) }
            ProtoWriter.withText(of: id) { put($0) }
            buffer[at] = UInt8(ascii: ":")
            at += 1
            column.withUTF8Buffer { put($0) }
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }
    static func goalProgressAAD(_ id: UUID) -> [UInt8] { Array("records.goal_progress:\(id.lowercasedString)".utf8) }

    /// Reads a row of `entryColumns`, by position (the summary reads hundreds of them).
    func entry(_ row: PostgresRow) throws -> RecordEntry {
        assert(row.columns.starts(with: ["id", "lineage_id", "version", "person_id", "kind", "status", "source_kind",
                                         "source_organisation_id", "author_id", "author_display", "effective_start",
                                         "effective_end", "effective_date", "code_system", "code", "code_display", "text_sealed",
                                         "details", "next_refill_on", "supersedes_id", "superseded_by_id",
                                         "error_reason_sealed", "recorded_at"]))
        let columns = row.columns
        guard columns.count >= 23, columns[0] == "id", columns[16] == "text_sealed", columns[22] == "recorded_at" else {
            throw PostgresError(kind: .decoding, safeMessage: "an entry row does not have the entry columns in order")
        }
        let id: UUID = try row.decode(at: 0)
        let sealedText = try row.decode(at: 16, as: PostgresBytes?.self)
        let sealedReason = try row.decode(at: 21, as: PostgresBytes?.self)
        let details = JSONValue.parseObject(try row.decode(at: 17, as: String.self)) ?? [:]
        guard let effectiveDate = CalendarDate(try row.decode(at: 12, as: String.self)) else {
            throw PostgresError(kind: .decoding, safeMessage: "column \"effective_date\" could not be read as a date", column: "effective_date")
        }
        return RecordEntry(
            id: id, lineageID: try row.decode(at: 1), version: try row.decode(at: 2), personID: try row.decode(at: 3),
            kind: try row.decode(at: 4), status: try row.decode(at: 5), sourceKind: try row.decode(at: 6),
            sourceOrganisationID: try row.decode(at: 7), authorID: try row.decode(at: 8),
            authorDisplay: try row.decode(at: 9), effectiveStart: try row.decode(at: 10),
            effectiveEnd: try row.decode(at: 11), effectiveDate: effectiveDate,
            codeSystem: try row.decode(at: 13), code: try row.decode(at: 14), codeDisplay: try row.decode(at: 15),
            text: try sealedText.map { try cipher.openString($0.bytes, associatedData: Self.aad(id, "text")) },
            details: details, nextRefillOn: try row.decode(at: 18, as: String?.self).flatMap(CalendarDate.init),
            supersedesID: try row.decode(at: 19), supersededByID: try row.decode(at: 20),
            errorReason: try sealedReason.map { try cipher.openString($0.bytes, associatedData: Self.aad(id, "reason")) },
            recordedAt: try row.decode(at: 22))
    }

    private func insertQuery(id: UUID, lineage: UUID, version: Int, person: UUID, entry: NewEntry, source: EntrySource,
                             supersedes: UUID?) throws -> PostgresQuery {
        let sealed = try entry.text.map { PostgresBytes(try cipher.seal($0, associatedData: Self.aad(id, "text"))) }
        let details = String(decoding: try JSONEncoder().encode(entry.details), as: UTF8.self)
        return """
            INSERT INTO entries (id, lineage_id, version, person_id, kind, status, source_kind, source_organisation_id, author_id,
                author_display, effective_start, effective_end, effective_date, code_system, code, code_display, text_sealed, details,
                next_refill_on, supersedes_id, key_id)
            VALUES (\(id), \(lineage), \(version), \(person), \(entry.kind), \(entry.status), \(source.kind), \(source.organisationID),
                \(source.authorID), \(source.display), \(entry.effectiveStart), \(entry.effectiveEnd), \(entry.effectiveDate.description)::date,
                \(entry.codeSystem), \(entry.code), \(entry.codeDisplay), \(sealed), \(details)::jsonb,
                \(entry.nextRefillOn?.description)::date, \(supersedes), \(cipher.currentKeyID))
            RETURNING \(unsafeRaw: Self.entryColumns)
            """
    }

    public func addEntry(person: UUID, entry: NewEntry, source: EntrySource) async throws -> RecordEntry {
        let id = UUID()
        let query = try insertQuery(id: id, lineage: id, version: 1, person: person, entry: entry, source: source, supersedes: nil)
        return try self.entry(try await db.query(query)[0])
    }

    public func entry(id: UUID) async throws -> RecordEntry? {
        try await db.query("SELECT \(unsafeRaw: Self.entryColumns) FROM entries WHERE id = \(id)").first.map(entry)
    }

    public enum ReviseOutcome: Sendable { case revised(RecordEntry), notCurrent }

    /// Replaces the current version `id` with a new one in the same lineage. Refuses if
    /// `id` is no longer current (someone amended it meanwhile).
    public func amend(id: UUID, with entry: NewEntry, source: EntrySource) async throws -> ReviseOutcome {
        let store = self
        return try await db.withTransaction { session in
            guard let row = try await session.query("""
                SELECT lineage_id, version, person_id, status FROM entries WHERE id = \(id) FOR UPDATE
                """).first else { return .notCurrent }
            let status: String = try row.decode("status")
            guard status != "superseded", status != "entered_in_error" else { return .notCurrent }
            let newID = UUID()
            let inserted = try await session.query(try store.insertQuery(
                id: newID, lineage: try row.decode("lineage_id"), version: try row.decode("version", as: Int.self) + 1,
                person: try row.decode("person_id"), entry: entry, source: source, supersedes: id))
            try await session.query("UPDATE entries SET status = 'superseded', superseded_by_id = \(newID) WHERE id = \(id)")
            return .revised(try store.entry(inserted[0]))
        }
    }

    public func markEnteredInError(id: UUID, reason: String) async throws -> ReviseOutcome {
        let sealed = PostgresBytes(try cipher.seal(reason, associatedData: Self.aad(id, "reason")))
        let rows = try await db.query("""
            UPDATE entries SET status = 'entered_in_error', error_reason_sealed = \(sealed), next_refill_on = NULL
            WHERE id = \(id) AND status NOT IN ('superseded', 'entered_in_error')
            RETURNING \(unsafeRaw: Self.entryColumns)
            """)
        return try rows.first.map { .revised(try entry($0)) } ?? .notCurrent
    }

    public func history(lineage: UUID) async throws -> [RecordEntry] {
        try await db.query("SELECT \(unsafeRaw: Self.entryColumns) FROM entries WHERE lineage_id = \(lineage) ORDER BY version DESC")
            .map(entry)
    }

    public struct EntryFilter: Sendable {
        public var kinds: [String] = []
        public var statuses: [String] = []
        public var sourceKind: String?
        public var from: CalendarDate?
        public var to: CalendarDate?
        public var limit: Int = 50
        public var cursor: String?
        public init() {}
    }

    /// A page of entries, newest first, and the cursor for the next page.
    public func entries(person: UUID, filter: EntryFilter) async throws -> (entries: [RecordEntry], next: String?) {
        var query: PostgresQuery = "SELECT \(unsafeRaw: Self.entryColumns) FROM entries WHERE person_id = \(person)"
        if filter.statuses.isEmpty {
            query.append(" AND status <> 'superseded'")
        } else {
            query.append(" AND status = ANY(\(filter.statuses)::text[])")
        }
        if !filter.kinds.isEmpty { query.append(" AND kind = ANY(\(filter.kinds)::text[])") }
        if let source = filter.sourceKind { query.append(" AND source_kind = \(source)") }
        if let from = filter.from { query.append(" AND effective_date >= \(from.description)::date") }
        if let to = filter.to { query.append(" AND effective_date <= \(to.description)::date") }
        if let text = filter.cursor {
            guard let bytes = Base64URL.decode(text), let cursor = try? JSONDecoder().decode(EntryCursor.self, from: Data(bytes)),
                  let date = CalendarDate(cursor.d), let id = UUID(uuidString: cursor.i)
            else { throw RPCError.invalidArgument(field: "cursor", "is not a cursor this service issued") }
            query.append("""
                 AND (effective_date, recorded_at, id) < (\(date.description)::date, to_timestamp(\(cursor.r)), \(id))
                """)
        }
        query.append(" ORDER BY entries.effective_date DESC, recorded_at DESC, id DESC LIMIT \(filter.limit + 1)")
        var rows = try await db.query(query).map(entry)
        var next: String?
        if rows.count > filter.limit {
            rows.removeLast()
            let last = rows[rows.count - 1]
            let cursor = EntryCursor(d: last.effectiveDate.description, r: last.recordedAt.timeIntervalSince1970, i: last.id.uuidString)
            next = Base64URL.encode(Array(try JSONEncoder().encode(cursor)))
        }
        return (rows, next)
    }

    /// What a record summary shows, as domain values: the current details, the active
    /// conditions, medications, allergies and goals, the latest entries, and each active
    /// goal's latest progress. The service itself writes its reply from `summaryRows`
    /// without decoding entries; this decoded form is for checking that reply (tests) and
    /// for any caller that needs the values.
    public struct SummaryData: Sendable {
        public var details: DetailsVersion?
        public var active: [RecordEntry]
        public var latest: [RecordEntry]
        public var progress: [UUID: GoalProgressRow]
    }

    public func summary(person: UUID, latest: Int) async throws -> SummaryData {
        let rows = try await summaryRows(person: person, latest: latest)
        return SummaryData(details: rows.details, active: try rows.active.map(entry), latest: try rows.latest.map(entry), progress: rows.progress)
    }

    /// What a summary shows, as the rows read for it (written to the reply straight from
    /// them, see `RecordsWire.summary`), in one round trip like `summary`.
    public struct SummaryRows: Sendable {
        public var details: DetailsVersion?
        public var active: PostgresRows
        public var latest: PostgresRows
        public var progress: [UUID: GoalProgressRow]
        /// The care team from records' copy (`careTeamQuery`), when it was asked for.
        public var careTeam: PostgresRows?
    }

    /// `careTeam`: also read the person's care team from records' copy (see `CareTeamCopy`).
    public func summaryRows(person: UUID, latest: Int, careTeam: Bool = false) async throws -> SummaryRows {
        try await db.withConnection { session in
            // One round trip for the reads (a pipeline), not one per statement.
            // The entries come in the binary format: no ids, times, version or sealed bytes
            // printed by the server and parsed back here (their dates and details are cast to
            // text in `entryColumns`, so every column has a binary reading).
            var queries = [
                Self.currentDetailsQuery(person), Self.activeEntriesQuery(person).binaryResults(),
                Self.latestEntriesQuery(person, latest).binaryResults(), Self.activeGoalsProgressQuery(person),
            ]
            if careTeam { queries.append(Self.careTeamQuery(person)) }
            let rows = try await session.pipeline(queries)
            return SummaryRows(details: try rows[0].first.map(self.details), active: rows[1], latest: rows[2],
                               progress: try self.progressByGoal(rows[3]), careTeam: careTeam ? rows[4] : nil)
        }
    }

    /// The person's care team from records' copy, in identity's order (coordinator first,
    /// then by name).
    static func careTeamQuery(_ person: UUID) -> PostgresQuery {
        """
        SELECT professional_id, professional_name, role, organisation_id FROM care_team
        WHERE person_id = \(person) ORDER BY role, professional_name
        """
    }

    // MARK: Care-team copy

    /// The last change from identity's feed applied to the copy.
    public func careTeamFeedPosition() async throws -> Int64 {
        try await db.query("SELECT after_sequence FROM care_team_feed").first?.decode("after_sequence") ?? 0
    }

    /// Applies changes from the feed in one transaction: an ended relationship leaves the
    /// copy, any other is added or replaced. Changes at or before the copy's position are
    /// skipped (another follower got there first: its state is at least as new), under a
    /// lock on the position, so followers in several processes never undo each other.
    /// Returns how many changes were applied.
    public func applyCareTeamChanges(_ changes: [CareTeamChange]) async throws -> Int {
        guard !changes.isEmpty else { return 0 }
        return try await db.withTransaction { session in
            let position: Int64 = try await session.query("SELECT after_sequence FROM care_team_feed FOR UPDATE")
                .first?.decode("after_sequence") ?? 0
            let fresh = changes.filter { $0.sequence > position }
            guard let last = fresh.map(\.sequence).max() else { return 0 }
            // In sequence order, the last change of each relationship is its state.
            var latest: [UUID: CareTeamChange] = [:]
            for change in fresh.sorted(by: { $0.sequence < $1.sequence }) { latest[change.relationshipID] = change }
            let ended = latest.values.filter(\.ended).map(\.relationshipID)
            let active = latest.values.filter { !$0.ended }
            if !ended.isEmpty {
                try await session.query("DELETE FROM care_team WHERE relationship_id = ANY(\(ended)::uuid[])")
            }
            if !active.isEmpty {
                try await session.query("""
                    INSERT INTO care_team (relationship_id, person_id, professional_id, organisation_id, role, professional_name)
                    SELECT * FROM unnest(\(active.map(\.relationshipID))::uuid[], \(active.map(\.personID))::uuid[],
                                         \(active.map(\.professionalID))::uuid[], \(active.map(\.organisationID))::uuid[],
                                         \(active.map(\.role))::text[], \(active.map(\.professionalName))::text[])
                    ON CONFLICT (relationship_id) DO UPDATE SET person_id = EXCLUDED.person_id,
                        professional_id = EXCLUDED.professional_id, organisation_id = EXCLUDED.organisation_id,
                        role = EXCLUDED.role, professional_name = EXCLUDED.professional_name
                    """)
            }
            try await session.query("UPDATE care_team_feed SET after_sequence = \(last), applied_at = now()")
            return fresh.count
        }
    }

    /// The latest progress of each of the person's active goals.
    static func activeGoalsProgressQuery(_ person: UUID) -> PostgresQuery {
        """
        SELECT DISTINCT ON (goal_lineage_id) id, goal_lineage_id, percent, note_sealed, source_kind, author_id, author_display, recorded_at
        FROM goal_progress WHERE goal_lineage_id IN (
            SELECT lineage_id FROM entries WHERE person_id = \(person) AND kind = 'goal' AND status = 'active')
        ORDER BY goal_lineage_id, recorded_at DESC
        """
    }

    static func activeEntriesQuery(_ person: UUID) -> PostgresQuery {
        """
        SELECT \(unsafeRaw: Self.entryColumns) FROM entries
        WHERE person_id = \(person) AND status = 'active' AND kind IN ('condition', 'medication', 'allergy', 'goal')
        ORDER BY entries.effective_date DESC, recorded_at DESC
        """
    }

    static func latestEntriesQuery(_ person: UUID, _ latest: Int) -> PostgresQuery {
        // The count is written into the statement, not bound: with `LIMIT $2` PostgreSQL
        // judges its generic plan too dear against one planned for the value, and plans
        // the statement again on every summary. (An Int prints only digits.)
        """
        SELECT \(unsafeRaw: Self.entryColumns) FROM entries
        WHERE person_id = \(person) AND status <> 'superseded'
        ORDER BY entries.effective_date DESC, recorded_at DESC, id DESC LIMIT \(unsafeRaw: String(max(latest, 0)))
        """
    }

    public func medications(person: UUID) async throws -> [RecordEntry] {
        try await db.query("""
            SELECT \(unsafeRaw: Self.entryColumns) FROM entries
            WHERE person_id = \(person) AND kind = 'medication' AND status = 'active'
            ORDER BY entries.next_refill_on NULLS LAST, entries.effective_date DESC
            """).map(entry)
    }

    /// Every current entry (for the FHIR export).
    public func allCurrentEntries(person: UUID) async throws -> [RecordEntry] {
        try await db.query("""
            SELECT \(unsafeRaw: Self.entryColumns) FROM entries WHERE person_id = \(person) AND status <> 'superseded'
            ORDER BY entries.effective_date, recorded_at
            """).map(entry)
    }

    // MARK: Goal progress

    public func addGoalProgress(goalLineage: UUID, person: UUID, percent: Int, note: String?, source: EntrySource) async throws -> GoalProgressRow {
        let id = UUID()
        let sealed = try note.map { PostgresBytes(try cipher.seal($0, associatedData: Self.goalProgressAAD(id))) }
        let row = try await db.query("""
            INSERT INTO goal_progress (id, goal_lineage_id, person_id, percent, note_sealed, key_id, source_kind, author_id, author_display)
            VALUES (\(id), \(goalLineage), \(person), \(percent), \(sealed), \(cipher.currentKeyID), \(source.kind), \(source.authorID), \(source.display))
            RETURNING id, goal_lineage_id, percent, note_sealed, source_kind, author_id, author_display, recorded_at
            """)[0]
        return try progress(row)
    }

    func progress(_ row: PostgresRow) throws -> GoalProgressRow {
        let id: UUID = try row.decode("id")
        let sealed = try row.decode("note_sealed", as: PostgresBytes?.self)
        return GoalProgressRow(
            id: id, goalLineageID: try row.decode("goal_lineage_id"), percent: try row.decode("percent"),
            note: try sealed.map { try cipher.openString($0.bytes, associatedData: Self.goalProgressAAD(id)) },
            sourceKind: try row.decode("source_kind"), authorID: try row.decode("author_id"),
            authorDisplay: try row.decode("author_display"), recordedAt: try row.decode("recorded_at"))
    }

    /// The latest progress for each of the given goals.
    public func latestProgress(goalLineages: [UUID]) async throws -> [UUID: GoalProgressRow] {
        guard !goalLineages.isEmpty else { return [:] }
        return try progressByGoal(try await db.query(Self.latestProgressQuery(goalLineages)))
    }

    static func latestProgressQuery(_ goalLineages: [UUID]) -> PostgresQuery {
        """
        SELECT DISTINCT ON (goal_lineage_id) id, goal_lineage_id, percent, note_sealed, source_kind, author_id, author_display, recorded_at
        FROM goal_progress WHERE goal_lineage_id = ANY(\(goalLineages)::uuid[])
        ORDER BY goal_lineage_id, recorded_at DESC
        """
    }

    func progressByGoal(_ rows: PostgresRows) throws -> [UUID: GoalProgressRow] {
        var out: [UUID: GoalProgressRow] = [:]
        for row in rows {
            let progress = try progress(row)
            out[progress.goalLineageID] = progress
        }
        return out
    }

    // MARK: Personal details

    static func detailsAAD(_ person: UUID, _ version: Int) -> [UInt8] {
        Array("records.person_details:\(person.lowercasedString):\(version)".utf8)
    }

    func details(_ row: PostgresRow) throws -> DetailsVersion {
        let person: UUID = try row.decode("person_id")
        let version: Int = try row.decode("version")
        let sealed = try row.decode("sealed", as: PostgresBytes.self)
        let document = try JSONDecoder().decode(DetailsDocument.self, from: Data(try cipher.open(sealed.bytes, associatedData: Self.detailsAAD(person, version))))
        return DetailsVersion(personID: person, version: version, document: document, sourceKind: try row.decode("source_kind"),
                              updatedByID: try row.decode("updated_by_id"), updatedByDisplay: try row.decode("updated_by_display"),
                              updatedAt: try row.decode("updated_at"))
    }

    public func currentDetails(person: UUID) async throws -> DetailsVersion? {
        try await db.query(Self.currentDetailsQuery(person)).first.map(details)
    }

    static func currentDetailsQuery(_ person: UUID) -> PostgresQuery {
        """
        SELECT person_id, version, sealed, source_kind, updated_by_id, updated_by_display, updated_at FROM person_details
        WHERE person_id = \(person) ORDER BY version DESC LIMIT 1
        """
    }

    public func detailsVersions(person: UUID) async throws -> [DetailsVersion] {
        try await db.query("""
            SELECT person_id, version, sealed, source_kind, updated_by_id, updated_by_display, updated_at FROM person_details
            WHERE person_id = \(person) ORDER BY version DESC
            """).map(details)
    }

    /// Stores a new version; nil if `expectedVersion` is not the latest (a concurrent change).
    public func saveDetails(person: UUID, document: DetailsDocument, expectedVersion: Int, source: EntrySource) async throws -> DetailsVersion? {
        let version = expectedVersion + 1
        let sealed = PostgresBytes(try cipher.seal(Array(try JSONEncoder().encode(document)), associatedData: Self.detailsAAD(person, version)))
        return try await db.withTransaction { session in
            let latest = try await session.query(
                "SELECT COALESCE(max(version), 0) AS v FROM person_details WHERE person_id = \(person)")[0].decode("v", as: Int.self)
            guard latest == expectedVersion else { return nil }
            do {
                let row = try await session.query("""
                    INSERT INTO person_details (person_id, version, sealed, key_id, source_kind, updated_by_id, updated_by_display)
                    VALUES (\(person), \(version), \(sealed), \(cipher.currentKeyID), \(source.kind), \(source.authorID), \(source.display))
                    RETURNING person_id, version, sealed, source_kind, updated_by_id, updated_by_display, updated_at
                    """)[0]
                return try self.details(row)
            } catch let error as PostgresError where error.isUniqueViolation {
                return nil
            }
        }
    }

    // MARK: Access log

    /// Writes one access-log row: an access or refusal (at the database's time), or
    /// `access.count` refusals counted together (at the times they were counted).
    /// Never cancelled in the server with its task (an access is logged whatever the caller does).
    public func logAccess(_ access: RefusalLog.Refusal, allowed: Bool) async throws {
        let k = access.key
        try await StatementCancellation.shielded { try await db.query("""
            INSERT INTO access_log (person_id, accessor_id, accessor_kind, organisation_id, action, part, basis, purpose, allowed,
                                    at, repeats, first_at)
            VALUES (\(k.person), \(k.accessorID), \(k.accessorKind), \(k.organisation), \(k.action), \(k.part), \(access.basis),
                    \(access.purpose), \(allowed), COALESCE(\(access.lastAt)::timestamptz, now()), \(access.count), \(access.firstAt)::timestamptz)
            """) }
    }

    public func accessLog(person: UUID, limit: Int, before: Int64?) async throws -> [AccessLogRow] {
        var query: PostgresQuery = """
            SELECT id, person_id, accessor_id, accessor_kind, organisation_id, action, part, basis, purpose, allowed, at, repeats, first_at
            FROM access_log WHERE person_id = \(person)
            """
        if let before { query.append(" AND id < \(before)") }
        query.append(" ORDER BY id DESC LIMIT \(limit)")
        return try await db.query(query).map { row in
            AccessLogRow(id: try row.decode("id"), personID: try row.decode("person_id"), accessorID: try row.decode("accessor_id"),
                         accessorKind: try row.decode("accessor_kind"), organisationID: try row.decode("organisation_id"),
                         action: try row.decode("action"), part: try row.decode("part"), basis: try row.decode("basis"),
                         purpose: try row.decode("purpose"), allowed: try row.decode("allowed"), at: try row.decode("at"),
                         repeats: try row.decode("repeats"), firstAt: try row.decode("first_at"))
        }
    }
}
