import Auth
import Contracts
import Foundation
import Postgres
import RPC

/// The record summary written straight to protobuf bytes (`ProtoWriter`) from the rows read
/// for it, instead of building a `Wholecare_Records_V1_Summary` only to encode it: for a
/// person with hundreds of entries the messages cost more to build and encode than the
/// rows cost to read. The bytes decode to exactly what `RecordsProto.entry` and friends
/// build (`SummaryWireTests` compares them over every kind of entry).
enum RecordsWire {
    /// `RecordsProto.entry(store.entry(row), progress:viewer:)`'s message, written to `w`
    /// straight from a row of `RecordsStore.entryColumns`: text cells are copied as they are
    /// (names and codes, and ids in a text result, are already the text the contract
    /// carries; ids in a binary result are written as that text), with no `RecordEntry`
    /// and no `String` made for them.
    static func entry(row: PostgresRow, store: RecordsStore, progress: [UUID: GoalProgressRow], viewer: Principal?,
                      to w: inout ProtoWriter) throws {
        try checkEntryColumns(row.columns)
        try row.withCells { cells in try entry(cells: cells, store: store, progress: progress, viewer: viewer, to: &w) }
    }

    /// The rows of one result share their columns: checked once for all of them.
    static func checkEntryColumns(_ columns: [String]) throws {
        assert(columns.starts(with: ["id", "lineage_id", "version", "person_id", "kind", "status", "source_kind",
                                     "source_organisation_id", "author_id", "author_display", "effective_start",
                                     "effective_end", "effective_date", "code_system", "code", "code_display", "text_sealed",
                                     "details", "next_refill_on", "supersedes_id", "superseded_by_id",
                                     "error_reason_sealed", "recorded_at"]))
        guard columns.count >= 23, columns[0] == "id", columns[16] == "text_sealed", columns[22] == "recorded_at" else {
            throw PostgresError(kind: .decoding, safeMessage: "an entry row does not have the entry columns in order")
        }
    }

    /// A name column (never NULL in the schema; NULL is refused as decoding a `String` would).
    private static func name(_ row: PostgresCells, _ column: Int, _ label: String) throws -> UnsafeBufferPointer<UInt8> {
        guard let cell = try row.utf8(column) else {
            throw PostgresError(kind: .decoding, safeMessage: "column \"\(label)\" is NULL", column: label)
        }
        return cell
    }

    /// An entry row's kind.
    private static func kind(_ row: PostgresCells) throws -> Wholecare_Records_V1_EntryKind {
        RecordsProto.named(try name(row, 4, "kind"), in: RecordsProto.kindBytes)
    }

    private static func entry(cells row: PostgresCells, store: RecordsStore, progress: [UUID: GoalProgressRow], viewer: Principal?,
                              to w: inout ProtoWriter) throws {
        func text(_ column: Int, _ field: Int, to w: inout ProtoWriter) throws {
            if let cell = try row.utf8(column) { w.string(field, utf8: cell) }
        }
        func isNull(_ column: Int) throws -> Bool { try row.utf8(column) == nil }
        // An id column: its text copied as it is, or (a result in the binary format) its
        // sixteen bytes written as the same lower-case text.
        func uuid(_ column: Int, _ field: Int, to w: inout ProtoWriter) throws {
            if row.isBinary(column) { w.uuid(field, try row.uuid(column)) } else { try text(column, field, to: &w) }
        }
        let id: UUID = try row.decode(0)
        // A sealed text column opened (with the entry's id and the column as associated
        // data, as `RecordsStore.entry` opens it): from the cell's own bytes in a binary result.
        func sealed(_ column: Int, column name: StaticString, field: Int, to w: inout ProtoWriter) throws {
            let plaintext: [UInt8]
            if row.isBinary(column) {
                guard let cell = try row.utf8(column) else { return }
                plaintext = try RecordsStore.withAAD(id, name) { try store.cipher.open(sealed: cell, associatedData: $0) }
            } else {
                guard let cell = try row.decode(column, as: PostgresBytes?.self) else { return }
                plaintext = try cell.bytes.withUnsafeBufferPointer { cell in
                    try RecordsStore.withAAD(id, name) { try store.cipher.open(sealed: cell, associatedData: $0) }
                }
            }
            w.string(field, decoding: plaintext)
        }
        let kind = try Self.kind(row)
        let sourceKind = RecordsProto.named(try name(row, 6, "source_kind"), in: RecordsProto.sourceBytes)
        try uuid(0, 1, to: &w)
        try uuid(3, 2, to: &w)
        w.enumeration(3, kind.rawValue)
        w.enumeration(4, RecordsProto.named(try name(row, 5, "status"), in: RecordsProto.statusBytes).rawValue)
        try w.message(5) { source in
            source.enumeration(1, sourceKind.rawValue)
            try uuid(7, 2, to: &source)
            try uuid(8, 3, to: &source)
            if sourceKind == .self_ {
                let author: UUID = try row.decode(8)
                source.string(4, viewer?.subjectID == author ? "Added by you" : "Added by \(try row.decode(9, as: String.self)) (self-entered)")
            } else {
                try text(9, 4, to: &source)
            }
        }
        if try isNull(10) {
            // No start written: the contract shows the date the entry is filed under.
            guard let effectiveDate = CalendarDate(try row.decode(12, as: String.self)) else {
                throw PostgresError(kind: .decoding, safeMessage: "column \"effective_date\" could not be read as a date", column: "effective_date")
            }
            w.string(6, effectiveDate.description)
        } else {
            try text(10, 6, to: &w)
        }
        try text(11, 7, to: &w)
        if try !isNull(13) || !isNull(14) || !isNull(15) {
            try w.message(8) { code in
                try text(13, 1, to: &code)
                try text(14, 2, to: &code)
                try text(15, 3, to: &code)
            }
        }
        try sealed(16, column: "text", field: 9, to: &w)
        try uuid(1, 10, to: &w)
        w.int32(11, Int32(try row.decode(2, as: Int.self)))
        try uuid(19, 12, to: &w)
        try uuid(20, 13, to: &w)
        try sealed(21, column: "reason", field: 14, to: &w)
        w.timestamp(15, try row.decode(22, as: Date.self))
        switch kind {
        case .observation, .medication, .allergy, .goal: break
        default: return
        }
        guard let detailsText = try row.utf8(17) else {
            throw PostgresError(kind: .decoding, safeMessage: "column \"details\" is NULL", column: "details")
        }
        let details = JSONValue.parseMembers(utf8: detailsText) ?? .empty
        switch kind {
        case .observation:
            w.message(20) { o in
                if let value = details["value"]?.object { o.message(1) { quantity(value, to: &$0) } }
                if let components = details["components"]?.object {
                    // Map entries, in key order (any order decodes to the same map).
                    for (key, value) in components.sorted(by: { $0.key < $1.key }) {
                        guard let quantity = value.object else { continue }
                        o.message(2) { entry in
                            entry.string(1, key)
                            entry.message(2) { Self.quantity(quantity, to: &$0) }
                        }
                    }
                }
            }
        case .medication:
            let nextRefill = try row.decode(18, as: String?.self).flatMap(CalendarDate.init)
            w.message(21) { m in
                let dosesPerDay = details["doses_per_day"]?.number ?? 0, unitsPerDose = details["units_per_dose"]?.number ?? 1
                let quantity = details["quantity_supplied"]?.number ?? 0
                m.string(1, details["name"]?.string ?? "")
                m.string(2, details["dose"]?.string ?? "")
                m.string(3, details["route"]?.string ?? "")
                m.double(4, dosesPerDay)
                m.double(5, unitsPerDose)
                m.double(6, quantity)
                m.string(7, details["supplied_on"]?.string ?? "")
                m.string(8, nextRefill?.description ?? "")
                m.int32(9, Int32(MedicationSchedule.daysOfSupply(quantity: quantity, unitsPerDose: unitsPerDose, dosesPerDay: dosesPerDay) ?? 0))
            }
        case .allergy:
            w.message(22) { a in
                a.string(1, details["substance"]?.string ?? "")
                a.string(2, details["reaction"]?.string ?? "")
                a.string(3, details["severity"]?.string ?? "")
            }
        default:
            let lineage: UUID = try row.decode(1)
            w.message(23) { g in
                g.string(1, details["target"]?.string ?? "")
                g.string(2, details["due_on"]?.string ?? "")
                if let progress = progress[lineage] { g.message(3) { goalProgress(progress, goal: id, viewer: viewer, to: &$0) } }
                g.bool(4, details["agreed_with_coordinator"]?.bool ?? false)
            }
        }
    }

    static func quantity(_ object: [String: JSONValue], to w: inout ProtoWriter) {
        w.double(1, object["value"]?.number ?? 0)
        w.string(2, object["unit"]?.string ?? "")
    }

    /// `RecordsProto.source`: self-entered content is always labelled as such.
    static func source(kind: String, organisation: UUID?, author: UUID, display: String, viewer: Principal?, to w: inout ProtoWriter) {
        w.enumeration(1, RecordsProto.sourceKind(kind).rawValue)
        w.uuid(2, organisation)
        w.uuid(3, author)
        if kind == "self" {
            w.string(4, viewer?.subjectID == author ? "Added by you" : "Added by \(display) (self-entered)")
        } else {
            w.string(4, display)
        }
    }

    static func goalProgress(_ p: GoalProgressRow, goal: UUID, viewer: Principal?, to w: inout ProtoWriter) {
        w.uuid(1, p.id)
        w.uuid(2, goal)
        w.timestamp(3, p.recordedAt)
        w.message(4) { source(kind: p.sourceKind, organisation: nil, author: p.authorID, display: p.authorDisplay, viewer: viewer, to: &$0) }
        w.uint32(5, UInt32(p.percent))
        w.string(6, p.note ?? "")
    }

    /// The whole summary (fields in number order) from the rows `RecordsStore.summaryRows` read;
    /// the care team from those rows when they hold it, else `careTeam` (asked of identity).
    static func summary(person: UUID, rows: RecordsStore.SummaryRows, careTeam: [Wholecare_Records_V1_CareTeamMember],
                        store: RecordsStore, viewer: Principal) throws -> [UInt8] {
        var w = ProtoWriter(capacity: 512 + 700 * (rows.active.count + rows.latest.count))
        w.uuid(1, person)
        try w.message(2, RecordsProto.details(rows.details, person: person, viewer: viewer))
        try checkEntryColumns(rows.active.columns)
        try checkEntryColumns(rows.latest.columns)
        let kinds = try rows.active.map { row in try row.withCells { try kind($0) } }
        // Only the goals section shows each goal's latest progress.
        func write(_ field: Int, _ row: PostgresRow) throws {
            try w.message(field) { out in
                try row.withCells { try entry(cells: $0, store: store, progress: field == 7 ? rows.progress : [:], viewer: viewer, to: &out) }
            }
        }
        for (row, kind) in zip(rows.active, kinds) where kind == .condition { try write(3, row) }
        // Medications by next refill (none last), as `RecordsProto` orders them.
        let noRefill = CalendarDate(year: 2200, month: 1, day: 1)!
        let medications = try zip(rows.active, kinds).filter { $0.1 == .medication }.map { row, _ in
            (row, try row.decode(at: 18, as: String?.self).flatMap(CalendarDate.init) ?? noRefill)
        }
        for (row, _) in medications.sorted(by: { $0.1 < $1.1 }) { try write(4, row) }
        for (row, kind) in zip(rows.active, kinds) where kind == .allergy { try write(5, row) }
        if let team = rows.careTeam {
            // Columns of `RecordsStore.careTeamQuery`, written as `careTeam(person:)` builds them.
            for row in team {
                try row.withCells { cells in
                    try w.message(6) { m in
                        m.string(1, utf8: try name(cells, 0, "professional_id"))
                        m.string(2, utf8: try name(cells, 1, "professional_name"))
                        let role = try name(cells, 2, "role")
                        m.string(3, RecordsProto.careTeamRole(coordinator: role.elementsEqual("care_coordinator".utf8)))
                        m.string(4, utf8: try name(cells, 3, "organisation_id"))
                    }
                }
            }
        }
        for member in careTeam { try w.message(6, member) }
        for (row, kind) in zip(rows.active, kinds) where kind == .goal { try write(7, row) }
        for row in rows.latest { try write(8, row) }
        return w.bytes
    }
}
