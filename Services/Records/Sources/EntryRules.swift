import Auth
import Foundation
import RPC

/// A validated entry ready to store (no I/O here).
public struct NewEntry: Sendable, Equatable {
    public var kind: String
    public var status: String
    public var effectiveStart: String?
    public var effectiveEnd: String?
    public var effectiveDate: CalendarDate
    public var codeSystem: String?
    public var code: String?
    public var codeDisplay: String?
    public var text: String?
    /// Kind-specific structured fields (kept in clear), as JSON.
    public var details: [String: JSONValue]
    public var nextRefillOn: CalendarDate?
}

/// Structured details stored as JSON.
public enum JSONValue: Sendable, Equatable, Codable {
    case string(String), number(Double), bool(Bool), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let v): try container.encode(v)
        case .number(let v): try container.encode(v)
        case .bool(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }

    public var string: String? { if case .string(let v) = self { return v } else { return nil } }
    public var number: Double? { if case .number(let v) = self { return v } else { return nil } }
    public var bool: Bool? { if case .bool(let v) = self { return v } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let v) = self { return v } else { return nil } }
}

/// Rules for what an entry may contain. Every refusal names the field.
public enum EntryRules {
    public static let maximumTextLength = 20_000
    public static let kinds = ["condition", "medication", "allergy", "encounter", "observation", "care_plan", "goal", "note",
                               "document_reference"]

    /// Statuses a new or amended entry may have, by kind.
    public static func allowedStatuses(kind: String) -> Set<String> {
        switch kind {
        case "condition", "allergy": return ["active", "resolved", "inactive"]
        case "medication": return ["active", "completed", "inactive"]
        case "encounter", "observation", "note", "document_reference": return ["completed", "active"]
        case "care_plan", "goal": return ["active", "completed", "inactive"]
        default: return []
        }
    }

    public static func defaultStatus(kind: String) -> String {
        switch kind {
        case "encounter", "observation", "note", "document_reference": return "completed"
        default: return "active"
        }
    }

    /// Validates the common and kind-specific parts. `today` bounds future dates.
    public static func validate(kind: String, status: String?, effectiveStart: String, effectiveEnd: String,
                                code: (system: String, code: String, display: String)?, text: String,
                                details: [String: JSONValue], today: CalendarDate) throws -> NewEntry {
        guard kinds.contains(kind) else { throw RPCError.invalidArgument(field: "entry.kind", "choose a kind of entry") }
        let status = status ?? defaultStatus(kind: kind)
        guard allowedStatuses(kind: kind).contains(status) else {
            throw RPCError.invalidArgument(field: "entry.status", "is not a status a \(kind.replacingOccurrences(of: "_", with: " ")) can have")
        }
        let start = try parseEffective(effectiveStart, field: "entry.effective_start", required: true)!
        let end = try parseEffective(effectiveEnd, field: "entry.effective_end", required: false)
        if let end, end.date < start.date {
            throw RPCError.invalidArgument(field: "entry.effective_end", "must not be before effective_start")
        }
        guard start.date <= today.adding(days: 1) || kind == "goal" || kind == "care_plan" else {
            throw RPCError.invalidArgument(field: "entry.effective_start", "must not be in the future")
        }
        let trimmedText = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmedText.count <= maximumTextLength else {
            throw RPCError.invalidArgument(field: "entry.text", "must be at most \(maximumTextLength) characters")
        }
        guard !trimmedText.unicodeScalars.contains(where: { $0.value == 0 }) else {
            throw RPCError.invalidArgument(field: "entry.text", "must not contain NUL characters")
        }
        var codeSystem: String?, codeValue: String?, codeDisplay: String?
        if let code, !(code.system.isEmpty && code.code.isEmpty && code.display.isEmpty) {
            codeSystem = code.system.isEmpty ? nil : try Validate.text(code.system, field: "entry.code.system", max: 200)
            codeValue = code.code.isEmpty ? nil : try Validate.text(code.code, field: "entry.code.code", max: 100)
            codeDisplay = code.display.isEmpty ? nil : try Validate.text(code.display, field: "entry.code.display", max: 500)
            if codeValue != nil && codeSystem == nil {
                throw RPCError.invalidArgument(field: "entry.code.system", "is required with a code")
            }
        }
        var entry = NewEntry(
            kind: kind, status: status, effectiveStart: start.text, effectiveEnd: end?.text, effectiveDate: start.date,
            codeSystem: codeSystem, code: codeValue, codeDisplay: codeDisplay, text: trimmedText.isEmpty ? nil : trimmedText,
            details: [:], nextRefillOn: nil)
        try validateDetails(&entry, details: details)
        if entry.text == nil && entry.codeDisplay == nil && entry.details.isEmpty {
            throw RPCError.invalidArgument(field: "entry.text", "an entry needs text, a coded display or details")
        }
        return entry
    }

    static func validateDetails(_ entry: inout NewEntry, details: [String: JSONValue]) throws {
        switch entry.kind {
        case "medication":
            guard let name = details["name"]?.string else { throw RPCError.invalidArgument(field: "entry.medication.name", "is required") }
            var out: [String: JSONValue] = ["name": .string(try Validate.text(name, field: "entry.medication.name", max: 200))]
            for key in ["dose", "route"] {
                if let value = details[key]?.string, !value.isEmpty {
                    out[key] = .string(try Validate.text(value, field: "entry.medication.\(key)", max: 200))
                }
            }
            let dosesPerDay = details["doses_per_day"]?.number ?? 0
            let unitsPerDose = details["units_per_dose"]?.number.flatMap { $0 == 0 ? nil : $0 } ?? 1
            let quantity = details["quantity_supplied"]?.number ?? 0
            for (key, value, limit) in [("doses_per_day", dosesPerDay, 48.0), ("units_per_dose", unitsPerDose, 1000.0),
                                        ("quantity_supplied", quantity, 100_000.0)] {
                guard value.isFinite, value >= 0, value <= limit else {
                    throw RPCError.invalidArgument(field: "entry.medication.\(key)", "must be between 0 and \(Int(limit))")
                }
            }
            out["doses_per_day"] = .number(dosesPerDay)
            out["units_per_dose"] = .number(unitsPerDose)
            out["quantity_supplied"] = .number(quantity)
            if let supplied = details["supplied_on"]?.string, !supplied.isEmpty {
                let date = try Validate.calendarDate(supplied, field: "entry.medication.supplied_on")
                out["supplied_on"] = .string(date.description)
                if entry.status == "active",
                   let next = MedicationSchedule.nextRefill(suppliedOn: date, quantity: quantity, unitsPerDose: unitsPerDose, dosesPerDay: dosesPerDay) {
                    entry.nextRefillOn = next
                }
            }
            entry.details = out
        case "observation":
            var out: [String: JSONValue] = [:]
            if let value = details["value"]?.object { out["value"] = .object(try quantity(value, field: "entry.observation.value")) }
            if let components = details["components"]?.object, !components.isEmpty {
                guard components.count <= 20 else { throw RPCError.invalidArgument(field: "entry.observation.components", "at most 20") }
                var checked: [String: JSONValue] = [:]
                for (name, value) in components {
                    let key = try Validate.text(name, field: "entry.observation.components", max: 100)
                    guard let object = value.object else { throw RPCError.invalidArgument(field: "entry.observation.components", "must be quantities") }
                    checked[key] = .object(try quantity(object, field: "entry.observation.components.\(key)"))
                }
                out["components"] = .object(checked)
            }
            guard !out.isEmpty else { throw RPCError.invalidArgument(field: "entry.observation.value", "an observation needs a value or components") }
            entry.details = out
        case "allergy":
            guard let substance = details["substance"]?.string, !substance.isEmpty else {
                throw RPCError.invalidArgument(field: "entry.allergy.substance", "is required")
            }
            var out: [String: JSONValue] = ["substance": .string(try Validate.text(substance, field: "entry.allergy.substance", max: 200))]
            if let reaction = details["reaction"]?.string, !reaction.isEmpty {
                out["reaction"] = .string(try Validate.text(reaction, field: "entry.allergy.reaction", max: 500))
            }
            if let severity = details["severity"]?.string, !severity.isEmpty {
                guard ["mild", "moderate", "severe"].contains(severity) else {
                    throw RPCError.invalidArgument(field: "entry.allergy.severity", "must be mild, moderate or severe")
                }
                out["severity"] = .string(severity)
            }
            entry.details = out
        case "goal":
            guard let target = details["target"]?.string, !target.isEmpty else {
                throw RPCError.invalidArgument(field: "entry.goal.target", "is required")
            }
            var out: [String: JSONValue] = ["target": .string(try Validate.text(target, field: "entry.goal.target", max: 500))]
            if let due = details["due_on"]?.string, !due.isEmpty {
                out["due_on"] = .string(try Validate.calendarDate(due, field: "entry.goal.due_on").description)
            }
            out["agreed_with_coordinator"] = .bool(details["agreed_with_coordinator"]?.bool ?? false)
            entry.details = out
        default:
            guard details.isEmpty else {
                throw RPCError.invalidArgument(field: "entry.details", "a \(entry.kind.replacingOccurrences(of: "_", with: " ")) has no structured details")
            }
        }
    }

    static func quantity(_ object: [String: JSONValue], field: String) throws -> [String: JSONValue] {
        guard let value = object["value"]?.number, value.isFinite, abs(value) < 1e9 else {
            throw RPCError.invalidArgument(field: field, "needs a finite numeric value")
        }
        let unit = try Validate.text(object["unit"]?.string ?? "", field: field + ".unit", max: 50, allowEmpty: true)
        return ["value": .number(value), "unit": .string(unit)]
    }

    /// A date (YYYY-MM-DD) or an RFC 3339 date-time.
    static func parseEffective(_ text: String, field: String, required: Bool) throws -> (text: String, date: CalendarDate)? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty {
            if required { throw RPCError.invalidArgument(field: field, "is required (a date like 2026-11-26 or a date-time)") }
            return nil
        }
        if trimmed.count == 10 {
            let date = try Validate.calendarDate(trimmed, field: field)
            return (date.description, date)
        }
        guard let instant = Timestamp.parse(trimmed) else {
            throw RPCError.invalidArgument(field: field, "must be a date like 2026-11-26 or an RFC 3339 date-time")
        }
        let date = CalendarDate(instant)
        guard (1900...2200).contains(date.year) else { throw RPCError.invalidArgument(field: field, "is out of range") }
        return (Timestamp.format(instant), date)
    }

    // Who may amend or mark an entry in error: its author, or (for entries from an
    // organisation) anyone acting for that organisation with write access; never someone
    // else's self-entered entry, never a non-current version.

    /// Only an entry's current version can be amended or marked in error.
    public static func isRevisable(status: String) -> Bool {
        status != "superseded" && status != "entered_in_error"
    }

    /// Whether `principal` wrote the entry, or (for what a professional or provider system
    /// recorded) belongs to the organisation it was recorded for.
    public static func isAuthor(sourceKind: String, authorID: UUID, sourceOrganisation: UUID?, principal: Principal) -> Bool {
        if principal.subjectID == authorID { return true }
        if sourceKind != "self", let organisation = sourceOrganisation, principal.organisationID == organisation,
           principal.kind == .professional || principal.kind == .providerSystem {
            return true
        }
        return false
    }
}
