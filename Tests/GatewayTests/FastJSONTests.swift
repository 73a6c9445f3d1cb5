import Contracts
import Foundation
@testable import GatewayService
import SwiftProtobuf
import Testing

/// The gateway's own JSON writer must write exactly what swift-protobuf's encoder writes
/// with the gateway's options (map entries in key order, as swift-protobuf's deterministic
/// ordering does), for every kind of field the contracts use.
@Suite("Gateway JSON writer")
struct FastJSONTests {
    static let reference: JSONEncodingOptions = {
        var options = ProtoJSON.encoding
        options.useDeterministicOrdering = true
        return options
    }()

    func expectSame<M: SwiftProtobuf.Message & Equatable>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fast = String(decoding: try FastJSON.write(message), as: UTF8.self)
        let expected = try message.jsonString(options: Self.reference)
        #expect(fast == expected, sourceLocation: sourceLocation)
        // And it reads back as the same message.
        let back = try M(jsonString: fast, options: ProtoJSON.decoding)
        #expect(back == message, sourceLocation: sourceLocation)
    }

    static func entry(_ kind: Wholecare_Records_V1_EntryKind, text: String) -> Wholecare_Records_V1_Entry {
        var e = Wholecare_Records_V1_Entry()
        e.id = "0d5f3a10-5c6e-4d8e-9a0b-1c2d3e4f5a6b"
        e.personID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
        e.kind = kind
        e.status = .active
        e.source.kind = .professional
        e.source.authorID = "11111111-2222-4333-8444-555555555555"
        e.source.display = "Dr Priya Shah, Riverside Surgery"
        e.effectiveStart = "2026-11-02"
        e.code.system = "http://snomed.info/sct"
        e.code.code = "38341003"
        e.code.display = "Hypertension"
        e.text = text
        e.lineageID = e.id
        e.version = 3
        e.recordedAt = "2026-11-27T07:00:00.123456Z"
        switch kind {
        case .medication:
            e.medication.name = "Metformin"
            e.medication.dose = "500 mg"
            e.medication.dosesPerDay = 2
            e.medication.unitsPerDose = 0.5
            e.medication.quantitySupplied = 56
            e.medication.daysSupply = 28
        case .observation:
            e.observation.value.value = 72.25
            e.observation.value.unit = "kg"
            var systolic = Wholecare_Records_V1_Quantity()
            systolic.value = 128
            systolic.unit = "mm[Hg]"
            var diastolic = systolic
            diastolic.value = 82
            e.observation.components = ["systolic": systolic, "diastolic": diastolic, "pulse": Wholecare_Records_V1_Quantity()]
        case .allergy:
            e.allergy.substance = "Penicillin"
            e.allergy.severity = "severe"
        case .goal:
            e.goal.target = "Walk to the shop unaided"
            e.goal.agreedWithCoordinator = true
        default:
            break
        }
        return e
    }

    @Test("a record summary with every kind of entry, the care team and details")
    func summary() throws {
        var summary = Wholecare_Records_V1_Summary()
        summary.personID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
        summary.activeConditions = [Self.entry(.condition, text: "Diagnosed \"stage 1\"\nReviewed yearly\\ok")]
        summary.currentMedications = [Self.entry(.medication, text: "Take with food")]
        summary.allergies = [Self.entry(.allergy, text: "Rash — hives 🐝")]
        summary.goals = [Self.entry(.goal, text: "")]
        summary.latestEntries = [Self.entry(.observation, text: "tab\there"), Self.entry(.note, text: "é\u{0085}\u{009F}\u{00A0}")]
        var member = Wholecare_Records_V1_CareTeamMember()
        member.name = "Sam O'Neill"
        member.role = "care coordinator"
        summary.careTeam = [member, Wholecare_Records_V1_CareTeamMember()]
        try expectSame(summary)
        try expectSame(Wholecare_Records_V1_Summary())
    }

    @Test("strings: quotes, backslashes, every control character, DEL, C1 controls, non-ASCII and astral characters")
    func strings() throws {
        var specials = ""
        for scalar in 0..<0xC0 { specials.unicodeScalars.append(Unicode.Scalar(UInt8(scalar))) }
        var e = Wholecare_Records_V1_Entry()
        e.text = specials
        try expectSame(e)
        var generator = SystemRandomNumberGenerator()
        let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x9F, 0xA0...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
        for _ in 0..<500 {
            var text = ""
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                let range = ranges.randomElement(using: &generator)!
                if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &generator)) { text.unicodeScalars.append(scalar) }
            }
            e.text = text
            e.code.display = String(text.reversed())
            try expectSame(e)
        }
    }

    @Test("numbers: 64-bit extremes as numbers, negative values, doubles including NaN and infinities")
    func numbers() throws {
        var budget = Wholecare_Ledger_V1_Budget()
        budget.allocatedPence = .max
        budget.spentPence = .min
        budget.availablePence = -1
        budget.committedPence = 9
        budget.overdraftLimitPence = 10
        try expectSame(budget)
        for value in [0.1, -0.0, 1e300, -2.5e-308, 3, .nan, .infinity, -.infinity, .pi] {
            var m = Wholecare_Records_V1_MedicationDetails()
            m.dosesPerDay = value
            m.daysSupply = .min
            let fast = String(decoding: try FastJSON.write(m), as: UTF8.self)
            #expect(fast == (try m.jsonString(options: Self.reference)))
        }
    }

    @Test("enums: named values, repeated enums, and values without a name")
    func enums() throws {
        var request = Wholecare_Records_V1_ListEntriesRequest()
        request.kinds = [.condition, .goal, .unspecified, .UNRECOGNIZED(99)]
        request.statuses = [.active]
        request.source = .UNRECOGNIZED(-3)
        try expectSame(request)
        var facts = Wholecare_Identity_V1_AccessFacts()
        facts.relationships = [.careCoordinator]
        try expectSame(facts)
    }

    @Test("maps in key order, bytes in base64")
    func mapsAndBytes() throws {
        var names = Wholecare_Identity_V1_GetDisplayNamesResponse()
        names.names = ["b": "Bea \"B\"", "a": "Al", "é": "E", "": "empty"]
        try expectSame(names)
        var account = Wholecare_Ledger_V1_CareAccount()
        account.cumulativeByMonth = ["2026-11": 120_000, "2026-09": -5, "2026-10": 0]
        account.capPence = 7_400_000
        try expectSame(account)
        for length in 0..<7 {
            var key = Wholecare_Identity_V1_SigningKey()
            key.kid = "k\(length)"
            key.publicKey = Data((0..<length).map { UInt8(truncatingIfNeeded: $0 * 97 + 200) })
            key.current = length % 2 == 0
            try expectSame(key)
        }
    }

    @Test("what the writer leaves to swift-protobuf (well-known types) is still written, by swift-protobuf")
    func fallback() throws {
        let time = Google_Protobuf_Timestamp(seconds: 1_795_000_000, nanos: 5_000)
        #expect(throws: FastJSON.Unsupported.self) { try FastJSON.write(time) }
        let written = String(decoding: try FastJSON.encode(time), as: UTF8.self)
        #expect(written == (try time.jsonString(options: ProtoJSON.encoding)))
        #expect(written.hasSuffix("Z\""))
    }
}
