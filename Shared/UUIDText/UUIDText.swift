import Foundation

// Ids and hexadecimal digits as text, without Foundation's `sscanf` (`UUID(uuidString:)`) and `sprintf`
// (`uuidString`), which show up in profiles of bulk work. Shared by RPC (which re-exports
// it) and Postgres, so that both read and write ids the same way.

/// Hexadecimal digits.
public enum Hex {
    /// The value of one hexadecimal digit (either case), or nil.
    @inlinable
    public static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c &- UInt8(ascii: "A") &+ 10
        default: nil
        }
    }

    /// Each byte's value as a hexadecimal digit (either case), 0xFF for any other byte:
    /// one load per digit in bulk decoding.
    public static let values: [UInt8] = (0...255).map { value(UInt8($0)) ?? 0xFF }

    /// Bytes as lower-case hexadecimal text.
    public static func encode(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (index, byte) in bytes.enumerated() {
                out[2 * index] = lowerDigit(byte &>> 4)
                out[2 * index + 1] = lowerDigit(byte & 0x0f)
            }
            return bytes.count * 2
        }
    }

    /// Hexadecimal text (either case) as bytes; nil for an odd length or a non-digit.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        for index in stride(from: 0, to: chars.count, by: 2) {
            let high = values[Int(chars[index])], low = values[Int(chars[index + 1])]
            guard high | low < 0x10 else { return nil }
            out.append(high &<< 4 | low)
        }
        return out
    }

    /// The lower-case digit for a value 0–15.
    @inlinable
    public static func lowerDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") &+ value : UInt8(ascii: "a") &+ (value &- 10)
    }
}

extension UUID {
    /// Parses the 36-character hyphenated form (either case) directly: Foundation's
    /// `UUID(uuidString:)` goes through `sscanf`, which shows up in profiles of bulk work.
    public init?(hyphenated text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self.parseHyphenated($0) }) else { return nil }
        self.init(uuid: parsed)
    }

    /// The same, from UTF-8 bytes (e.g. a uuid column's text from PostgreSQL).
    public init?(hyphenatedUTF8 utf8: UnsafeBufferPointer<UInt8>) {
        guard let parsed = Self.parseHyphenated(utf8) else { return nil }
        self.init(uuid: parsed)
    }

    private static func parseHyphenated(_ utf8: UnsafeBufferPointer<UInt8>) -> uuid_t? {
        guard utf8.count == 36 else { return nil }
        var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var at = 0
        let complete = Hex.values.withUnsafeBufferPointer { table in
            withUnsafeMutableBytes(of: &value) { out -> Bool in
                var invalid: UInt8 = 0
                for index in 0..<16 {
                    if at == 8 || at == 13 || at == 18 || at == 23 {
                        if utf8[at] != UInt8(ascii: "-") { return false }
                        at += 1
                    }
                    let high = table[Int(utf8[at])], low = table[Int(utf8[at + 1])]
                    invalid |= high | low
                    out[index] = high &<< 4 | low
                    at += 2
                }
                return invalid & 0xF0 == 0
            }
        }
        return complete ? value : nil
    }

    /// The lower-case hyphenated form, built directly (Foundation's `uuidString` goes
    /// through `sprintf`, which shows up in profiles of bulk work).
    public var lowercasedString: String {
        withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { out in
                var at = 0
                for index in 0..<16 {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        out[at] = UInt8(ascii: "-")
                        at += 1
                    }
                    out[at] = Hex.lowerDigit(bytes[index] &>> 4)
                    out[at + 1] = Hex.lowerDigit(bytes[index] & 0x0f)
                    at += 2
                }
                return at
            }
        }
    }

    /// A time-ordered (version 7, RFC 9562) UUID: the Unix time in milliseconds, then
    /// random bits. Ids made one after another sort one after another, so a table keyed by
    /// them grows at the end of its index instead of at random places in it.
    public static func timeOrdered(now: Date = Date()) -> UUID {
        var bytes = random().uuid
        let millis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        withUnsafeMutableBytes(of: &bytes) { raw in
            for index in 0..<6 { raw[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - UInt64(index)))) }
            raw[6] = (raw[6] & 0x0f) | 0x70
        }
        return UUID(uuid: bytes)
    }

    /// A random (version 4) UUID from the OS's random generator without opening a file
    /// per call.
    public static func random() -> UUID {
        var generator = SystemRandomNumberGenerator()
        var bytes = (generator.next() as UInt64, generator.next() as UInt64)
        return withUnsafeMutableBytes(of: &bytes) { raw -> UUID in
            raw[6] = (raw[6] & 0x0f) | 0x40
            raw[8] = (raw[8] & 0x3f) | 0x80
            return UUID(uuid: (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                               raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]))
        }
    }
}
