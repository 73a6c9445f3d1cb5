import Foundation
import RPC

/// Builds a FHIR R4 `Bundle` (type `collection`) of a person's record: Patient, Condition,
/// MedicationStatement, AllergyIntolerance, Encounter, Observation, CarePlan and Goal.
/// Superseded versions are left out; entries marked entered-in-error are included with
/// that status, as FHIR expects. Notes and document references have no resource here.
public enum FHIRExport {
    public static func bundle(personID: UUID, personName: String, details: DetailsDocument?, entries: [RecordEntry], now: Date) throws -> String {
        let patientRef = "urn:uuid:" + personID.lowercasedString
        var resources: [(String, [String: Any])] = [(patientRef, patient(personID: personID, name: personName, details: details))]
        for entry in entries where entry.status != "superseded" {
            if let resource = resource(for: entry, patient: patientRef) {
                resources.append(("urn:uuid:" + entry.id.lowercasedString, resource))
            }
        }
        let bundle: [String: Any] = [
            "resourceType": "Bundle",
            "id": UUID().lowercasedString,
            "type": "collection",
            "timestamp": Timestamp.format(now),
            "entry": resources.map { ["fullUrl": $0.0, "resource": $0.1] },
        ]
        let data = try JSONSerialization.data(withJSONObject: bundle, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    static func patient(personID: UUID, name: String, details: DetailsDocument?) -> [String: Any] {
        var patient: [String: Any] = [
            "resourceType": "Patient",
            "id": personID.lowercasedString,
            "active": true,
        ]
        var names: [[String: Any]] = [["use": "official", "text": name]]
        if let preferred = details?.preferredName, !preferred.isEmpty, preferred != name {
            names.append(["use": "usual", "text": preferred])
        }
        patient["name"] = names
        var telecom: [[String: Any]] = []
        if let phone = details?.phone, !phone.isEmpty { telecom.append(["system": "phone", "value": phone]) }
        if let email = details?.email, !email.isEmpty { telecom.append(["system": "email", "value": email]) }
        if !telecom.isEmpty { patient["telecom"] = telecom }
        if let details, !details.address.isEmpty || !details.postcode.isEmpty {
            var address: [String: Any] = ["use": "home"]
            if !details.address.isEmpty { address["text"] = details.address }
            if !details.postcode.isEmpty { address["postalCode"] = details.postcode }
            patient["address"] = [address]
        }
        if let language = details?.preferredLanguage, !language.isEmpty {
            patient["communication"] = [["language": ["coding": [["system": "urn:ietf:bcp:47", "code": language]], "text": language],
                                         "preferred": true]]
        }
        if let kin = details?.nextOfKin, !kin.isEmpty {
            patient["contact"] = kin.map { person -> [String: Any] in
                var contact: [String: Any] = ["name": ["text": person.name]]
                if !person.relationship.isEmpty { contact["relationship"] = [["text": person.relationship]] }
                if !person.phone.isEmpty { contact["telecom"] = [["system": "phone", "value": person.phone]] }
                return contact
            }
        }
        return patient
    }

    static func concept(_ entry: RecordEntry, fallback: String) -> [String: Any] {
        var concept: [String: Any] = ["text": entry.codeDisplay ?? fallback]
        if let system = entry.codeSystem, let code = entry.code {
            var coding: [String: Any] = ["system": system, "code": code]
            if let display = entry.codeDisplay { coding["display"] = display }
            concept["coding"] = [coding]
        }
        return concept
    }

    static func notes(_ entry: RecordEntry) -> [[String: Any]]? {
        var notes: [[String: Any]] = []
        if let text = entry.text { notes.append(["text": text, "authorString": entry.authorDisplay]) }
        if let reason = entry.errorReason { notes.append(["text": "Entered in error: " + reason]) }
        return notes.isEmpty ? nil : notes
    }

    /// `effective[x]`-style timing: a date-time (or date) and an optional period.
    static func timing(_ entry: RecordEntry) -> (instant: String, period: [String: Any]?) {
        let start = entry.effectiveStart ?? entry.effectiveDate.description
        if let end = entry.effectiveEnd { return (start, ["start": start, "end": end]) }
        return (start, nil)
    }

    static func resource(for entry: RecordEntry, patient: String) -> [String: Any]? {
        let id = entry.id.lowercasedString
        let subject = ["reference": patient]
        let inError = entry.status == "entered_in_error"
        let (instant, period) = timing(entry)
        var resource: [String: Any]
        switch entry.kind {
        case "condition":
            resource = [
                "resourceType": "Condition", "subject": subject,
                "code": concept(entry, fallback: entry.text.map { String($0.prefix(80)) } ?? "Condition"),
                "onsetDateTime": instant, "recordedDate": Timestamp.format(entry.recordedAt),
                "verificationStatus": codeable("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               inError ? "entered-in-error" : "confirmed"),
            ]
            if !inError {
                resource["clinicalStatus"] = codeable("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                      ["resolved": "resolved", "inactive": "inactive"][entry.status] ?? "active")
            }
        case "medication":
            let name = entry.details["name"]?.string ?? entry.codeDisplay ?? "Medication"
            var dosage = [entry.details["dose"]?.string, entry.details["route"]?.string].compactMap { $0 }.joined(separator: " ")
            if let perDay = entry.details["doses_per_day"]?.number, perDay > 0 {
                dosage += (dosage.isEmpty ? "" : ", ") + "\(perDay.formatted()) time\(perDay == 1 ? "" : "s") a day"
            }
            resource = [
                "resourceType": "MedicationStatement", "subject": subject,
                "status": inError ? "entered-in-error" : (["completed": "completed", "inactive": "stopped"][entry.status] ?? "active"),
                "medicationCodeableConcept": { var c = concept(entry, fallback: name); c["text"] = name; return c }(),
                "dateAsserted": Timestamp.format(entry.recordedAt),
            ]
            if let period { resource["effectivePeriod"] = period } else { resource["effectiveDateTime"] = instant }
            if !dosage.isEmpty {
                var item: [String: Any] = ["text": dosage]
                if let route = entry.details["route"]?.string { item["route"] = ["text": route] }
                resource["dosage"] = [item]
            }
        case "allergy":
            let substance = entry.details["substance"]?.string ?? entry.codeDisplay ?? "Allergy"
            resource = [
                "resourceType": "AllergyIntolerance", "patient": subject,
                "code": { var c = concept(entry, fallback: substance); c["text"] = substance; return c }(),
                "recordedDate": Timestamp.format(entry.recordedAt), "onsetDateTime": instant,
                "verificationStatus": codeable("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                               inError ? "entered-in-error" : "confirmed"),
            ]
            if !inError {
                resource["clinicalStatus"] = codeable("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                                      ["resolved": "resolved", "inactive": "inactive"][entry.status] ?? "active")
            }
            if let reaction = entry.details["reaction"]?.string {
                var item: [String: Any] = ["manifestation": [["text": reaction]]]
                if let severity = entry.details["severity"]?.string { item["severity"] = severity }
                resource["reaction"] = [item]
            }
        case "encounter":
            resource = [
                "resourceType": "Encounter", "subject": subject,
                "status": inError ? "entered-in-error" : (entry.status == "active" ? "in-progress" : "finished"),
                "class": ["system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"],
                "period": period ?? ["start": instant],
            ]
            if entry.codeDisplay != nil { resource["type"] = [concept(entry, fallback: "Encounter")] }
        case "observation":
            resource = [
                "resourceType": "Observation", "subject": subject,
                "status": inError ? "entered-in-error" : "final",
                "code": concept(entry, fallback: entry.text.map { String($0.prefix(80)) } ?? "Observation"),
                "effectiveDateTime": instant, "issued": Timestamp.format(entry.recordedAt),
            ]
            if let value = entry.details["value"]?.object { resource["valueQuantity"] = quantity(value) }
            if let components = entry.details["components"]?.object {
                resource["component"] = components.keys.sorted().compactMap { name -> [String: Any]? in
                    guard let value = components[name]?.object else { return nil }
                    return ["code": ["text": name], "valueQuantity": quantity(value)]
                }
            }
        case "care_plan":
            resource = [
                "resourceType": "CarePlan", "subject": subject, "intent": "plan",
                "status": inError ? "entered-in-error" : (["completed": "completed", "inactive": "on-hold"][entry.status] ?? "active"),
                "period": period ?? ["start": instant], "created": Timestamp.format(entry.recordedAt),
            ]
            if let text = entry.text { resource["description"] = text }
            if entry.codeDisplay != nil { resource["category"] = [concept(entry, fallback: "Care plan")] }
        case "goal":
            let target = entry.details["target"]?.string ?? entry.codeDisplay ?? "Goal"
            resource = [
                "resourceType": "Goal", "subject": subject,
                "lifecycleStatus": inError ? "entered-in-error" : (["completed": "completed", "inactive": "on-hold"][entry.status] ?? "active"),
                "description": ["text": target], "startDate": String(instant.prefix(10)),
            ]
            if let due = entry.details["due_on"]?.string { resource["target"] = [["dueDate": due]] }
            if let percent = entry.details["latest_percent"]?.number {
                resource["achievementStatus"] = codeable("http://terminology.hl7.org/CodeSystem/goal-achievement",
                                                         percent >= 100 ? "achieved" : (percent > 0 ? "improving" : "in-progress"))
            }
        default:
            return nil
        }
        resource["id"] = id
        if entry.kind == "encounter" {
            // R4's Encounter has no `note`: the summary travels as its narrative.
            let text = [entry.text, entry.errorReason.map { "Entered in error: " + $0 }].compactMap { $0 }.joined(separator: "\n")
            if !text.isEmpty {
                resource["text"] = ["status": "additional", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">\(xhtmlEscaped(text))</div>"]
            }
        } else if let notes = notes(entry) {
            resource["note"] = notes
        }
        return resource
    }

    static func xhtmlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\n", with: "<br/>")
    }

    static func codeable(_ system: String, _ code: String) -> [String: Any] {
        ["coding": [["system": system, "code": code]]]
    }

    static func quantity(_ object: [String: JSONValue]) -> [String: Any] {
        var quantity: [String: Any] = ["value": object["value"]?.number ?? 0]
        if let unit = object["unit"]?.string, !unit.isEmpty {
            quantity["unit"] = unit
            quantity["system"] = "http://unitsofmeasure.org"
            quantity["code"] = unit
        }
        return quantity
    }
}
