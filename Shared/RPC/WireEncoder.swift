import Foundation
import SwiftProtobuf

/// Protobuf binary encoding in one pass over the message.
///
/// swift-protobuf's encoder writes each nested message's length before its contents, so
/// it first computes that length by walking the nested message, at every level: a reply
/// of many entries, each with nested messages, is walked two or three times over. This
/// encoder walks it once: it writes a nested message's contents after a one-byte
/// placeholder and then fills in the length, moving the contents along when the length
/// needs more than one byte. The bytes are the same as `serializedBytes()` gives (the
/// tests compare them), so any protobuf library reads them. (Proto2's MessageSet wire
/// format is not written; the contracts are proto3 and cannot use it.)
public struct WireEncoder: Visitor {
    private var bytes: [UInt8] = []

    /// The message's binary encoding.
    public static func encode(_ message: some Message) throws -> Data {
        var encoder = WireEncoder()
        encoder.bytes.reserveCapacity(256)
        try message.traverse(visitor: &encoder)
        return Data(encoder.bytes)
    }

    // MARK: Wire primitives

    private enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    private mutating func tag(_ fieldNumber: Int, _ type: WireType) {
        varint(UInt64(fieldNumber) << 3 | type.rawValue)
    }

    private mutating func varint(_ value: UInt64) {
        Self.appendVarint(value, to: &bytes)
    }

    /// Appends a base-128 varint (for the RPC layer's other hand-written protobuf).
    public static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Negative values take ten bytes, as protobuf specifies for int32, int64 and enums.
    private mutating func signedVarint(_ value: Int64) {
        varint(UInt64(bitPattern: value))
    }

    private mutating func fixed32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private mutating func fixed64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func zigZag(_ value: Int32) -> UInt64 { UInt64(UInt32(bitPattern: (value << 1) ^ (value >> 31))) }
    private static func zigZag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }

    /// Writes `body` as a length-delimited value: a placeholder byte for the length,
    /// the body, then the length (moving the body along if it needs more bytes).
    private mutating func delimited(_ body: (inout WireEncoder) throws -> Void) rethrows {
        let lengthAt = bytes.count
        bytes.append(0)
        try body(&self)
        Self.fillLength(&bytes, at: lengthAt)
    }

    /// Fills in the length of what follows the one-byte placeholder at `lengthAt`,
    /// moving it along when the length needs more bytes.
    static func fillLength(_ bytes: inout [UInt8], at lengthAt: Int) {
        let length = bytes.count - lengthAt - 1
        if length < 0x80 {
            bytes[lengthAt] = UInt8(length)
            return
        }
        var size = 1
        while length >> (7 * size) != 0 { size += 1 }
        bytes.insert(contentsOf: repeatElement(0, count: size - 1), at: lengthAt + 1)
        var v = UInt64(length)
        for index in lengthAt..<(lengthAt + size - 1) {
            bytes[index] = UInt8(truncatingIfNeeded: v) | 0x80
            v >>= 7
        }
        bytes[lengthAt + size - 1] = UInt8(v)
    }

    private mutating func lengthDelimited(_ fieldNumber: Int, _ content: some Collection<UInt8>) {
        tag(fieldNumber, .lengthDelimited)
        varint(UInt64(content.count))
        bytes.append(contentsOf: content)
    }

    // MARK: Singular fields

    public mutating func visitSingularFloatField(value: Float, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed32)
        fixed32(value.bitPattern)
    }

    public mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed64)
        fixed64(value.bitPattern)
    }

    public mutating func visitSingularInt32Field(value: Int32, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        signedVarint(Int64(value))
    }

    public mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        signedVarint(value)
    }

    public mutating func visitSingularUInt32Field(value: UInt32, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        varint(UInt64(value))
    }

    public mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        varint(value)
    }

    public mutating func visitSingularSInt32Field(value: Int32, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        varint(Self.zigZag(value))
    }

    public mutating func visitSingularSInt64Field(value: Int64, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        varint(Self.zigZag(value))
    }

    public mutating func visitSingularFixed32Field(value: UInt32, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed32)
        fixed32(value)
    }

    public mutating func visitSingularFixed64Field(value: UInt64, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed64)
        fixed64(value)
    }

    public mutating func visitSingularSFixed32Field(value: Int32, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed32)
        fixed32(UInt32(bitPattern: value))
    }

    public mutating func visitSingularSFixed64Field(value: Int64, fieldNumber: Int) throws {
        tag(fieldNumber, .fixed64)
        fixed64(UInt64(bitPattern: value))
    }

    public mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        bytes.append(value ? 1 : 0)
    }

    public mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {
        var text = value
        text.withUTF8 { lengthDelimited(fieldNumber, $0) }
    }

    public mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {
        lengthDelimited(fieldNumber, value)
    }

    public mutating func visitSingularEnumField<E: Enum>(value: E, fieldNumber: Int) throws {
        tag(fieldNumber, .varint)
        signedVarint(Int64(value.rawValue))
    }

    public mutating func visitSingularMessageField<M: Message>(value: M, fieldNumber: Int) throws {
        tag(fieldNumber, .lengthDelimited)
        try delimited { try value.traverse(visitor: &$0) }
    }

    public mutating func visitSingularGroupField<G: Message>(value: G, fieldNumber: Int) throws {
        tag(fieldNumber, .startGroup)
        try value.traverse(visitor: &self)
        tag(fieldNumber, .endGroup)
    }

    // MARK: Repeated fields (unpacked: a tag per element)

    public mutating func visitRepeatedFloatField(value: [Float], fieldNumber: Int) throws {
        for v in value { try visitSingularFloatField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedDoubleField(value: [Double], fieldNumber: Int) throws {
        for v in value { try visitSingularDoubleField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedInt32Field(value: [Int32], fieldNumber: Int) throws {
        for v in value { try visitSingularInt32Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedInt64Field(value: [Int64], fieldNumber: Int) throws {
        for v in value { try visitSingularInt64Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedUInt32Field(value: [UInt32], fieldNumber: Int) throws {
        for v in value { try visitSingularUInt32Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedUInt64Field(value: [UInt64], fieldNumber: Int) throws {
        for v in value { try visitSingularUInt64Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedSInt32Field(value: [Int32], fieldNumber: Int) throws {
        for v in value { try visitSingularSInt32Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedSInt64Field(value: [Int64], fieldNumber: Int) throws {
        for v in value { try visitSingularSInt64Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedFixed32Field(value: [UInt32], fieldNumber: Int) throws {
        for v in value { try visitSingularFixed32Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedFixed64Field(value: [UInt64], fieldNumber: Int) throws {
        for v in value { try visitSingularFixed64Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedSFixed32Field(value: [Int32], fieldNumber: Int) throws {
        for v in value { try visitSingularSFixed32Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedSFixed64Field(value: [Int64], fieldNumber: Int) throws {
        for v in value { try visitSingularSFixed64Field(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedBoolField(value: [Bool], fieldNumber: Int) throws {
        for v in value { try visitSingularBoolField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedStringField(value: [String], fieldNumber: Int) throws {
        for v in value { try visitSingularStringField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedBytesField(value: [Data], fieldNumber: Int) throws {
        for v in value { try visitSingularBytesField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedEnumField<E: Enum>(value: [E], fieldNumber: Int) throws {
        for v in value { try visitSingularEnumField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedMessageField<M: Message>(value: [M], fieldNumber: Int) throws {
        for v in value { try visitSingularMessageField(value: v, fieldNumber: fieldNumber) }
    }

    public mutating func visitRepeatedGroupField<G: Message>(value: [G], fieldNumber: Int) throws {
        for v in value { try visitSingularGroupField(value: v, fieldNumber: fieldNumber) }
    }

    // MARK: Packed fields (one length-delimited run of values)

    private mutating func packed<T>(_ values: [T], _ fieldNumber: Int, _ write: (inout WireEncoder, T) -> Void) {
        guard !values.isEmpty else { return }
        tag(fieldNumber, .lengthDelimited)
        delimited { encoder in for v in values { write(&encoder, v) } }
    }

    public mutating func visitPackedFloatField(value: [Float], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed32($1.bitPattern) }
    }

    public mutating func visitPackedDoubleField(value: [Double], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed64($1.bitPattern) }
    }

    public mutating func visitPackedInt32Field(value: [Int32], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.signedVarint(Int64($1)) }
    }

    public mutating func visitPackedInt64Field(value: [Int64], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.signedVarint($1) }
    }

    public mutating func visitPackedUInt32Field(value: [UInt32], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.varint(UInt64($1)) }
    }

    public mutating func visitPackedUInt64Field(value: [UInt64], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.varint($1) }
    }

    public mutating func visitPackedSInt32Field(value: [Int32], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.varint(Self.zigZag($1)) }
    }

    public mutating func visitPackedSInt64Field(value: [Int64], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.varint(Self.zigZag($1)) }
    }

    public mutating func visitPackedFixed32Field(value: [UInt32], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed32($1) }
    }

    public mutating func visitPackedFixed64Field(value: [UInt64], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed64($1) }
    }

    public mutating func visitPackedSFixed32Field(value: [Int32], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed32(UInt32(bitPattern: $1)) }
    }

    public mutating func visitPackedSFixed64Field(value: [Int64], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.fixed64(UInt64(bitPattern: $1)) }
    }

    public mutating func visitPackedBoolField(value: [Bool], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.bytes.append($1 ? 1 : 0) }
    }

    public mutating func visitPackedEnumField<E: Enum>(value: [E], fieldNumber: Int) throws {
        packed(value, fieldNumber) { $0.signedVarint(Int64($1.rawValue)) }
    }

    // MARK: Maps (each entry a message of key = 1, value = 2), unknown and extension fields

    public mutating func visitMapField<KeyType, ValueType: MapValueType>(
        fieldType: _ProtobufMap<KeyType, ValueType>.Type,
        value: _ProtobufMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws {
        for (k, v) in value {
            tag(fieldNumber, .lengthDelimited)
            try delimited { encoder in
                try KeyType.visitSingular(value: k, fieldNumber: 1, with: &encoder)
                try ValueType.visitSingular(value: v, fieldNumber: 2, with: &encoder)
            }
        }
    }

    public mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type,
        value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws where ValueType.RawValue == Int {
        for (k, v) in value {
            tag(fieldNumber, .lengthDelimited)
            try delimited { encoder in
                try KeyType.visitSingular(value: k, fieldNumber: 1, with: &encoder)
                try encoder.visitSingularEnumField(value: v, fieldNumber: 2)
            }
        }
    }

    public mutating func visitMapField<KeyType, ValueType>(
        fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
        value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
        fieldNumber: Int
    ) throws {
        for (k, v) in value {
            tag(fieldNumber, .lengthDelimited)
            try delimited { encoder in
                try KeyType.visitSingular(value: k, fieldNumber: 1, with: &encoder)
                try encoder.visitSingularMessageField(value: v, fieldNumber: 2)
            }
        }
    }

    public mutating func visitUnknown(bytes data: Data) throws {
        bytes.append(contentsOf: data)
    }

    public mutating func visitExtensionFields(fields: ExtensionFieldValueSet, start: Int, end: Int) throws {
        try fields.traverse(visitor: &self, start: start, end: end)
    }
}
