import Foundation

extension JSONValue {
    /// Parses a JSON object of strings, numbers, booleans and nested objects — the shape of
    /// an entry's `details` as PostgreSQL prints `jsonb`. Returns nil for anything else
    /// (arrays, null, malformed text). A summary decodes hundreds of these, and
    /// `JSONDecoder` through `Codable` was a seventh of the records service's CPU there.
    public static func parseObject(_ text: String) -> [String: JSONValue]? {
        var text = text
        return text.withUTF8 { parseObject(utf8: $0) }
    }

    /// `parseObject` of text as UTF-8 bytes (a database cell), with no `String` made of it
    /// first. Strings in it that are not valid UTF-8 are repaired, as `String(decoding:)`
    /// repairs them.
    public static func parseObject(utf8 buffer: UnsafeBufferPointer<UInt8>) -> [String: JSONValue]? {
        var parser = Parser(bytes: buffer)
        guard case .object(let object)? = parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.position == buffer.count ? object : nil
    }

    /// `parseObject`'s members in an array instead of a dictionary, for reading a few of
    /// them from each of many small objects: a summary writes the details of each of its
    /// entries, and making and hashing a dictionary for each was most of reading them.
    /// Accepts exactly what `parseObject` accepts.
    public static func parseMembers(utf8 buffer: UnsafeBufferPointer<UInt8>) -> JSONMembers? {
        var parser = Parser(bytes: buffer)
        parser.skipWhitespace()
        guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "{") else { return nil }
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(8)
        guard parser.members(depth: 0, { members.append(($0, $1)) }) else { return nil }
        parser.skipWhitespace()
        return parser.position == buffer.count ? JSONMembers(members: members) : nil
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0
        static let maxDepth = 32

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) -> JSONValue? {
            skipWhitespace()
            guard position < bytes.count, depth < Self.maxDepth else { return nil }
            switch bytes[position] {
            case UInt8(ascii: "{"): return object(depth: depth).map(JSONValue.object)
            case UInt8(ascii: "\""): return string().map(JSONValue.string)
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            default: return number().map(JSONValue.number)
            }
        }

        mutating func object(depth: Int) -> [String: JSONValue]? {
            var result: [String: JSONValue] = [:]
            return members(depth: depth) { result[$0] = $1 } ? result : nil
        }

        /// Reads an object (at its `{`), giving each member to `add` in order; false if it is
        /// malformed.
        mutating func members(depth: Int, _ add: (String, JSONValue) -> Void) -> Bool {
            position += 1  // {
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
                position += 1
                return true
            }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\""), let key = string() else { return false }
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { return false }
                position += 1
                guard let element = value(depth: depth + 1) else { return false }
                add(key, element)
                skipWhitespace()
                guard position < bytes.count else { return false }
                if bytes[position] == UInt8(ascii: ",") {
                    position += 1
                } else if bytes[position] == UInt8(ascii: "}") {
                    position += 1
                    return true
                } else {
                    return false
                }
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard position + count <= bytes.count else { return false }
            for index in 0..<count where bytes[position + index] != word.utf8Start[index] { return false }
            position += count
            return true
        }

        mutating func number() -> Double? {
            let start = position
            while position < bytes.count, Self.isNumberByte(bytes[position]) { position += 1 }
            guard position > start else { return nil }
            guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)),
                  value.isFinite else { return nil }
            return value
        }

        static func isNumberByte(_ c: UInt8) -> Bool {
            (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
        }

        mutating func string() -> String? {
            position += 1  // opening quote
            let start = position
            // Fast path: no escapes.
            while position < bytes.count, bytes[position] != UInt8(ascii: "\""), bytes[position] != UInt8(ascii: "\\") {
                guard bytes[position] >= 0x20 else { return nil }
                position += 1
            }
            guard position < bytes.count else { return nil }
            if bytes[position] == UInt8(ascii: "\"") {
                defer { position += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            }
            var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<position]))
            while position < bytes.count {
                let c = bytes[position]
                position += 1
                switch c {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard position < bytes.count else { return nil }
                    let escape = bytes[position]
                    position += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4() else { return nil }
                        if (0xD800...0xDBFF).contains(scalar) {
                            // A high surrogate must be followed by an escaped low one.
                            guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                                return nil
                            }
                            position += 2
                            guard let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { return nil }
                        UTF8.encode(unicode) { out.append($0) }
                    default:
                        return nil
                    }
                default:
                    guard c >= 0x20 else { return nil }
                    out.append(c)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard position + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[position]
                let digit: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
                default: return nil
                }
                value = value << 4 | digit
                position += 1
            }
            return value
        }
    }
}

/// A JSON object's members, in order (`JSONValue.parseMembers`).
public struct JSONMembers: Sendable {
    let members: [(key: String, value: JSONValue)]

    public static let empty = JSONMembers(members: [])

    /// The value of `key`; of its last occurrence if it is given twice, as in the
    /// dictionary `parseObject` makes (jsonb, where details come from, keeps one of each).
    public subscript(key: String) -> JSONValue? {
        members.last { $0.key == key }?.value
    }
}
