import Foundation
import SwiftProtobuf

/// Writes protobuf fields by hand, for a reply built straight from stored data instead of
/// through generated message objects (a record summary: hundreds of entries, each an object
/// of some twenty fields plus nested ones, built only to be encoded at once).
///
/// It writes what the generated code would: fields in the order the caller gives (which
/// must be field-number order), scalars without presence left out when they hold their
/// default, messages always written once given. Callers keep a test that compares the
/// result with the generated messages' encoding.
public struct ProtoWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    private mutating func tag(_ field: Int, _ wireType: UInt64) {
        varint(UInt64(field) << 3 | wireType)
    }

    private mutating func varint(_ value: UInt64) {
        WireEncoder.appendVarint(value, to: &bytes)
    }

    /// A string field (nothing for "").
    public mutating func string(_ field: Int, _ value: String) {
        guard !value.isEmpty else { return }
        tag(field, 2)
        var value = value
        value.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// A string field from text already known to be valid UTF-8 (nothing for "").
    public mutating func string(_ field: Int, utf8: UnsafeBufferPointer<UInt8>) {
        guard !utf8.isEmpty else { return }
        tag(field, 2)
        varint(UInt64(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// A string field from bytes that should be UTF-8: invalid sequences are replaced, as
    /// `String(decoding:as:)` does (nothing for "").
    public mutating func string(_ field: Int, decoding utf8: [UInt8]) {
        if utf8.allSatisfy({ $0 < 0x80 }) || String(validating: utf8, as: UTF8.self) != nil {
            utf8.withUnsafeBufferPointer { string(field, utf8: $0) }
        } else {
            string(field, String(decoding: utf8, as: UTF8.self))
        }
    }


    /// A timestamp as the contracts carry it (`Timestamp.format`'s text).
    public mutating func timestamp(_ field: Int, _ date: Date) {
        Timestamp.withText(of: date) { string(field, utf8: $0) }
    }

    /// A UUID as the contracts carry it: lower-case text, 36 characters (nothing for nil).
    public mutating func uuid(_ field: Int, _ value: UUID?) {
        guard let value else { return }
        tag(field, 2)
        bytes.append(36)
        Self.appendText(of: value, to: &bytes)
    }

    /// The 36 characters of a UUID's lower-case text.
    public static func appendText(of value: UUID, to bytes: inout [UInt8]) {
        withText(of: value) { bytes.append(contentsOf: $0) }
    }

    /// A UUID's lower-case text (36 characters), on the stack for as long as `body` runs.
    public static func withText<T>(of value: UUID, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        // Eight digits at a time by arithmetic on a word (no table, no loop, no branch):
        // ids are written seven times per entry of a record summary.
        try withUnsafeTemporaryAllocation(byteCount: 36, alignment: 8) { text in
            withUnsafeBytes(of: value.uuid) { raw in
                func word(_ offset: Int) -> UInt64 { hexDigits(raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self).bigEndian) }
                let first = word(0), second = word(4), third = word(8), fourth = word(12)
                let dash = UInt8(ascii: "-")
                text.storeBytes(of: first, toByteOffset: 0, as: UInt64.self)
                text[8] = dash
                // The middle groups are four digits each: a word's two halves, in memory order.
                text.storeBytes(of: firstHalf(second), toByteOffset: 9, as: UInt32.self)
                text[13] = dash
                text.storeBytes(of: secondHalf(second), toByteOffset: 14, as: UInt32.self)
                text[18] = dash
                text.storeBytes(of: firstHalf(third), toByteOffset: 19, as: UInt32.self)
                text[23] = dash
                text.storeBytes(of: secondHalf(third), toByteOffset: 24, as: UInt32.self)
                text.storeBytes(of: fourth, toByteOffset: 28, as: UInt64.self)
            }
            return try body(UnsafeBufferPointer(text.bindMemory(to: UInt8.self)))
        }
    }

    /// The half of a word that comes first in memory, and the half that comes second.
    @inline(__always) static func firstHalf(_ word: UInt64) -> UInt32 {
        #if _endian(little)
        UInt32(truncatingIfNeeded: word)
        #else
        UInt32(truncatingIfNeeded: word >> 32)
        #endif
    }

    @inline(__always) static func secondHalf(_ word: UInt64) -> UInt32 {
        #if _endian(little)
        UInt32(truncatingIfNeeded: word >> 32)
        #else
        UInt32(truncatingIfNeeded: word)
        #endif
    }

    /// The eight lower-case hex digits of `value` (most significant first), as a word whose
    /// bytes in memory are those digits in order, on either byte order.
    @inline(__always) static func hexDigits(_ value: UInt32) -> UInt64 {
        // Spread each nibble into a byte of its own, the first nibble in the top byte.
        var x = UInt64(value)
        x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
        x = (x | x << 8) & 0x00FF_00FF_00FF_00FF
        x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
        // '0'...'9' for 0...9; 10...15 (those that reach 16 when 6 is added) go 0x27 further, to 'a'...'f'.
        let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101
        x = x &+ 0x3030_3030_3030_3030 &+ letters &* 0x27
        return x.bigEndian
    }

    /// int32 and enum fields (nothing for 0; negative values take ten bytes).
    public mutating func int32(_ field: Int, _ value: Int32) {
        guard value != 0 else { return }
        tag(field, 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    public mutating func enumeration(_ field: Int, _ rawValue: Int) {
        int32(field, Int32(truncatingIfNeeded: rawValue))
    }

    public mutating func uint32(_ field: Int, _ value: UInt32) {
        guard value != 0 else { return }
        tag(field, 0)
        varint(UInt64(value))
    }

    /// Nothing for +0.0 (−0.0 is written, as generated code does).
    public mutating func double(_ field: Int, _ value: Double) {
        guard value.bitPattern != 0 else { return }
        tag(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func bool(_ field: Int, _ value: Bool) {
        guard value else { return }
        tag(field, 0)
        bytes.append(1)
    }

    /// A message field, written by `body` (always written, even empty: it is set).
    public mutating func message(_ field: Int, _ body: (inout ProtoWriter) throws -> Void) rethrows {
        tag(field, 2)
        let lengthAt = bytes.count
        bytes.append(0)
        try body(&self)
        WireEncoder.fillLength(&bytes, at: lengthAt)
    }

    /// A message field from a generated message.
    public mutating func message(_ field: Int, _ message: some SwiftProtobuf.Message) throws {
        let encoded = try WireEncoder.encode(message)
        tag(field, 2)
        varint(UInt64(encoded.count))
        bytes.append(contentsOf: encoded)
    }
}
