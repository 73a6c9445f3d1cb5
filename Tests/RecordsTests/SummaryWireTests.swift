import Auth
import Contracts
import Foundation
import Postgres
@testable import RecordsService
import RPC
import Testing
import TestSupport
import WholeCareCrypto

/// The summary is written straight to protobuf bytes from its rows (`RecordsWire`); every
/// entry in it must decode to exactly the message `RecordsProto.entry` builds from the same
/// row for the other record RPCs, and the sections must hold the entries the summary
/// promises, in its order.
@Suite("Record summary written as bytes")
struct SummaryWireTests {
    static let person = UUID(uuidString: "7A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D")!
    static let author = UUID(uuidString: "11111111-2222-4333-8444-555555555555")!
    static let organisation = UUID(uuidString: "0D5F3A10-5C6E-4D8E-9A0B-1C2D3E4F5A6B")!

    static func principal(_ subject: UUID, _ kind: Principal.Kind) -> Principal {
        Principal(subject: subject.lowercasedString, kind: kind, roles: [], organisationID: kind == .professional ? organisation : nil,
                  scopes: [], tokenID: "t", expiresAt: Date().addingTimeInterval(600), token: "token")
    }

    static func entry(_ kind: String, status: String = "active", source: String = "professional", number: Int,
                      details: [String: JSONValue] = [:], refill: CalendarDate? = nil) -> RecordEntry {
        let id = UUID()
        let odd = number % 2 == 1
        return RecordEntry(
            id: id, lineageID: odd ? id : UUID(), version: number, personID: person, kind: kind, status: status, sourceKind: source,
            sourceOrganisationID: source == "self" ? nil : organisation, authorID: source == "self" && odd ? person : author,
            authorDisplay: odd ? "Dr Priya Shah, Riverside Surgery" : "Sam \"Ó\" Neill 🐝",
            effectiveStart: odd ? nil : "2026-11-02T09:30:00Z", effectiveEnd: number % 3 == 0 ? "2026-11-20" : nil,
            effectiveDate: CalendarDate(year: 2026, month: 11, day: 1 + number % 28)!,
            codeSystem: number % 4 == 0 ? nil : "http://snomed.info/sct", code: number % 4 == 1 ? nil : "38341003",
            codeDisplay: number % 5 == 0 ? "" : (number % 4 == 0 ? nil : "Hypertension"),
            text: odd ? "Line one\nline \"two\" — é" : nil, details: details, nextRefillOn: refill,
            supersedesID: number % 3 == 1 ? UUID() : nil, supersededByID: number % 5 == 1 ? UUID() : nil,
            errorReason: status == "entered_in_error" ? "wrong person" : nil,
            recordedAt: Date(timeIntervalSince1970: 1_795_000_000 + Double(number) * 3_601.123456))
    }

    /// One of every kind, source and shape of details, with empty and missing values.
    static func entries() -> [RecordEntry] {
        var out: [RecordEntry] = []
        var n = 0
        func next() -> Int { n += 1; return n }
        for kind in ["condition", "encounter", "care_plan", "note", "document_reference", "unknown_kind"] {
            for source in ["professional", "organisation", "self", "other"] {
                out.append(entry(kind, status: ["active", "resolved", "entered_in_error", "odd"][n % 4], source: source, number: next()))
            }
        }
        out.append(entry("medication", number: next(), details: [
            "name": .string("Metformin"), "dose": .string("500 mg"), "route": .string("oral"), "doses_per_day": .number(2),
            "units_per_dose": .number(0.5), "quantity_supplied": .number(56), "supplied_on": .string("2026-11-01")],
            refill: CalendarDate(year: 2026, month: 11, day: 29)))
        out.append(entry("medication", number: next(), details: ["name": .string("Aspirin"), "doses_per_day": .number(0)]))
        out.append(entry("medication", number: next(), details: [:], refill: CalendarDate(year: 2026, month: 12, day: 2)))
        out.append(entry("observation", number: next(), details: [
            "value": .object(["value": .number(72.25), "unit": .string("kg")]),
            "components": .object(["systolic": .object(["value": .number(128), "unit": .string("mm[Hg]")]),
                                   "diastolic": .object(["value": .number(-0.0)]), "pulse": .object([:]), "bad": .string("x")])]))
        out.append(entry("observation", number: next(), details: ["value": .string("not an object")]))
        out.append(entry("observation", number: next()))
        out.append(entry("allergy", source: "self", number: next(), details: ["substance": .string("Penicillin"), "severity": .string("severe")]))
        out.append(entry("allergy", number: next()))
        out.append(entry("goal", source: "self", number: next(), details: [
            "target": .string("Walk to the shop"), "due_on": .string("2027-01-31"), "agreed_with_coordinator": .bool(true)]))
        out.append(entry("goal", number: next(), details: ["agreed_with_coordinator": .bool(false)]))
        return out
    }

    static let progress = GoalProgressRow(id: UUID(), goalLineageID: UUID(), percent: 40, note: "half way — nearly",
                                          sourceKind: "self", authorID: person, authorDisplay: "Bench Person",
                                          recordedAt: Date(timeIntervalSince1970: 1_795_100_000.25))

    /// A row shaped like `RecordsStore.entryColumns` holding `e` (its text sealed as the
    /// store seals it), read back from PostgreSQL.
    static func row(_ e: RecordEntry, cipher: FieldCipher, db: PostgresClient, null column: String? = nil,
                    binary: Bool = false) async throws -> PostgresRow {
        func unlessNull(_ name: String, _ value: String) -> String? { column == name ? nil : value }
        let text = try e.text.map { PostgresBytes(try cipher.seal($0, associatedData: RecordsStore.aad(e.id, "text"))) }
        let reason = try e.errorReason.map { PostgresBytes(try cipher.seal($0, associatedData: RecordsStore.aad(e.id, "reason"))) }
        let details = String(decoding: try JSONEncoder().encode(e.details), as: UTF8.self)
        let query: PostgresQuery = """
            SELECT \(e.id)::uuid AS id, \(e.lineageID)::uuid AS lineage_id, \(e.version)::int AS version, \(e.personID)::uuid AS person_id,
                \(unlessNull("kind", e.kind))::text AS kind, \(unlessNull("status", e.status))::text AS status,
                \(unlessNull("source_kind", e.sourceKind))::text AS source_kind,
                \(e.sourceOrganisationID)::uuid AS source_organisation_id, \(e.authorID)::uuid AS author_id,
                \(e.authorDisplay)::text AS author_display, \(e.effectiveStart)::text AS effective_start,
                \(e.effectiveEnd)::text AS effective_end, \(e.effectiveDate.description)::date::text AS effective_date,
                \(e.codeSystem)::text AS code_system, \(e.code)::text AS code, \(e.codeDisplay)::text AS code_display,
                \(text)::bytea AS text_sealed, \(details)::jsonb::text AS details, \(e.nextRefillOn?.description)::date::text AS next_refill_on,
                \(e.supersedesID)::uuid AS supersedes_id, \(e.supersededByID)::uuid AS superseded_by_id,
                \(reason)::bytea AS error_reason_sealed, \(e.recordedAt)::timestamptz AS recorded_at
            """
        // The summary reads its entries in the binary format; other reads in text.
        return try await db.query(binary ? query.binaryResults() : query)[0]
    }

    @Test("every kind of entry, read from its row in text or binary, is the message the other record RPCs send, for the person and for others")
    func entries() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 2) { db, schema in
            let cipher = try FieldCipher(keys: ["test-1": SecureRandom.bytes(32)], currentKeyID: "test-1")
            let store = RecordsStore(db: db, cipher: cipher)
            let viewers: [Principal?] = [Self.principal(Self.person, .serviceUser), Self.principal(Self.author, .professional), nil]
            for (e, binary) in Self.entries().flatMap({ e in [(e, false), (e, true)] }) {
                let row = try await Self.row(e, cipher: cipher, db: db, binary: binary)
                let stored = try store.entry(row)
                // Both formats decode to the same entry.
                #expect(stored == (try store.entry(try await Self.row(e, cipher: cipher, db: db))), "\(e.kind) binary")
                for viewer in viewers {
                    for progress in e.kind == "goal" ? [nil, Self.progress] : [nil] {
                        var writer = ProtoWriter()
                        try RecordsWire.entry(row: row, store: store, progress: progress.map { [e.lineageID: $0] } ?? [:], viewer: viewer,
                                              to: &writer)
                        let written = try Wholecare_Records_V1_Entry(serializedBytes: writer.bytes)
                        let expected = RecordsProto.entry(stored, progress: progress, viewer: viewer)
                        #expect(written == expected, "\(e.kind) \(e.sourceKind) for \(viewer?.kind.rawValue ?? "no one")")
                        // Apart from map order, the bytes are the generated encoder's too.
                        if e.kind != "observation" { #expect(writer.bytes == (try expected.serializedBytes() as [UInt8])) }
                    }
                }
            }
        }
    }

    @Test("a NULL kind, status or source is refused as a decoding error naming the column, and an unknown kind is written as unspecified")
    func nameColumns() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 2) { db, schema in
            let cipher = try FieldCipher(keys: ["test-1": SecureRandom.bytes(32)], currentKeyID: "test-1")
            let store = RecordsStore(db: db, cipher: cipher)
            let e = Self.entries()[0]
            for column in ["kind", "status", "source_kind"] {
                let row = try await Self.row(e, cipher: cipher, db: db, null: column)
                var writer = ProtoWriter()
                let error = #expect(throws: PostgresError.self) {
                    try RecordsWire.entry(row: row, store: store, progress: [:], viewer: nil, to: &writer)
                }
                #expect(error?.kind == .decoding && error?.column == column)
            }
            var unknown = e
            unknown.kind = "prescription"
            var writer = ProtoWriter()
            try RecordsWire.entry(row: try await Self.row(unknown, cipher: cipher, db: db), store: store, progress: [:], viewer: nil, to: &writer)
            let written = try Wholecare_Records_V1_Entry(serializedBytes: writer.bytes)
            #expect(written.kind == .unspecified && written.status == .active && written.id == e.id.lowercasedString)
        }
    }

    @Test("sealed fields stay bound to the same associated data (existing rows must still open)")
    func associatedData() {
        for _ in 0..<100 {
            let id = UUID()
            #expect(RecordsStore.aad(id, "text") == Array("records.entries:\(id.uuidString.lowercased()):text".utf8))
            #expect(RecordsStore.withAAD(id, "text") { Array($0) } == RecordsStore.aad(id, "text"))
            #expect(RecordsStore.withAAD(id, "reason") { Array($0) } == RecordsStore.aad(id, "reason"))
            var writer = ProtoWriter()
            writer.uuid(1, id)
            #expect(writer.bytes == [0x0A, 36] + Array(id.uuidString.lowercased().utf8))
        }
    }

    @Test("a stored person's summary: conditions, medications by next refill, allergies, care team, goals with progress, latest")
    func summary() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 2) { db, schema in
            try await Migrator(schema: schema, migrations: try RecordsServiceApp.migrations()).migrate(using: db)
            let cipher = try FieldCipher(keys: ["test-1": SecureRandom.bytes(32)], currentKeyID: "test-1")
            let store = RecordsStore(db: db, cipher: cipher)
            let today = CalendarDate(Date())
            func add(_ input: Wholecare_Records_V1_EntryInput, self entered: Bool = false) async throws -> RecordEntry {
                let source = entered ? EntrySource(kind: "self", organisationID: nil, authorID: Self.person, display: "Bench Person")
                    : EntrySource(kind: "professional", organisationID: Self.organisation, authorID: Self.author, display: "Dr Priya Shah, Riverside Surgery")
                return try await store.addEntry(person: Self.person, entry: try RecordsProto.newEntry(input, today: today), source: source)
            }
            var day = 0
            func input(_ kind: Wholecare_Records_V1_EntryKind, _ text: String) -> Wholecare_Records_V1_EntryInput {
                var i = Wholecare_Records_V1_EntryInput()
                day += 1
                i.effectiveStart = "2026-10-\(String(format: "%02d", day))"
                i.kind = kind
                i.text = text
                i.code.system = "http://snomed.info/sct"
                i.code.code = "38341003"
                return i
            }
            _ = try await add(input(.condition, "Hypertension"))
            _ = try await add(input(.note, "Seen at home"), self: true)
            for (name, supplied) in [("Metformin", 56.0), ("Aspirin", 0), ("Ramipril", 28)] {
                var m = input(.medication, name)
                m.medication.name = name
                m.medication.dosesPerDay = 2
                m.medication.quantitySupplied = supplied
                m.medication.suppliedOn = today.description
                _ = try await add(m)
            }
            var allergy = input(.allergy, "Rash")
            allergy.allergy.substance = "Penicillin"
            _ = try await add(allergy, self: true)
            var observation = input(.observation, "BP")
            observation.observation.components = ["systolic": .with { $0.value = 128; $0.unit = "mm[Hg]" }, "diastolic": .with { $0.value = 82 }]
            _ = try await add(observation)
            var goal = input(.goal, "Walk")
            goal.goal.target = "Walk to the shop"
            let walking = try await add(goal, self: true)
            var cooking = input(.goal, "Cook")
            cooking.goal.target = "Cook a meal"
            _ = try await add(cooking)
            _ = try await store.addGoalProgress(goalLineage: walking.lineageID, person: Self.person, percent: 40, note: "half way",
                                               source: EntrySource(kind: "self", organisationID: nil, authorID: Self.person, display: "Bench Person"))

            var member = Wholecare_Records_V1_CareTeamMember()
            member.name = "Sam O'Neill"
            member.role = "care coordinator"
            for viewer in [Self.principal(Self.person, .serviceUser), Self.principal(Self.author, .professional)] {
                let written = try Wholecare_Records_V1_Summary(serializedBytes: try RecordsWire.summary(
                    person: Self.person, rows: try await store.summaryRows(person: Self.person, latest: 10), careTeam: [member],
                    store: store, viewer: viewer))
                // The same summary from the decoded rows, section by section.
                let data = try await store.summary(person: Self.person, latest: 10)
                let noRefill = CalendarDate(year: 2200, month: 1, day: 1)!
                var expected = Wholecare_Records_V1_Summary()
                expected.personID = Self.person.lowercasedString
                expected.details = RecordsProto.details(data.details, person: Self.person, viewer: viewer)
                expected.activeConditions = data.active.filter { $0.kind == "condition" }.map { RecordsProto.entry($0, viewer: viewer) }
                expected.currentMedications = data.active.filter { $0.kind == "medication" }
                    .sorted { ($0.nextRefillOn ?? noRefill) < ($1.nextRefillOn ?? noRefill) }.map { RecordsProto.entry($0, viewer: viewer) }
                expected.allergies = data.active.filter { $0.kind == "allergy" }.map { RecordsProto.entry($0, viewer: viewer) }
                expected.careTeam = [member]
                expected.goals = data.active.filter { $0.kind == "goal" }.map {
                    RecordsProto.entry($0, progress: data.progress[$0.lineageID], viewer: viewer)
                }
                expected.latestEntries = data.latest.map { RecordsProto.entry($0, viewer: viewer) }
                #expect(written == expected)
                #expect(written.currentMedications.map(\.medication.name) == ["Ramipril", "Metformin", "Aspirin"])  // 14, 28 days; none supplied
                #expect(written.goals.map(\.goal.latestProgress.percent).sorted() == [0, 40])
                #expect(written.latestEntries.count == 9)  // everything, newest first
                #expect(written.latestEntries.allSatisfy { !$0.goal.hasLatestProgress })
                #expect(written.allergies.first?.source.display == (viewer.kind == .serviceUser ? "Added by you" : "Added by Bench Person (self-entered)"))
            }
        }
    }
}
