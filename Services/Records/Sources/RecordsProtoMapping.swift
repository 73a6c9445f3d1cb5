import Auth
import Contracts
import Foundation
import RPC
import SwiftProtobuf

/// Translation between the records contract and the domain types.
enum RecordsProto {
    /// How the contract names a care-team role (`CareTeamMember.role`).
    static func careTeamRole(coordinator: Bool) -> String { coordinator ? "care coordinator" : "care team member" }

    static let kindNames: [Wholecare_Records_V1_EntryKind: String] = [
        .condition: "condition", .medication: "medication", .allergy: "allergy", .encounter: "encounter",
        .observation: "observation", .carePlan: "care_plan", .goal: "goal", .note: "note", .documentReference: "document_reference",
    ]
    static let statusNames: [Wholecare_Records_V1_EntryStatus: String] = [
        .active: "active", .resolved: "resolved", .inactive: "inactive", .completed: "completed",
        .superseded: "superseded", .enteredInError: "entered_in_error",
    ]
    static let sourceNames: [Wholecare_Records_V1_SourceKind: String] = [.professional: "professional", .organisation: "organisation", .self_: "self"]

    static let kindsByName = Dictionary(uniqueKeysWithValues: kindNames.map { ($0.value, $0.key) })
    static let statusesByName = Dictionary(uniqueKeysWithValues: statusNames.map { ($0.value, $0.key) })
    static let sourcesByName = Dictionary(uniqueKeysWithValues: sourceNames.map { ($0.value, $0.key) })

    static func kind(_ name: String) -> Wholecare_Records_V1_EntryKind { kindsByName[name] ?? .unspecified }
    static func status(_ name: String) -> Wholecare_Records_V1_EntryStatus { statusesByName[name] ?? .unspecified }
    static func sourceKind(_ name: String) -> Wholecare_Records_V1_SourceKind { sourcesByName[name] ?? .unspecified }

    /// The same lookups from a cell's UTF-8 bytes, with no `String` made and nothing
    /// hashed (a summary looks up three names per entry): a few names, compared in turn.
    static let kindBytes = kindNames.map { (name: Array($0.value.utf8), value: $0.key) }
    static let statusBytes = statusNames.map { (name: Array($0.value.utf8), value: $0.key) }
    static let sourceBytes = sourceNames.map { (name: Array($0.value.utf8), value: $0.key) }

    static func named<E: SwiftProtobuf.Enum>(_ bytes: UnsafeBufferPointer<UInt8>, in table: [(name: [UInt8], value: E)]) -> E {
        for entry in table where entry.name.count == bytes.count && entry.name.elementsEqual(bytes) { return entry.value }
        return E()
    }

    /// Validates an `EntryInput` into a `NewEntry`.
    static func newEntry(_ input: Wholecare_Records_V1_EntryInput, today: CalendarDate) throws -> NewEntry {
        guard let kind = kindNames[input.kind] else { throw RPCError.invalidArgument(field: "entry.kind", "choose a kind of entry") }
        var status: String?
        if input.status != .unspecified {
            guard let name = statusNames[input.status], name != "superseded", name != "entered_in_error" else {
                throw RPCError.invalidArgument(field: "entry.status", "cannot be set directly to superseded or entered-in-error")
            }
            status = name
        }
        var details: [String: JSONValue] = [:]
        switch input.details {
        case .medication(let m)?:
            guard kind == "medication" else { throw RPCError.invalidArgument(field: "entry.medication", "only medication entries have medication details") }
            details = ["name": .string(m.name), "dose": .string(m.dose), "route": .string(m.route), "doses_per_day": .number(m.dosesPerDay),
                       "units_per_dose": .number(m.unitsPerDose), "quantity_supplied": .number(m.quantitySupplied), "supplied_on": .string(m.suppliedOn)]
        case .observation(let o)?:
            guard kind == "observation" else { throw RPCError.invalidArgument(field: "entry.observation", "only observations have values") }
            if o.hasValue { details["value"] = .object(["value": .number(o.value.value), "unit": .string(o.value.unit)]) }
            if !o.components.isEmpty {
                details["components"] = .object(o.components.mapValues { .object(["value": .number($0.value), "unit": .string($0.unit)]) })
            }
        case .allergy(let a)?:
            guard kind == "allergy" else { throw RPCError.invalidArgument(field: "entry.allergy", "only allergy entries have allergy details") }
            details = ["substance": .string(a.substance), "reaction": .string(a.reaction), "severity": .string(a.severity)]
        case .goal(let g)?:
            guard kind == "goal" else { throw RPCError.invalidArgument(field: "entry.goal", "only goal entries have goal details") }
            details = ["target": .string(g.target), "due_on": .string(g.dueOn), "agreed_with_coordinator": .bool(g.agreedWithCoordinator)]
        case nil:
            if ["medication", "allergy", "goal"].contains(kind) {
                throw RPCError.invalidArgument(field: "entry.\(kind)", "a \(kind) entry needs its details")
            }
        }
        let code = input.hasCode ? (input.code.system, input.code.code, input.code.display) : nil
        return try EntryRules.validate(kind: kind, status: status, effectiveStart: input.effectiveStart, effectiveEnd: input.effectiveEnd,
                                       code: code, text: input.text, details: details, today: today)
    }

    static func entry(_ e: RecordEntry, progress: GoalProgressRow? = nil, viewer: Principal? = nil) -> Wholecare_Records_V1_Entry {
        var out = Wholecare_Records_V1_Entry()
        out.id = e.id.lowercasedString
        out.personID = e.personID.lowercasedString
        out.kind = kind(e.kind)
        out.status = status(e.status)
        out.source = source(kind: e.sourceKind, organisation: e.sourceOrganisationID, author: e.authorID, display: e.authorDisplay, viewer: viewer)
        out.effectiveStart = e.effectiveStart ?? e.effectiveDate.description
        out.effectiveEnd = e.effectiveEnd ?? ""
        if e.codeSystem != nil || e.code != nil || e.codeDisplay != nil {
            var code = Wholecare_Records_V1_Code()
            code.system = e.codeSystem ?? ""
            code.code = e.code ?? ""
            code.display = e.codeDisplay ?? ""
            out.code = code
        }
        out.text = e.text ?? ""
        out.lineageID = e.lineageID.lowercasedString
        out.version = Int32(e.version)
        out.supersedesID = e.supersedesID?.lowercasedString ?? ""
        out.supersededByID = e.supersededByID?.lowercasedString ?? ""
        out.enteredInErrorReason = e.errorReason ?? ""
        out.recordedAt = Timestamp.format(e.recordedAt)
        switch e.kind {
        case "medication":
            var m = Wholecare_Records_V1_MedicationDetails()
            m.name = e.details["name"]?.string ?? ""
            m.dose = e.details["dose"]?.string ?? ""
            m.route = e.details["route"]?.string ?? ""
            m.dosesPerDay = e.details["doses_per_day"]?.number ?? 0
            m.unitsPerDose = e.details["units_per_dose"]?.number ?? 1
            m.quantitySupplied = e.details["quantity_supplied"]?.number ?? 0
            m.suppliedOn = e.details["supplied_on"]?.string ?? ""
            m.nextRefillOn = e.nextRefillOn?.description ?? ""
            m.daysSupply = Int32(MedicationSchedule.daysOfSupply(quantity: m.quantitySupplied, unitsPerDose: m.unitsPerDose,
                                                                 dosesPerDay: m.dosesPerDay) ?? 0)
            out.medication = m
        case "observation":
            var o = Wholecare_Records_V1_ObservationDetails()
            if let value = e.details["value"]?.object { o.value = quantity(value) }
            if let components = e.details["components"]?.object {
                o.components = components.compactMapValues { $0.object.map(quantity) }
            }
            out.observation = o
        case "allergy":
            var a = Wholecare_Records_V1_AllergyDetails()
            a.substance = e.details["substance"]?.string ?? ""
            a.reaction = e.details["reaction"]?.string ?? ""
            a.severity = e.details["severity"]?.string ?? ""
            out.allergy = a
        case "goal":
            var g = Wholecare_Records_V1_GoalDetails()
            g.target = e.details["target"]?.string ?? ""
            g.dueOn = e.details["due_on"]?.string ?? ""
            g.agreedWithCoordinator = e.details["agreed_with_coordinator"]?.bool ?? false
            if let progress { g.latestProgress = goalProgress(progress, goal: e.id, viewer: viewer) }
            out.goal = g
        default:
            break
        }
        return out
    }

    static func quantity(_ object: [String: JSONValue]) -> Wholecare_Records_V1_Quantity {
        var q = Wholecare_Records_V1_Quantity()
        q.value = object["value"]?.number ?? 0
        q.unit = object["unit"]?.string ?? ""
        return q
    }

    /// Self-entered content is always labelled as such.
    static func source(kind: String, organisation: UUID?, author: UUID, display: String, viewer: Principal?) -> Wholecare_Records_V1_Source {
        var source = Wholecare_Records_V1_Source()
        source.kind = sourceKind(kind)
        source.organisationID = organisation?.lowercasedString ?? ""
        source.authorID = author.lowercasedString
        if kind == "self" {
            source.display = viewer?.subjectID == author ? "Added by you" : "Added by \(display) (self-entered)"
        } else {
            source.display = display
        }
        return source
    }

    static func goalProgress(_ p: GoalProgressRow, goal: UUID, viewer: Principal?) -> Wholecare_Records_V1_GoalProgress {
        var out = Wholecare_Records_V1_GoalProgress()
        out.id = p.id.lowercasedString
        out.goalEntryID = goal.lowercasedString
        out.recordedAt = Timestamp.format(p.recordedAt)
        out.source = source(kind: p.sourceKind, organisation: nil, author: p.authorID, display: p.authorDisplay, viewer: viewer)
        out.percent = UInt32(p.percent)
        out.note = p.note ?? ""
        return out
    }

    static func details(_ d: DetailsVersion?, person: UUID, viewer: Principal?) -> Wholecare_Records_V1_PersonDetails {
        var out = Wholecare_Records_V1_PersonDetails()
        out.personID = person.lowercasedString
        guard let d else { return out }
        out.preferredName = d.document.preferredName
        out.address = d.document.address
        out.postcode = d.document.postcode
        out.phone = d.document.phone
        out.email = d.document.email
        out.preferredLanguage = d.document.preferredLanguage
        out.communicationNeeds = d.document.communicationNeeds
        out.nextOfKin = d.document.nextOfKin.map { kin in
            var k = Wholecare_Records_V1_NextOfKin()
            k.name = kin.name
            k.relationship = kin.relationship
            k.phone = kin.phone
            return k
        }
        out.contactPreferences = d.document.contactPreferences
        out.version = Int32(d.version)
        out.updatedAt = Timestamp.format(d.updatedAt)
        out.updatedBy = source(kind: d.sourceKind, organisation: nil, author: d.updatedByID, display: d.updatedByDisplay, viewer: viewer)
        return out
    }

    /// Validates details input into a document.
    static func document(_ input: Wholecare_Records_V1_PersonDetails) throws -> DetailsDocument {
        var doc = DetailsDocument()
        doc.preferredName = try Validate.text(input.preferredName, field: "details.preferred_name", max: 200, allowEmpty: true)
        doc.address = try Validate.text(input.address, field: "details.address", max: 500, allowEmpty: true, multiline: true)
        doc.postcode = try Validate.text(input.postcode, field: "details.postcode", max: 16, allowEmpty: true).uppercased()
        let phone = try Validate.text(input.phone, field: "details.phone", max: 32, allowEmpty: true)
        guard phone.isEmpty || phone.allSatisfy({ $0.isNumber || " +()-".contains($0) }) else {
            throw RPCError.invalidArgument(field: "details.phone", "must contain only digits, spaces and + ( ) -")
        }
        doc.phone = phone
        doc.email = input.email.isEmpty ? "" : try Validate.email(input.email, field: "details.email")
        let language = try Validate.text(input.preferredLanguage, field: "details.preferred_language", max: 35, allowEmpty: true)
        guard language.isEmpty || language.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw RPCError.invalidArgument(field: "details.preferred_language", "must be a language tag such as en, cy or pa")
        }
        doc.preferredLanguage = language
        doc.communicationNeeds = try Validate.text(input.communicationNeeds, field: "details.communication_needs", max: 1000,
                                                   allowEmpty: true, multiline: true)
        guard input.nextOfKin.count <= 5 else { throw RPCError.invalidArgument(field: "details.next_of_kin", "at most 5 people") }
        doc.nextOfKin = try input.nextOfKin.map { kin in
            DetailsDocument.Kin(
                name: try Validate.text(kin.name, field: "details.next_of_kin.name", max: 200),
                relationship: try Validate.text(kin.relationship, field: "details.next_of_kin.relationship", max: 100, allowEmpty: true),
                phone: try Validate.text(kin.phone, field: "details.next_of_kin.phone", max: 32, allowEmpty: true))
        }
        for preference in input.contactPreferences where !["email", "sms", "letter", "in_app"].contains(preference) {
            throw RPCError.invalidArgument(field: "details.contact_preferences", "must be email, sms, letter or in_app")
        }
        doc.contactPreferences = input.contactPreferences
        return doc
    }
}
