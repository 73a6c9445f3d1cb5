import Contracts
import Foundation
@testable import GatewayService
import RPC
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
        // Written straight from the binary form (swift-protobuf's and the RPC layer's
        // encoders write the same bytes), in one pass, with no fallback to decoding.
        for binary in [try message.serializedBytes() as [UInt8], Array(try WireEncoder.encode(message))] {
            let wire = try binary.withUnsafeBytes { try WireJSON.transcode($0, schema: try WireJSON.schema(for: M.self), root: M.self) }
            #expect(String(decoding: wire, as: UTF8.self) == expected, sourceLocation: sourceLocation)
        }
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

    @Test("strings read eight bytes at a time: each character that needs a look, at every position of plain text around the word edges, is written as swift-protobuf writes it")
    func stringsAcrossWords() throws {
        var specials: [Unicode.Scalar] = (0..<0x20).map { Unicode.Scalar(UInt8($0)) }
        specials += ["\"", "\\", "\u{7F}", "\u{80}", "\u{85}", "\u{9F}", "\u{A0}", "é", "€", "😀", " ", "~"]
        var e = Wholecare_Records_V1_Entry()
        for length in [1, 7, 8, 9, 15, 16, 17, 24, 33] {
            for position in 0..<length {
                for special in specials {
                    var text = String(repeating: "a", count: length).unicodeScalars.map { $0 }
                    text[position] = special
                    var string = ""
                    string.unicodeScalars.append(contentsOf: text)
                    e.text = string
                    try expectSame(e)
                }
            }
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
        // A token learnt from a repeated field as if it were singular would be `[…]`, and
        // cached for every field of that enum: refused instead.
        let odd = Wholecare_Records_V1_EntryKind(rawValue: 12_345)!
        #expect(throws: FastJSON.Unsupported.self) {
            try FastJSON.enumToken(odd, field: 2, of: Wholecare_Records_V1_ListEntriesRequest.self, repeated: false)
        }
        #expect(try FastJSON.enumToken(odd, field: 2, of: Wholecare_Records_V1_ListEntriesRequest.self, repeated: true) == Array("12345".utf8))
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

    // MARK: - From the wire (`WireJSON`)

    /// Bytes of one field: its tag and what follows.
    static func field(_ number: Int, varint: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        WireEncoder.appendVarint(UInt64(number) << 3, to: &out)
        WireEncoder.appendVarint(varint, to: &out)
        return out
    }

    static func field(_ number: Int, bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        WireEncoder.appendVarint(UInt64(number) << 3 | 2, to: &out)
        WireEncoder.appendVarint(UInt64(bytes.count), to: &out)
        return out + bytes
    }

    static func field(_ number: Int, _ text: String) -> [UInt8] { field(number, bytes: Array(text.utf8)) }

    /// What the gateway answers for these bytes as an `M`: the single pass where it
    /// applies, else swift-protobuf's decoding and `FastJSON` — always the same JSON as
    /// decoding first would give.
    func expectRelayed<M: SwiftProtobuf.Message>(_ bytes: [UInt8], as type: M.Type, singlePass: Bool,
                                                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let decoded = try M(serializedBytes: bytes)
        let expected = String(decoding: try FastJSON.encode(decoded), as: UTF8.self)
        let relayed = String(decoding: try WireJSON.encode(Data(bytes), as: M.self), as: UTF8.self)
        #expect(relayed == expected, sourceLocation: sourceLocation)
        let direct = Result { try bytes.withUnsafeBytes { try WireJSON.transcode($0, schema: try WireJSON.schema(for: M.self), root: M.self) } }
        switch direct {
        case .success(let json):
            #expect(singlePass, "expected the bytes to need decoding", sourceLocation: sourceLocation)
            #expect(String(decoding: json, as: UTF8.self) == expected, sourceLocation: sourceLocation)
        case .failure(let error):
            #expect(!singlePass, "single pass failed: \(error)", sourceLocation: sourceLocation)
            #expect(error is WireJSON.Fallback, sourceLocation: sourceLocation)
        }
    }

    @Test("from the wire: unknown fields left out, defaults sent explicitly left out, unpacked repeated values read")
    func wireLeniency() throws {
        let id = Self.field(1, "e1"), kind = Self.field(3, varint: 2)
        // An unknown field (99) between known ones, and one of each wire type.
        let unknown = Self.field(99, "secret") + Self.field(98, varint: 7) + [0xA1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8] + [0xAD, 0x06, 1, 2, 3, 4]
        try expectRelayed(id + unknown + kind, as: Wholecare_Records_V1_Entry.self, singlePass: true)
        // Fields sent with their default values (empty string, zero enum, zero double).
        try expectRelayed(Self.field(1, "") + Self.field(3, varint: 0) + Self.field(7, ""), as: Wholecare_Records_V1_Entry.self, singlePass: true)
        let zero: [UInt8] = [0x09] + [UInt8](repeating: 0, count: 8)  // Quantity.value = 0.0
        try expectRelayed(zero + Self.field(2, "kg"), as: Wholecare_Records_V1_Quantity.self, singlePass: true)
        // -0.0 is not the default (its bits are not zero).
        try expectRelayed([0x09, 0, 0, 0, 0, 0, 0, 0, 0x80], as: Wholecare_Records_V1_Quantity.self, singlePass: true)
        // Repeated enums packed, unpacked, and both in one run; negative int32 as ten bytes.
        let packed = Self.field(2, bytes: [1, 4, 0x63])
        let unpacked = Self.field(2, varint: 3) + Self.field(2, varint: 2)
        try expectRelayed(packed + unpacked + Self.field(7, varint: 50), as: Wholecare_Records_V1_ListEntriesRequest.self, singlePass: true)
        try expectRelayed(Self.field(4, varint: UInt64(bitPattern: -3)), as: Wholecare_Records_V1_ListEntriesRequest.self, singlePass: true)
    }

    @Test("from the wire: map entries in key order, the later of two equal keys, missing keys and values as defaults")
    func wireMaps() throws {
        func entry(_ key: String?, _ value: String?) -> [UInt8] {
            Self.field(1, bytes: (key.map { Self.field(1, $0) } ?? []) + (value.map { Self.field(2, $0) } ?? []))
        }
        let names = entry("b", "Bea") + entry("a", "Al") + entry("b", "Bee") + entry(nil, "no key") + entry("v", nil) + entry("é", "E")
        try expectRelayed(names, as: Wholecare_Identity_V1_GetDisplayNamesResponse.self, singlePass: true)
        // A map of messages inside a message inside a repeated field.
        var observation = Self.entry(.observation, text: "bp")
        observation.observation.components["a"] = Wholecare_Records_V1_Quantity()
        var summary = Wholecare_Records_V1_Summary()
        summary.latestEntries = [observation, observation]
        try expectSame(summary)
        // A message map value missing from its entry is an empty object.
        let component = Self.field(2, bytes: Self.field(1, bytes: Self.field(1, "systolic")))
        try expectRelayed(component, as: Wholecare_Records_V1_ObservationDetails.self, singlePass: true)
    }

    @Test("from the wire: what one pass cannot write in order is decoded first, and bad bytes are refused as before")
    func wireFallback() throws {
        let entry = Wholecare_Records_V1_Entry.self
        // Out of number order; a field twice (the later wins); a repeated field in two runs.
        try expectRelayed(Self.field(3, varint: 2) + Self.field(1, "e1"), as: entry, singlePass: false)
        try expectRelayed(Self.field(1, "first") + Self.field(1, "second"), as: entry, singlePass: false)
        let condition = Self.field(3, bytes: try Self.entry(.condition, text: "c").serializedBytes())
        try expectRelayed(condition + Self.field(1, "p") + condition, as: Wholecare_Records_V1_Summary.self, singlePass: false)
        try expectRelayed(Self.field(1, "p") + condition + condition, as: Wholecare_Records_V1_Summary.self, singlePass: true)
        // Two members of one oneof (observation and medication details): decoding keeps the last.
        try expectRelayed(Self.field(20, bytes: []) + Self.field(21, bytes: Self.field(1, "Metformin")), as: entry, singlePass: false)
        try expectRelayed(Self.field(3, varint: 2) + Self.field(21, bytes: Self.field(1, "Metformin")), as: entry, singlePass: true)
        // A nested message sent twice is merged by decoding.
        try expectRelayed(Self.field(5, bytes: Self.field(3, "A")) + Self.field(5, bytes: Self.field(4, "B")), as: entry, singlePass: false)
        // Invalid UTF-8, a length past the end, a truncated varint: refused like decoding.
        for bad: [UInt8] in [Self.field(1, bytes: [0x66, 0xFF, 0x66]), [0x0A, 0x05, 0x61], [0x18, 0x80]] {
            #expect(throws: BinaryDecodingError.self) { try WireJSON.encode(Data(bad), as: entry) }
            #expect(throws: WireJSON.Fallback.self) {
                try bad.withUnsafeBytes { try WireJSON.transcode($0, schema: try WireJSON.schema(for: entry), root: entry) }
            }
        }
        // A well-known type has no schema here: decoded and written by swift-protobuf.
        let time = Google_Protobuf_Timestamp(seconds: 1_795_000_000, nanos: 5_000)
        #expect(throws: (any Error).self) { try WireJSON.schema(for: Google_Protobuf_Timestamp.self) }
        let written = String(decoding: try WireJSON.encode(try time.serializedBytes(), as: Google_Protobuf_Timestamp.self), as: UTF8.self)
        #expect(written == (try time.jsonString(options: ProtoJSON.encoding)))
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
