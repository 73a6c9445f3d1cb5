import Foundation
import UUIDText

/// A Swift value that can be sent to PostgreSQL as a bind parameter.
public protocol PostgresEncodable: Sendable {
    static var postgresType: PostgresType { get }
    var postgresBind: PostgresBind { get }
}

/// A Swift value that can be read from a column in PostgreSQL's text result format.
public protocol PostgresDecodable {
    /// The name used in decoding errors ("expected Int64").
    static var postgresExpectation: String { get }
    /// Decodes a non-NULL column value; returns `nil` if the text is not a valid value.
    static func decode(postgresText text: Substring) -> Self?
    /// The same from the cell's UTF-8 bytes, as rows hold them. The default makes a string
    /// and calls `decode(postgresText:)`; ids, numbers, times and bytes read the bytes.
    static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Self?
    /// Decodes a possibly NULL value (`nil` bytes); the default refuses NULL.
    static func decode(nullableUTF8 utf8: UnsafeBufferPointer<UInt8>?, column: String) throws -> Self
    /// Decodes a non-NULL value in PostgreSQL's binary format from a column of type
    /// `type`; `nil` if the bytes are not a valid value or this type is not read
    /// from that column type in binary (the default: only the types below are).
    static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Self?
    /// `decode(nullableUTF8:column:)` for a result in the binary format.
    static func decode(nullableBinary bytes: UnsafeBufferPointer<UInt8>?, type: PostgresType, column: String) throws -> Self
}

/// A big-endian two-, four- or eight-byte integer column (`int2`, `int4`, `int8`).
@inline(__always)
func binaryInteger(_ bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Int64? {
    guard let base = UnsafeRawPointer(bytes.baseAddress) else { return nil }
    switch (type, bytes.count) {
    case (.int2, 2): return Int64(Int16(bitPattern: UInt16(bigEndian: base.loadUnaligned(as: UInt16.self))))
    case (.int4, 4): return Int64(Int32(bitPattern: UInt32(bigEndian: base.loadUnaligned(as: UInt32.self))))
    case (.int8, 8): return Int64(bitPattern: UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)))
    default: return nil
    }
}

extension PostgresDecodable {
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Self? {
        decode(postgresText: Substring(String(decoding: utf8, as: UTF8.self)))
    }

    public static func decode(nullableUTF8 utf8: UnsafeBufferPointer<UInt8>?, column: String) throws -> Self {
        guard let utf8 else {
            throw PostgresError(
                kind: .decoding, safeMessage: "column \"\(column)\" is NULL, expected \(postgresExpectation)",
                column: column)
        }
        guard let value = decode(postgresUTF8: utf8) else {
            throw PostgresError(
                kind: .decoding, safeMessage: "column \"\(column)\" could not be read as \(postgresExpectation)",
                column: column)
        }
        return value
    }

    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Self? { nil }

    public static func decode(nullableBinary bytes: UnsafeBufferPointer<UInt8>?, type: PostgresType, column: String) throws -> Self {
        guard let bytes else {
            throw PostgresError(
                kind: .decoding, safeMessage: "column \"\(column)\" is NULL, expected \(postgresExpectation)",
                column: column)
        }
        guard let value = decode(postgresBinary: bytes, type: type) else {
            throw PostgresError(
                kind: .decoding,
                safeMessage: "column \"\(column)\" (type oid \(type.rawValue), binary) could not be read as \(postgresExpectation)",
                column: column)
        }
        return value
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static var postgresExpectation: String { "\(Wrapped.postgresExpectation)?" }
    public static func decode(postgresText text: Substring) -> Self? { Wrapped.decode(postgresText: text).map { .some($0) } }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Self? {
        Wrapped.decode(postgresUTF8: utf8).map { .some($0) }
    }
    public static func decode(nullableUTF8 utf8: UnsafeBufferPointer<UInt8>?, column: String) throws -> Self {
        guard let utf8 else { return .none }
        return .some(try Wrapped.decode(nullableUTF8: utf8, column: column))
    }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Self? {
        Wrapped.decode(postgresBinary: bytes, type: type).map { .some($0) }
    }
    public static func decode(nullableBinary bytes: UnsafeBufferPointer<UInt8>?, type: PostgresType, column: String) throws -> Self {
        guard let bytes else { return .none }
        return .some(try Wrapped.decode(nullableBinary: bytes, type: type, column: column))
    }
}

/// Parses a decimal integer as PostgreSQL prints it (optional `-`, digits), refusing
/// anything else and values out of `T`'s range.
@inline(__always)
func parseDecimal<T: FixedWidthInteger & SignedInteger>(_ utf8: UnsafeBufferPointer<UInt8>) -> T? {
    var index = 0
    let negative = utf8.first == UInt8(ascii: "-")
    if negative || utf8.first == UInt8(ascii: "+") { index = 1 }
    guard index < utf8.count else { return nil }
    var value: T = 0
    while index < utf8.count {
        let digit = utf8[index] &- UInt8(ascii: "0")
        guard digit < 10 else { return nil }
        let (times10, o1) = value.multipliedReportingOverflow(by: 10)
        let (next, o2) = negative ? times10.subtractingReportingOverflow(T(digit)) : times10.addingReportingOverflow(T(digit))
        guard !o1, !o2 else { return nil }
        value = next
        index += 1
    }
    return value
}

// MARK: - Strings and numbers

extension String: PostgresEncodable, PostgresDecodable {
    // Unspecified lets the server infer the type from context (text, varchar, date, enum…).
    public static var postgresType: PostgresType { .unspecified }
    public var postgresBind: PostgresBind { PostgresBind(text: self, type: .unspecified) }
    public static var postgresExpectation: String { "String" }
    public static func decode(postgresText text: Substring) -> String? { String(text) }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> String? { String(decoding: utf8, as: UTF8.self) }
    /// Text types send their text; `jsonb` sends a version byte (1) and then its text.
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> String? {
        switch type {
        case .text, .varchar, .bpchar, .name,
             .unknown, .json:
            return String(decoding: bytes, as: UTF8.self)
        case .jsonb:
            guard bytes.first == 1 else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes.dropFirst()), as: UTF8.self)
        default:
            return nil
        }
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresBind: PostgresBind { PostgresBind(text: String(self), type: .int8) }
    public static var postgresExpectation: String { "Int64" }
    public static func decode(postgresText text: Substring) -> Int64? { Int64(text) }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Int64? { parseDecimal(utf8) }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Int64? {
        binaryInteger(bytes, type: type).flatMap { Int64(exactly: $0) }
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int8 }
    public var postgresBind: PostgresBind { PostgresBind(text: String(self), type: .int8) }
    public static var postgresExpectation: String { "Int" }
    public static func decode(postgresText text: Substring) -> Int? { Int(text) }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Int? { parseDecimal(utf8) }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Int? {
        binaryInteger(bytes, type: type).flatMap { Int(exactly: $0) }
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .int4 }
    public var postgresBind: PostgresBind { PostgresBind(text: String(self), type: .int4) }
    public static var postgresExpectation: String { "Int32" }
    public static func decode(postgresText text: Substring) -> Int32? { Int32(text) }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Int32? { parseDecimal(utf8) }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Int32? {
        binaryInteger(bytes, type: type).flatMap { Int32(exactly: $0) }
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .float8 }
    public var postgresBind: PostgresBind { PostgresBind(text: "\(self)", type: .float8) }
    public static var postgresExpectation: String { "Double" }
    public static func decode(postgresText text: Substring) -> Double? {
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(text)
        }
    }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Double? {
        guard let base = UnsafeRawPointer(bytes.baseAddress) else { return nil }
        switch (type, bytes.count) {
        case (.float8, 8): return Double(bitPattern: UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)))
        case (.float4, 4):
            // Through the float's shortest text, as PostgreSQL prints a float4 (0.1, not
            // 0.100000001490116), so both formats give the same Double.
            let float = Float(bitPattern: UInt32(bigEndian: base.loadUnaligned(as: UInt32.self)))
            return float.isFinite ? Double(float.description) : Double(float)
        default: return nil
        }
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .bool }
    public var postgresBind: PostgresBind { PostgresBind(text: self ? "t" : "f", type: .bool) }
    public static var postgresExpectation: String { "Bool" }
    public static func decode(postgresText text: Substring) -> Bool? {
        switch text {
        case "t", "true": return true
        case "f", "false": return false
        default: return nil
        }
    }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Bool? {
        if utf8.count == 1 { return utf8[0] == UInt8(ascii: "t") ? true : utf8[0] == UInt8(ascii: "f") ? false : nil }
        return decode(postgresText: Substring(String(decoding: utf8, as: UTF8.self)))
    }
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Bool? {
        guard type == .bool, bytes.count == 1, bytes[0] <= 1 else { return nil }
        return bytes[0] == 1
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .uuid }
    public var postgresBind: PostgresBind { PostgresBind(text: lowercasedString, type: .uuid) }

    public static var postgresExpectation: String { "UUID" }

    /// PostgreSQL prints a uuid as 36 lower-case hex digits and hyphens; parsed directly
    /// (`UUIDText`), not through Foundation's `sscanf`.
    public static func decode(postgresText text: Substring) -> UUID? {
        var copy = text
        return copy.withUTF8 { UUID(hyphenatedUTF8: $0) } ?? UUID(uuidString: String(text))
    }

    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> UUID? {
        UUID(hyphenatedUTF8: utf8) ?? UUID(uuidString: String(decoding: utf8, as: UTF8.self))
    }

    /// A `uuid` column in binary: its sixteen bytes.
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> UUID? {
        guard type == .uuid, bytes.count == 16 else { return nil }
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}

// MARK: - Bytes

/// Binary data for `bytea` columns.
public struct PostgresBytes: PostgresEncodable, PostgresDecodable, Hashable, Sendable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public static var postgresType: PostgresType { .bytea }
    public var postgresBind: PostgresBind { PostgresBind(binary: bytes, type: .bytea) }
    public static var postgresExpectation: String { "bytes" }

    /// Decodes the `\x`-prefixed hex text format.
    public static func decode(postgresText text: Substring) -> PostgresBytes? {
        var copy = text
        return copy.withUTF8 { decodeHex($0) }
    }

    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> PostgresBytes? { decodeHex(utf8) }

    /// A `bytea` column in binary: the bytes themselves.
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> PostgresBytes? {
        type == .bytea ? PostgresBytes(Array(bytes)) : nil
    }

    static func decodeHex(_ utf8: UnsafeBufferPointer<UInt8>) -> PostgresBytes? {
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            return nil
        }
        var valid = true
        let out = Hex.values.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: (utf8.count - 2) / 2) { buffer, initialized in
                var invalid: UInt8 = 0
                var index = 2, at = 0
                while index < utf8.count {
                    let high = table[Int(utf8[index])], low = table[Int(utf8[index + 1])]
                    invalid |= high | low
                    buffer[at] = high &<< 4 | low
                    at += 1
                    index += 2
                }
                valid = invalid & 0xF0 == 0
                initialized = at
            }
        }
        return valid ? PostgresBytes(out) : nil
    }
}

// MARK: - Time

extension Date: PostgresEncodable, PostgresDecodable {
    public static var postgresType: PostgresType { .timestamptz }
    public var postgresBind: PostgresBind { PostgresBind(text: PostgresTimestamp.format(self), type: .timestamptz) }
    public static var postgresExpectation: String { "Date (timestamptz)" }
    public static func decode(postgresText text: Substring) -> Date? {
        var copy = text
        return copy.withUTF8 { PostgresTimestamp.parse($0) }
    }
    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> Date? { PostgresTimestamp.parse(utf8) }

    /// A `timestamptz` (or `timestamp`) column in binary: microseconds since
    /// 2000-01-01 00:00:00 UTC, giving the same `Date` as the text. `infinity` and
    /// `-infinity` are refused; instants before 1 AD (which the text reading refuses) are read.
    public static func decode(postgresBinary bytes: UnsafeBufferPointer<UInt8>, type: PostgresType) -> Date? {
        guard type == .timestamptz || type == .timestamp, bytes.count == 8,
              let base = UnsafeRawPointer(bytes.baseAddress) else { return nil }
        let micros = Int64(bitPattern: UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)))
        guard micros != .max, micros != .min else { return nil }
        let (quotient, remainder) = micros.quotientAndRemainder(dividingBy: 1_000_000)
        let (seconds, fraction) = remainder < 0 ? (quotient - 1, remainder + 1_000_000) : (quotient, remainder)
        return Date(timeIntervalSince1970: TimeInterval(seconds + 946_684_800) + TimeInterval(fraction) / 1_000_000)
    }
}

/// Conversions for `timestamptz` in the ISO text format (the connection sets
/// `DateStyle=ISO` and `TimeZone=UTC`).
enum PostgresTimestamp {
    static func format(_ date: Date) -> String {
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int64((micros / 1_000_000).rounded(.down))
        var fraction = Int64(micros) - seconds * 1_000_000
        if fraction < 0 { fraction += 1_000_000; seconds -= 1 }
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let fractionText = String(fraction)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - fractionText.count) + fractionText + "Z"
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]` (also accepts a `T` separator).
    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> Date? {
        guard b.count >= 19 else { return nil }
        func number(_ from: Int, _ length: Int) -> Int? {
            guard from + length <= b.count else { return nil }
            var value = 0
            for i in from..<(from + length) {
                let c = b[i]
                guard c >= 48, c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
            }
            return value
        }
        guard let year = number(0, 4), b[4] == 45, let month = number(5, 2), b[7] == 45, let day = number(8, 2),
              b[10] == 32 || b[10] == 84, let hour = number(11, 2), b[13] == 58, let minute = number(14, 2),
              b[16] == 58, let second = number(17, 2)
        else { return nil }
        var index = 19
        var micros = 0
        if index < b.count, b[index] == 46 {
            index += 1
            var digits = 0
            while index < b.count, b[index] >= 48, b[index] <= 57 {
                if digits < 6 { micros = micros * 10 + Int(b[index] - 48) }
                digits += 1
                index += 1
            }
            if digits < 6 { for _ in digits..<6 { micros *= 10 } }
        }
        var offsetSeconds = 0
        if index < b.count {
            let sign: Int
            switch b[index] {
            case 43: sign = 1
            case 45: sign = -1
            case 90: sign = 0
            default: return nil
            }
            if sign != 0 {
                guard let oh = number(index + 1, 2) else { return nil }
                var om = 0
                var os = 0
                var end = index + 3
                if end < b.count, b[end] == 58 {
                    guard let minutes = number(end + 1, 2) else { return nil }
                    om = minutes
                    end += 3
                    if end < b.count, b[end] == 58 {
                        guard let seconds = number(end + 1, 2) else { return nil }
                        os = seconds
                        end += 3
                    }
                }
                offsetSeconds = sign * (oh * 3600 + om * 60 + os)
                index = end
            } else {
                index += 1
            }
        }
        // Nothing may follow the offset (PostgreSQL writes " BC" after years before 1 AD).
        guard index == b.count else { return nil }
        guard (1...12).contains(month) else { return nil }
        let epoch = CivilDays.days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
        return Date(timeIntervalSince1970: TimeInterval(epoch - offsetSeconds) + TimeInterval(micros) / 1_000_000)
    }
}

// MARK: - Arrays (one dimension)

extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public static var postgresType: PostgresType { Element.postgresArrayType }

    /// Sent in PostgreSQL's binary array format (one dimension, no NULLs): each element's
    /// bytes with its length, so neither side prints or parses text (the ledger's batches
    /// send arrays of thousands of ids and amounts).
    public var postgresBind: PostgresBind {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20 + count * (4 + Element.binarySizeHint))
        func int32(_ value: Int32) { Swift.withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
        int32(isEmpty ? 0 : 1)                              // dimensions
        int32(0)                                            // no NULLs
        int32(Int32(bitPattern: Element.postgresElementType.rawValue))
        if !isEmpty {
            int32(Int32(count))                             // length of the dimension
            int32(1)                                        // lower bound
        }
        for element in self {
            let lengthAt = bytes.count
            int32(0)
            element.appendPostgresBinary(to: &bytes)
            let length = Int32(bytes.count - lengthAt - 4).bigEndian
            Swift.withUnsafeBytes(of: length) { raw in
                for offset in 0..<4 { bytes[lengthAt + offset] = raw[offset] }
            }
        }
        return PostgresBind(binary: bytes, type: Element.postgresArrayType)
    }
}

extension Array: PostgresDecodable where Element: PostgresDecodable {
    public static var postgresExpectation: String { "[\(Element.postgresExpectation)]" }
    public static func decode(postgresText text: Substring) -> [Element]? {
        var copy = text
        return copy.withUTF8 { decode(postgresUTF8: $0) }
    }

    public static func decode(postgresUTF8 utf8: UnsafeBufferPointer<UInt8>) -> [Element]? {
        guard let items = PostgresArrayLiteral.parse(utf8) else { return nil }
        var out: [Element] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard var item, let value = item.withUTF8({ Element.decode(postgresUTF8: $0) }) else { return nil }
            out.append(value)
        }
        return out
    }
}

/// Element types that can be sent inside a one-dimensional array bind.
public protocol PostgresArrayElement: Sendable {
    static var postgresArrayType: PostgresType { get }
    /// The element's own type (the array's element OID in the binary format).
    static var postgresElementType: PostgresType { get }
    /// About how many bytes one element takes in the binary format.
    static var binarySizeHint: Int { get }
    /// Appends the element's value in PostgreSQL's binary format for its type.
    func appendPostgresBinary(to bytes: inout [UInt8])
}

extension String: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .textArray }
    public static var postgresElementType: PostgresType { .text }
    public static var binarySizeHint: Int { 16 }
    public func appendPostgresBinary(to bytes: inout [UInt8]) { bytes.append(contentsOf: utf8) }
}

extension Int64: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .int8Array }
    public static var postgresElementType: PostgresType { .int8 }
    public static var binarySizeHint: Int { 8 }
    public func appendPostgresBinary(to bytes: inout [UInt8]) { withUnsafeBytes(of: bigEndian) { bytes.append(contentsOf: $0) } }
}

extension UUID: PostgresArrayElement {
    public static var postgresArrayType: PostgresType { .uuidArray }
    public static var postgresElementType: PostgresType { .uuid }
    public static var binarySizeHint: Int { 16 }
    public func appendPostgresBinary(to bytes: inout [UInt8]) { withUnsafeBytes(of: uuid) { bytes.append(contentsOf: $0) } }
}

enum PostgresArrayLiteral {
    /// Parses `{a,"b c",NULL}` into its items (`nil` for NULL).
    static func parse(_ text: Substring) -> [String?]? {
        var copy = text
        return copy.withUTF8 { parse($0) }
    }

    /// The same over UTF-8 bytes: quotes, backslashes and commas are ASCII, so items are
    /// cut out of the bytes without looking at characters.
    static func parse(_ utf8: UnsafeBufferPointer<UInt8>) -> [String?]? {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), comma = UInt8(ascii: ",")
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "{"), utf8[utf8.count - 1] == UInt8(ascii: "}") else { return nil }
        var items: [String?] = []
        var index = 1
        let end = utf8.count - 1
        if index == end { return [] }
        while index < end {
            if utf8[index] == quote {
                var value: [UInt8] = []
                index += 1
                while index < end, utf8[index] != quote {
                    if utf8[index] == backslash, index + 1 < end { index += 1 }
                    value.append(utf8[index])
                    index += 1
                }
                guard index < end else { return nil }  // no closing quote
                index += 1
                items.append(String(decoding: value, as: UTF8.self))
            } else {
                let start = index
                while index < end, utf8[index] != comma { index += 1 }
                let value = UnsafeBufferPointer(rebasing: utf8[start..<index])
                items.append(value.elementsEqual("NULL".utf8) ? nil : String(decoding: value, as: UTF8.self))
            }
            if index < end {
                guard utf8[index] == comma else { return nil }
                index += 1
            }
        }
        return items
    }
}
