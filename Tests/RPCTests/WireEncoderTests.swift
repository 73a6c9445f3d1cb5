import Contracts
import Foundation
import RPC
import SwiftProtobuf
import Testing

/// The one-pass encoder must write exactly the bytes swift-protobuf writes, for every shape
/// of field the contracts use and some they do not yet.
@Suite("One-pass protobuf encoding")
struct WireEncoderTests {
    func expectSameBytes<M: Message & Equatable>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ours = try WireEncoder.encode(message)
        let theirs: Data = try message.serializedBytes()
        #expect(ours == theirs, "\(M.protoMessageName): \(ours.count) bytes against \(theirs.count)", sourceLocation: sourceLocation)
        #expect(try M(serializedBytes: ours) == message, sourceLocation: sourceLocation)
    }

    func text(_ length: Int, _ seed: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz é中🙂")
        return String((0..<length).map { alphabet[($0 * 7 + seed) % alphabet.count] })
    }

    func entry(_ n: Int) -> Wholecare_Records_V1_Entry {
        var entry = Wholecare_Records_V1_Entry()
        entry.id = UUID().uuidString.lowercased()
        entry.personID = UUID().uuidString.lowercased()
        entry.kind = Wholecare_Records_V1_EntryKind(rawValue: n % 8) ?? .condition
        entry.status = .active
        entry.source.kind = .professional
        entry.source.display = text(n % 40, n)
        entry.effectiveStart = "2026-0\(n % 9 + 1)-1\(n % 10)"
        entry.code.system = "http://snomed.info/sct"
        entry.code.code = String(10_000 + n)
        entry.code.display = text(20, n)
        // Texts around the varint boundaries of a length: 127/128 and 16383/16384 bytes.
        entry.text = text([0, 5, 127, 128, 300, 16_383, 16_384, 20_000][n % 8], n)
        entry.lineageID = entry.id
        entry.version = Int32(n % 3 + 1)
        entry.recordedAt = "2026-11-27T10:00:0\(n % 10)Z"
        switch n % 4 {
        case 0:
            entry.observation.value.value = Double(n) / 7
            entry.observation.value.unit = "kg"
            entry.observation.components = ["systolic": .with { $0.value = 120; $0.unit = "mm[Hg]" },
                                            "diastolic": .with { $0.value = -80.5; $0.unit = "mm[Hg]" }]
        case 1:
            entry.medication.name = text(12, n)
            entry.medication.dosesPerDay = 2
            entry.medication.quantitySupplied = 56
        case 2:
            entry.allergy.substance = text(10, n)
            entry.allergy.severity = "severe"
        default:
            entry.goal.target = text(200, n)
            entry.goal.latestProgress.percent = UInt32(n % 101)
            entry.goal.latestProgress.note = text(150, n)
            entry.goal.agreedWithCoordinator = true
        }
        return entry
    }

    @Test("ids are written as Foundation's lower-case text, for every digit in every place")
    func uuidText() {
        var ids = (0..<2_000).map { _ in UUID() }
        // Each byte value in each of the sixteen places, and the extremes.
        for value in 0...255 {
            ids.append(UUID(uuid: (UInt8(value), UInt8(value), UInt8(value), UInt8(value), UInt8(value), UInt8(value),
                                   UInt8(value), UInt8(value), UInt8(value), UInt8(value), UInt8(value), UInt8(value),
                                   UInt8(value), UInt8(value), UInt8(value), UInt8(255 - value))))
        }
        for id in ids {
            var bytes: [UInt8] = [7]
            ProtoWriter.appendText(of: id, to: &bytes)
            #expect(bytes == [7] + Array(id.uuidString.lowercased().utf8))
            var writer = ProtoWriter()
            writer.uuid(3, id)
            #expect(writer.bytes == [3 << 3 | 2, 36] + Array(id.uuidString.lowercased().utf8))
        }
    }

    @Test("a record summary: many nested entries, every kind of details, maps, lengths of one to three bytes")
    func summary() throws {
        var summary = Wholecare_Records_V1_Summary()
        summary.personID = UUID().uuidString.lowercased()
        summary.activeConditions = (0..<40).map(entry)
        summary.latestEntries = (40..<50).map(entry)
        summary.careTeam = (0..<3).map { n in .with { $0.name = text(30, n); $0.role = "care coordinator" } }
        try expectSameBytes(summary)
        try expectSameBytes(Wholecare_Records_V1_Summary())
        for n in 0..<16 { try expectSameBytes(entry(n)) }
    }

    @Test("ledger messages: negative amounts (ten-byte varints), maps of int64, a batch of 1,000")
    func ledger() throws {
        var account = Wholecare_Ledger_V1_CareAccount()
        account.cumulativeByMonth = ["2026-01": 12_345, "2026-02": -1, "2026-03": Int64.max, "2026-04": Int64.min, "2026-05": 0]
        try expectSameBytes(account)
        var batch = Wholecare_Ledger_V1_PostInvoiceBatchRequest()
        batch.invoices = (0..<1000).map { n in
            .with {
                $0.budgetID = UUID().uuidString.lowercased()
                $0.amountPence = n % 2 == 0 ? Int64(n) * 1_000 : -Int64(n)
                $0.idempotencyKey = "key-\(n)"
                $0.invoiceReference = text(n % 130, n)
                $0.care.eligible = n % 3 == 0
                $0.care.councilRatePence = Int64(n)
            }
        }
        try expectSameBytes(batch)
    }

    @Test("identity's map of strings, well-known types nested deeply, and unknown fields kept as received")
    func mapsWellKnownTypesAndUnknownFields() throws {
        var names = Wholecare_Identity_V1_GetDisplayNamesResponse()
        names.names = Dictionary(uniqueKeysWithValues: (0..<50).map { (UUID().uuidString.lowercased(), text($0 * 5, $0)) })
        try expectSameBytes(names)

        // google.protobuf.Struct: maps of messages holding oneofs, lists, nesting to depth 6.
        func value(_ depth: Int, _ n: Int) -> Google_Protobuf_Value {
            if depth == 0 {
                switch n % 4 {
                case 0: return Google_Protobuf_Value(numberValue: Double(n) * -1.5)
                case 1: return Google_Protobuf_Value(stringValue: text(n * 13 % 300, n))
                case 2: return Google_Protobuf_Value(boolValue: n % 2 == 0)
                default: return Google_Protobuf_Value(nilLiteral: ())
                }
            }
            if n % 2 == 0 {
                return Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: (0..<4).map { value(depth - 1, n + $0) }))
            }
            return Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: Dictionary(uniqueKeysWithValues: (0..<3).map {
                ("k\($0)", value(depth - 1, n + $0))
            })))
        }
        try expectSameBytes(Google_Protobuf_Struct(fields: ["root": value(6, 1), "other": value(3, 2)]))
        try expectSameBytes(Google_Protobuf_Timestamp(seconds: -62_135_596_800, nanos: 999_999_999))
        try expectSameBytes(Google_Protobuf_Int32Value(-5))
        try expectSameBytes(Google_Protobuf_UInt64Value(UInt64.max))
        try expectSameBytes(Google_Protobuf_BytesValue(Data((0..<300).map { UInt8($0 % 256) })))

        // Packed repeated enums (list filters), an unrecognised negative value among them,
        // and repeated strings.
        var filter = Wholecare_Records_V1_ListEntriesRequest()
        filter.kinds = [.condition, .medication, .allergy, .UNRECOGNIZED(-3), .UNRECOGNIZED(200)]
        filter.statuses = [.active, .enteredInError]
        try expectSameBytes(filter)
        try expectSameBytes(Google_Protobuf_FieldMask(protoPaths: (0..<40).map { text($0 * 3, $0) }))

        // A newer sender's fields this build does not know: read, kept and written back.
        var known = Wholecare_Records_V1_Code()
        known.code = "123"
        var wire: Data = try known.serializedBytes()
        wire.append(contentsOf: [0xA0, 0x06, 0x2A, 0xAA, 0x06, 0x03, 0x61, 0x62, 0x63])  // field 100: varint 42; field 101: "abc"
        let withUnknown = try Wholecare_Records_V1_Code(serializedBytes: wire)
        #expect(!withUnknown.unknownFields.data.isEmpty)
        try expectSameBytes(withUnknown)
        #expect(try WireEncoder.encode(withUnknown) == wire)
    }
}
