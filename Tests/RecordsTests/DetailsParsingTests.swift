import Foundation
import Postgres
import RecordsService
import Testing

/// The records service reads each entry's `details` with its own small JSON parser (for
/// speed); it must read exactly what `JSONDecoder` reads, and refuse malformed JSON and
/// shapes that details never have (an entry whose details cannot be read shows none).
@Suite("Entry details parsing")
struct DetailsParsingTests {
    static let accepted = [
        #"{}"#,
        #"{"dose": "one tablet", "doses_per_day": 2, "quantity_supplied": 56}"#,
        #"{"value": {"unit": "kg", "value": 72.4}, "agreed": true, "negative": -1.5e-3, "off": false}"#,
        #"{"text": "line\nbreak \"quoted\" back\\slash tab\t solidus\/ é \u00e9 \ud83d\ude00 \u2603"}"#,
        #"{ "spaced" :  "out" , "nested" : { "deeper" : { "deepest" : 1 } } }"#,
        #"{"emoji": "😀 unescaped", "Ünïcode key": "väl"}"#,
    ]
    static let refused = [
        #"[]"#, #"{"a": null}"#, #"{"a": [1]}"#, #"{"a": 1,}"#, #"{"a" 1}"#, #"{"a": "unterminated}"#,
        #"{"a": "\x"}"#, #"{"a": "\ud83d"}"#, #"{"a": tru}"#, #"{"a": 1} trailing"#, #""#, #"{"a": 1-2}"#, #"{"a": 1e400}"#,
    ]

    @Test("reads what JSONDecoder reads", arguments: accepted)
    func matchesJSONDecoder(_ text: String) throws {
        let expected = try JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8))
        #expect(JSONValue.parseObject(text) == expected)
        // The summary's reader: the same members, looked up without a dictionary.
        let members = try #require(Self.members(text))
        for (key, value) in expected { #expect(members[key] == value) }
        #expect(members["absent"] == nil)
    }

    static func members(_ text: String) -> JSONMembers? {
        var text = text
        return text.withUTF8 { JSONValue.parseMembers(utf8: $0) }
    }

    @Test("a key given twice reads as its last value, in both readers")
    func repeatedKey() throws {
        let text = #"{"dose": "one", "route": "oral", "dose": "two"}"#
        #expect(JSONValue.parseObject(text)?["dose"] == .string("two"))
        #expect(try #require(Self.members(text))["dose"] == .string("two"))
    }

    @Test("refuses what is not an object of strings, numbers, booleans and objects", arguments: refused)
    func refusesTheRest(_ text: String) {
        #expect(JSONValue.parseObject(text) == nil)
        #expect(Self.members(text) == nil)
    }

    @Test("uuid and bytea text from PostgreSQL decode directly, and bad text is refused")
    func postgresText() {
        let id = UUID()
        #expect(UUID.decode(postgresText: Substring(id.uuidString.lowercased())) == id)
        #expect(UUID.decode(postgresText: Substring(id.uuidString)) == id)
        #expect(UUID.decode(postgresText: "not-a-uuid-at-all-not-a-uuid-at-all0") == nil)
        #expect(UUID.decode(postgresText: "0123456789abcdef0123456789abcdef0123") == nil)
        #expect(PostgresBytes.decode(postgresText: #"\x00ff10Ab"#)?.bytes == [0x00, 0xFF, 0x10, 0xAB])
        #expect(PostgresBytes.decode(postgresText: #"\x0g"#) == nil)
        #expect(PostgresBytes.decode(postgresText: #"\x0"#) == nil)
        #expect(PostgresBytes.decode(postgresText: "00") == nil)
    }
}
