import Auth
import Contracts
import Foundation
import RPC

/// The record summary written straight to protobuf bytes (`ProtoWriter`) from the rows read
/// for it, instead of building a `Wholecare_Records_V1_Summary` only to encode it: for a
/// person with hundreds of entries the messages cost more to build and encode than the
/// rows cost to read. The bytes decode to exactly what `RecordsProto.entry` and friends
/// build (`SummaryWireTests` compares them over every kind of entry).
enum RecordsWire {
    /// `RecordsProto.entry(_:progress:viewer:)`'s message, written to `w`.
    static func entry(_ e: RecordEntry, progress: GoalProgressRow? = nil, viewer: Principal?, to w: inout ProtoWriter) {
        w.uuid(1, e.id)
        w.uuid(2, e.personID)
        w.enumeration(3, RecordsProto.kind(e.kind).rawValue)
        w.enumeration(4, RecordsProto.status(e.status).rawValue)
        w.message(5) { source(kind: e.sourceKind, organisation: e.sourceOrganisationID, author: e.authorID, display: e.authorDisplay,
                              viewer: viewer, to: &$0) }
        w.string(6, e.effectiveStart ?? e.effectiveDate.description)
        w.string(7, e.effectiveEnd ?? "")
        if e.codeSystem != nil || e.code != nil || e.codeDisplay != nil {
            w.message(8) { code in
                code.string(1, e.codeSystem ?? "")
                code.string(2, e.code ?? "")
                code.string(3, e.codeDisplay ?? "")
            }
        }
        w.string(9, e.text ?? "")
        w.uuid(10, e.lineageID)
        w.int32(11, Int32(e.version))
        w.uuid(12, e.supersedesID)
        w.uuid(13, e.supersededByID)
        w.string(14, e.errorReason ?? "")
        w.string(15, Timestamp.format(e.recordedAt))
        let details = e.details
        switch e.kind {
        case "observation":
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
        case "medication":
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
                m.string(8, e.nextRefillOn?.description ?? "")
                m.int32(9, Int32(MedicationSchedule.daysOfSupply(quantity: quantity, unitsPerDose: unitsPerDose, dosesPerDay: dosesPerDay) ?? 0))
            }
        case "allergy":
            w.message(22) { a in
                a.string(1, details["substance"]?.string ?? "")
                a.string(2, details["reaction"]?.string ?? "")
                a.string(3, details["severity"]?.string ?? "")
            }
        case "goal":
            w.message(23) { g in
                g.string(1, details["target"]?.string ?? "")
                g.string(2, details["due_on"]?.string ?? "")
                if let progress { g.message(3) { goalProgress(progress, goal: e.id, viewer: viewer, to: &$0) } }
                g.bool(4, details["agreed_with_coordinator"]?.bool ?? false)
            }
        default:
            break
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
        w.string(3, Timestamp.format(p.recordedAt))
        w.message(4) { source(kind: p.sourceKind, organisation: nil, author: p.authorID, display: p.authorDisplay, viewer: viewer, to: &$0) }
        w.uint32(5, UInt32(p.percent))
        w.string(6, p.note ?? "")
    }

    /// The whole summary (fields in number order).
    static func summary(person: UUID, data: RecordsStore.SummaryData, careTeam: [Wholecare_Records_V1_CareTeamMember],
                        viewer: Principal) throws -> [UInt8] {
        var w = ProtoWriter(capacity: 512 + 700 * (data.active.count + data.latest.count))
        w.uuid(1, person)
        try w.message(2, RecordsProto.details(data.details, person: person, viewer: viewer))
        let active = data.active
        let noRefill = CalendarDate(year: 2200, month: 1, day: 1)!
        for e in active where e.kind == "condition" { w.message(3) { entry(e, viewer: viewer, to: &$0) } }
        for e in active.filter({ $0.kind == "medication" }).sorted(by: { ($0.nextRefillOn ?? noRefill) < ($1.nextRefillOn ?? noRefill) }) {
            w.message(4) { entry(e, viewer: viewer, to: &$0) }
        }
        for e in active where e.kind == "allergy" { w.message(5) { entry(e, viewer: viewer, to: &$0) } }
        for member in careTeam { try w.message(6, member) }
        for e in active where e.kind == "goal" {
            w.message(7) { entry(e, progress: data.progress[e.lineageID], viewer: viewer, to: &$0) }
        }
        for e in data.latest { w.message(8) { entry(e, viewer: viewer, to: &$0) } }
        return w.bytes
    }
}
