import Foundation
@testable import RPC
import Testing

@Suite("Input validation")
struct ValidationTests {
    @Test("trace ids are short plain ids; anything else is not passed on or logged")
    func traceIDs() {
        #expect(MetadataKey.isValidTraceID("3f1c2a4e-1111-4222-8333-944455556666"))
        #expect(MetadataKey.isValidTraceID("req_42-A"))
        #expect(MetadataKey.isValidTraceID(String(repeating: "a", count: 64)))
        for bad in ["", String(repeating: "a", count: 65), "line\nbreak", "{\"json\": 1}", "spaced id", "é", "a/b"] {
            #expect(!MetadataKey.isValidTraceID(bad), "\(bad)")
        }
    }

    @Test("ids: the hyphenated form in either case parses to Foundation's value; anything else is refused naming the field")
    func uuids() throws {
        for _ in 0..<200 {
            let id = UUID()
            #expect(try Validate.uuid(id.uuidString, field: "id") == id)
            #expect(try Validate.uuid(id.uuidString.lowercased(), field: "id") == id)
            #expect(id.lowercasedString == id.uuidString.lowercased())
            #expect(UUID(hyphenated: id.lowercasedString) == id)
        }
        let bad = [
            "", "3f1c2a4e-1111-4222-8333-94445555666", "3f1c2a4e-1111-4222-8333-9444555566667",
            "3f1c2a4e11114222833394445555666600ab", "3f1c2a4e-1111-4222-8333_944455556666", "3g1c2a4e-1111-4222-8333-944455556666",
            "{3f1c2a4e-1111-4222-8333-944455556666", " 3f1c2a4e-1111-4222-8333-94445555666", "3f1c2a4e-1111-4222-8333-94445555666é",
        ]
        for text in bad {
            #expect(UUID(hyphenated: text) == nil, "\(text)")
            let error = #expect(throws: RPCError.self) { try Validate.uuid(text, field: "budget_id") }
            #expect(error?.code == .invalidArgument && error?.metadata[MetadataKey.field] == "budget_id")
        }
    }

    @Test("time-ordered ids: version 7, the RFC 4122 variant, the time in their first 48 bits, later ids sorting after")
    func timeOrderedIDs() {
        let start = Date(timeIntervalSince1970: 1_795_000_000.123)
        var previous = ""
        for step in 0..<50 {
            let at = start.addingTimeInterval(Double(step) * 0.002)
            let id = UUID.timeOrdered(now: at)
            let bytes = withUnsafeBytes(of: id.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 7 && bytes[8] >> 6 == 0b10)
            let millis = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(millis == UInt64(at.timeIntervalSince1970 * 1000))
            #expect(id.lowercasedString > previous, "an id made later sorts after")
            previous = id.lowercasedString
        }
        #expect(UUID.timeOrdered(now: start) != UUID.timeOrdered(now: start), "ids made in the same millisecond still differ")
    }

    @Test("idempotency keys: 1 to 200 printable ASCII characters without spaces; control characters, spaces, other scripts and length refused")
    func idempotencyKeys() {
        for key in ["a", "w1-42-3f1c2a4e", "billing:2026-11/run_7.item-0001", "~!#$%&'()*+,/;<=>?@[]^`{|}\\\"", String(repeating: "k", count: 200)] {
            #expect(Validate.isIdempotencyKey(key), "\(key)")
        }
        for key in ["", " ", "a b", "a\tb", "a\nb", "a\u{01}b", "a\u{7f}b", "clé", "key\u{00A0}", "🔑", String(repeating: "k", count: 201)] {
            #expect(!Validate.isIdempotencyKey(key), "\(key.debugDescription)")
        }
    }

    @Test("text: plain ASCII is returned as given; other text is trimmed; control characters, emptiness and length are refused")
    func text() throws {
        #expect(try Validate.text("INV-2026-11 Home care, week 3", field: "memo", max: 100) == "INV-2026-11 Home care, week 3")
        #expect(try Validate.text("  padded\n", field: "memo", max: 100) == "padded")
        #expect(try Validate.text("Zoë’s café", field: "memo", max: 100) == "Zoë’s café")
        #expect(try Validate.text("", field: "memo", max: 10, allowEmpty: true) == "")
        #expect(try Validate.text("line one\nline two", field: "note", max: 100, multiline: true) == "line one\nline two")
        #expect(try Validate.text("abcdé", field: "memo", max: 5) == "abcdé", "characters, not bytes, are counted")
        let refused: [(String, Int, Bool, String)] = [
            ("", 10, false, "is required"),
            ("   ", 10, false, "is required"),
            ("abcdefghijk", 10, false, "at most 10"),
            ("bell\u{07}", 10, false, "control characters"),
            ("tab\there", 20, false, "control characters"),
            ("line one\nline two", 100, false, "control characters"),
            ("zero\u{0}", 10, false, "control characters"),
            ("del\u{7f}", 10, false, "control characters"),
        ]
        for (value, max, allowEmpty, problem) in refused {
            let error = #expect(throws: RPCError.self) { try Validate.text(value, field: "memo", max: max, allowEmpty: allowEmpty) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(problem) == true, "\(value.debugDescription): \(error?.message ?? "")")
            #expect(error?.message.contains(value) == false || value.isEmpty || value == "   ", "the value is not echoed")
        }
    }

    @Test("timestamps are written as Foundation's ISO 8601 style writes them, milliseconds truncated")
    func timestampFormat() {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        var times: [Double] = [0, -1.5, 1.0015, 1.9995, 1.99951, 951_782_400, 1_795_000_000.999, 1_795_000_000.9999,
                               -2_208_988_800, -2_208_988_800.001, 253_402_300_799.9996, 253_402_300_800, -62_135_596_800, 1e-7]
        for _ in 0..<100_000 { times.append(Double.random(in: -2_300_000_000...253_500_000_000, using: &generator)) }
        // Microsecond times, as PostgreSQL's timestamps read back.
        for _ in 0..<100_000 {
            times.append(Double(Int64.random(in: 0...4_000_000_000, using: &generator)) + Double(Int.random(in: 0..<1_000_000, using: &generator)) / 1e6)
        }
        var mismatches: [String] = []
        for time in times {
            let date = Date(timeIntervalSince1970: time)
            let expected = date.formatted(style)
            if Timestamp.format(date) != expected, mismatches.count < 5 { mismatches.append("\(time): \(Timestamp.format(date)) ≠ \(expected)") }
            // The writer's field holds the same text (through its own path, with no String made).
            var writer = ProtoWriter()
            writer.timestamp(2, date)
            if writer.bytes != [2 << 3 | 2, UInt8(expected.utf8.count)] + Array(expected.utf8), mismatches.count < 5 {
                mismatches.append("\(time): field \(writer.bytes) for \(expected)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
    }
}
