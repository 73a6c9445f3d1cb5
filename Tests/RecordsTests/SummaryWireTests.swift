import Auth
import Contracts
import Foundation
@testable import RecordsService
import RPC
import Testing

/// The summary is written straight to protobuf bytes (`RecordsWire`); every entry in it
/// must decode to exactly the message `RecordsProto.entry` builds for the other record
/// RPCs, and the sections must hold the entries the summary promises, in its order.
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

    @Test("every kind of entry decodes to the message the other record RPCs send, for the person and for others")
    func entries() throws {
        let viewers: [Principal?] = [Self.principal(Self.person, .serviceUser), Self.principal(Self.author, .professional), nil]
        for viewer in viewers {
            for e in Self.entries() {
                for progress in e.kind == "goal" ? [nil, Self.progress] : [nil] {
                    var writer = ProtoWriter()
                    RecordsWire.entry(e, progress: progress, viewer: viewer, to: &writer)
                    let written = try Wholecare_Records_V1_Entry(serializedBytes: writer.bytes)
                    let expected = RecordsProto.entry(e, progress: progress, viewer: viewer)
                    #expect(written == expected, "\(e.kind) \(e.sourceKind) for \(viewer?.kind.rawValue ?? "no one")")
                    // Apart from map order, the bytes are the generated encoder's too.
                    if e.kind != "observation" { #expect(writer.bytes == (try expected.serializedBytes() as [UInt8])) }
                }
            }
        }
    }

    @Test("sealed fields stay bound to the same associated data (existing rows must still open)")
    func associatedData() {
        for _ in 0..<100 {
            let id = UUID()
            #expect(RecordsStore.aad(id, "text") == Array("records.entries:\(id.uuidString.lowercased()):text".utf8))
            var writer = ProtoWriter()
            writer.uuid(1, id)
            #expect(writer.bytes == [0x0A, 36] + Array(id.uuidString.lowercased().utf8))
        }
    }

    @Test("the summary's sections: conditions, medications by next refill, allergies, care team, goals with progress, latest")
    func summary() throws {
        let all = Self.entries()
        let active = all.filter { ["condition", "medication", "allergy", "goal"].contains($0.kind) }
        let goal = active.first { $0.kind == "goal" }!
        var member = Wholecare_Records_V1_CareTeamMember()
        member.name = "Sam O'Neill"
        member.role = "care coordinator"
        let details = DetailsVersion(personID: Self.person, version: 3, document: DetailsDocument(), sourceKind: "self",
                                     updatedByID: Self.person, updatedByDisplay: "Bench Person", updatedAt: Date(timeIntervalSince1970: 1_795_000_000))
        let viewer = Self.principal(Self.person, .serviceUser)
        let data = RecordsStore.SummaryData(details: details, active: active, latest: Array(all.prefix(10)),
                                            progress: [goal.lineageID: Self.progress])
        let summary = try Wholecare_Records_V1_Summary(serializedBytes: try RecordsWire.summary(
            person: Self.person, data: data, careTeam: [member, Wholecare_Records_V1_CareTeamMember()], viewer: viewer))

        #expect(summary.personID == Self.person.lowercasedString)
        #expect(summary.details == RecordsProto.details(details, person: Self.person, viewer: viewer))
        #expect(summary.activeConditions == active.filter { $0.kind == "condition" }.map { RecordsProto.entry($0, viewer: viewer) })
        #expect(summary.currentMedications.map(\.medication.name) == ["Metformin", "", "Aspirin"])
        #expect(summary.currentMedications.map(\.medication.nextRefillOn) == ["2026-11-29", "2026-12-02", ""])
        #expect(summary.allergies == active.filter { $0.kind == "allergy" }.map { RecordsProto.entry($0, viewer: viewer) })
        #expect(summary.careTeam == [member, Wholecare_Records_V1_CareTeamMember()])
        #expect(summary.goals == active.filter { $0.kind == "goal" }.map {
            RecordsProto.entry($0, progress: $0.lineageID == goal.lineageID ? Self.progress : nil, viewer: viewer)
        })
        #expect(summary.goals.first?.goal.latestProgress.percent == 40)
        #expect(summary.latestEntries == all.prefix(10).map { RecordsProto.entry($0, viewer: viewer) })
        #expect(summary.latestEntries.count == 10)

        // A person with no details and nothing recorded yet.
        let empty = try Wholecare_Records_V1_Summary(serializedBytes: try RecordsWire.summary(
            person: Self.person, data: .init(details: nil, active: [], latest: [], progress: [:]), careTeam: [], viewer: viewer))
        var expected = Wholecare_Records_V1_Summary()
        expected.personID = Self.person.lowercasedString
        expected.details = RecordsProto.details(nil, person: Self.person, viewer: viewer)
        #expect(empty == expected)
    }
}
