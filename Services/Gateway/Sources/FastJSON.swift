import Foundation
import RPC
import Synchronization
import SwiftProtobuf

/// Writes a protobuf message in the gateway's JSON mapping (`ProtoJSON.encoding`: proto
/// field names, 64-bit integers as numbers, enums by name, defaults omitted) straight into
/// a byte array, producing the same bytes as swift-protobuf's encoder with those options
/// (tests compare the two), except that map entries are always in key order.
///
/// swift-protobuf's encoder looks up every field name in a dictionary and escapes strings
/// one Unicode scalar at a time; with a record summary of hundreds of entries that was a
/// fifth of the summary route's CPU. Here each message type's names are rendered once
/// (`"name":`, learnt through swift-protobuf's public field-mask API) and strings are
/// copied in runs between the bytes that need escaping.
///
/// Anything this writer does not handle (well-known types with their own JSON form,
/// extensions, groups, maps of enums) makes it hand the whole message to swift-protobuf.
enum FastJSON {
    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws -> [UInt8] {
        if unsupportedTypes.withLock({ $0.contains(ObjectIdentifier(M.self)) }) {
            return try message.jsonUTF8Bytes(options: ProtoJSON.encoding)
        }
        do {
            return try write(message)
        } catch is Unsupported {
            // From now on straight to swift-protobuf for this type.
            unsupportedTypes.withLock { _ = $0.insert(ObjectIdentifier(M.self)) }
            return try message.jsonUTF8Bytes(options: ProtoJSON.encoding)
        }
    }

    /// This writer alone; throws `Unsupported` for what it leaves to swift-protobuf.
    static func write<M: SwiftProtobuf.Message>(_ message: M) throws -> [UInt8] {
        var writer = try Writer(root: M.self)
        try writer.object(message)
        return writer.out
    }

    struct Unsupported: Error {}

    /// A message type's field names, each rendered as `"name":`.
    final class FieldNames: Sendable {
        let type: any SwiftProtobuf.Message.Type
        let byNumber: [Int: [UInt8]]
        /// Every field of the type is in `byNumber` (none numbered beyond the scan).
        let complete: Bool

        init(type: any SwiftProtobuf.Message.Type, byNumber: [Int: [UInt8]], complete: Bool) {
            self.type = type
            self.byNumber = byNumber
            self.complete = complete
        }

        /// A name missing from the table (a field numbered beyond the scan); nil if the
        /// type has no such field.
        func late(_ number: Int) -> [UInt8]? {
            guard let named = type as? any (SwiftProtobuf.Message & _ProtoNameProviding).Type else { return nil }
            return FastJSON.name(of: number, in: named)
        }
    }

    private static let fieldNames = Mutex<[ObjectIdentifier: FieldNames]>([:])
    /// Types found to need swift-protobuf (asked once).
    private static let unsupportedTypes = Mutex<Set<ObjectIdentifier>>([])
    private static let enumTokens = Mutex<[EnumKey: [UInt8]]>([:])

    struct EnumKey: Hashable {
        let type: ObjectIdentifier
        let rawValue: Int
    }

    /// Field numbers scanned when a type's table is built; a field beyond is looked up
    /// when it is met.
    static let scannedFieldNumbers = 512

    static func names(for type: any SwiftProtobuf.Message.Type) throws -> FieldNames {
        let key = ObjectIdentifier(type)
        if let cached = fieldNames.withLock({ $0[key] }) { return cached }
        // Well-known types (Timestamp, Struct, wrappers…) have their own JSON forms.
        guard !type.protoMessageName.hasPrefix("google.protobuf."),
              let named = type as? any (SwiftProtobuf.Message & _ProtoNameProviding).Type
        else {
            unsupportedTypes.withLock { _ = $0.insert(key) }
            throw Unsupported()
        }
        let (byNumber, complete) = scan(named)
        let table = FieldNames(type: type, byNumber: byNumber, complete: complete)
        fieldNames.withLock { $0[key] = table }
        return table
    }

    private static func scan<T: SwiftProtobuf.Message & _ProtoNameProviding>(_ type: T.Type) -> ([Int: [UInt8]], complete: Bool) {
        let count = Google_Protobuf_FieldMask(allFieldsOf: T.self).paths.count
        var table: [Int: [UInt8]] = [:]
        var number = 1
        while table.count < count, number <= scannedFieldNumbers {
            if let name = name(of: number, in: T.self) { table[number] = name }
            number += 1
        }
        return (table, table.count == count)
    }

    fileprivate static func name<T: SwiftProtobuf.Message & _ProtoNameProviding>(of number: Int, in type: T.Type) -> [UInt8]? {
        guard let mask = try? Google_Protobuf_FieldMask(fieldNumbers: [number], of: T.self), let name = mask.paths.first else {
            return nil
        }
        var rendered: [UInt8] = []
        Writer.appendString(name, to: &rendered)
        rendered.append(UInt8(ascii: ":"))
        return rendered
    }

    /// The JSON token for an enum value (`"NAME"`, or the number if the value has no
    /// name), learnt once per value from swift-protobuf: a message of `type` holding only
    /// this value in field `number`, read from its binary form and written as JSON.
    static func enumToken<E: SwiftProtobuf.Enum>(_ value: E, field number: Int, of type: any SwiftProtobuf.Message.Type,
                                                 repeated: Bool) throws -> [UInt8] {
        let key = EnumKey(type: ObjectIdentifier(E.self), rawValue: value.rawValue)
        if let cached = enumTokens.withLock({ $0[key] }) { return cached }
        var binary: [UInt8] = []
        WireEncoder.appendVarint(UInt64(number) << 3, to: &binary)
        WireEncoder.appendVarint(UInt64(bitPattern: Int64(value.rawValue)), to: &binary)
        let json = try learn(type, from: binary)
        // {"name":TOKEN} or {"name":[TOKEN]}
        guard let colon = json.firstIndex(of: UInt8(ascii: ":")), json.last == UInt8(ascii: "}") else { throw Unsupported() }
        var token = Array(json[(colon + 1)..<(json.count - 1)])
        if repeated {
            guard token.first == UInt8(ascii: "["), token.last == UInt8(ascii: "]") else { throw Unsupported() }
            token = Array(token.dropFirst().dropLast())
        }
        guard !token.isEmpty, !token.contains(UInt8(ascii: ",")), token.first != UInt8(ascii: "[") else { throw Unsupported() }
        // Values without a name are numbers a sender chose: bound what they can make us keep.
        enumTokens.withLock { tokens in
            if tokens.count >= 10_000 { tokens.removeAll() }
            tokens[key] = token
        }
        return token
    }

    private static func learn<T: SwiftProtobuf.Message>(_ type: T.Type, from binary: [UInt8]) throws -> [UInt8] {
        guard let message = try? T(serializedBytes: binary) else { throw Unsupported() }
        return try message.jsonUTF8Bytes(options: ProtoJSON.encoding)
    }

    /// The visitor that writes the JSON.
    struct Writer: SwiftProtobuf.Visitor {
        var out: [UInt8] = []
        /// The message being written and its names.
        var names: FieldNames
        /// Whether the next field in this object needs a comma first.
        var comma = false
        /// The next value is a map entry's value: no field name.
        var bareValue = false
        /// Tables and enum tokens already fetched by this writer (saves the lock for
        /// repeated types and values).
        var local: [ObjectIdentifier: FieldNames] = [:]
        var localEnums: [EnumKey: [UInt8]] = [:]

        init(root: any SwiftProtobuf.Message.Type) throws {
            names = try FastJSON.names(for: root)
            out.reserveCapacity(512)
        }

        mutating func table(_ type: any SwiftProtobuf.Message.Type) throws -> FieldNames {
            let key = ObjectIdentifier(type)
            if let found = local[key] { return found }
            let found = try FastJSON.names(for: type)
            local[key] = found
            return found
        }

        /// `{…}` for a message, with its own names.
        mutating func object<M: SwiftProtobuf.Message>(_ message: M) throws {
            let saved = (names, comma)
            names = try table(M.self)
            comma = false
            out.append(UInt8(ascii: "{"))
            try message.traverse(visitor: &self)
            out.append(UInt8(ascii: "}"))
            (names, comma) = saved
        }

        mutating func startField(_ number: Int) throws {
            if bareValue {
                bareValue = false
                return
            }
            if comma { out.append(UInt8(ascii: ",")) }
            comma = true
            if let name = names.byNumber[number] {
                out.append(contentsOf: name)
            } else if let name = names.late(number) {
                out.append(contentsOf: name)
            } else {
                throw Unsupported()
            }
        }

        mutating func array<T>(_ values: [T], _ number: Int, _ each: (inout Writer, T) throws -> Void) throws {
            try startField(number)
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try each(&self, value)
            }
            out.append(UInt8(ascii: "]"))
        }

        // MARK: Values

        mutating func int(_ value: Int64) {
            if value < 0 {
                out.append(UInt8(ascii: "-"))
                uint(value.magnitude)
            } else {
                uint(UInt64(value))
            }
        }

        mutating func uint(_ value: UInt64) {
            if value < 10 {
                out.append(UInt8(ascii: "0") &+ UInt8(value))
                return
            }
            var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes of room
            withUnsafeMutableBytes(of: &digits) { buffer in
                var v = value
                var at = buffer.count
                while v > 0 {
                    at -= 1
                    buffer[at] = UInt8(ascii: "0") &+ UInt8(v % 10)
                    v /= 10
                }
                out.append(contentsOf: buffer[at...])
            }
        }

        mutating func double(_ value: Double) {
            if value.isNaN {
                out.append(contentsOf: #""NaN""#.utf8)
            } else if value.isInfinite {
                out.append(contentsOf: (value < 0 ? #""-Infinity""# : #""Infinity""#).utf8)
            } else {
                out.append(contentsOf: value.debugDescription.utf8)
            }
        }

        mutating func float(_ value: Float) {
            if value.isNaN {
                out.append(contentsOf: #""NaN""#.utf8)
            } else if value.isInfinite {
                out.append(contentsOf: (value < 0 ? #""-Infinity""# : #""Infinity""#).utf8)
            } else {
                out.append(contentsOf: value.debugDescription.utf8)
            }
        }

        mutating func bool(_ value: Bool) {
            out.append(contentsOf: (value ? "true" : "false").utf8)
        }

        mutating func string(_ value: String) {
            Self.appendString(value, to: &out)
        }

        mutating func bytes(_ value: Data) {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: value.base64EncodedString().utf8)
            out.append(UInt8(ascii: "\""))
        }

        static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

        /// A quoted JSON string: `"` and `\` escaped, the C0 controls, DEL and the C1
        /// controls (U+0080–U+009F) as escapes, the rest copied as it is.
        static func appendString(_ value: String, to out: inout [UInt8]) {
            var value = value
            value.withUTF8 { appendString(utf8: $0, to: &out) }
        }

        /// `appendString` for text already known to be valid UTF-8.
        static func appendString(utf8: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
            out.append(UInt8(ascii: "\""))
            var runStart = 0
            var index = 0
            let count = utf8.count
            while index < count {
                // Eight bytes at a time while none of them needs a look (most text).
                if let base = UnsafeRawPointer(utf8.baseAddress) {
                    while index + 8 <= count,
                          !mayNeedEscape(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))) {
                        index += 8
                    }
                    guard index < count else { break }
                }
                let byte = utf8[index]
                let escape: Int  // bytes consumed by the escape, 0 for none
                let code: UInt8
                if byte >= 0x20 && byte != 0x22 && byte != 0x5C && byte < 0x7F {
                    index += 1
                    continue
                } else if byte < 0x80 {
                    escape = 1
                    code = byte
                } else if byte == 0xC2, index + 1 < count, utf8[index + 1] < 0xA0 {
                    escape = 2
                    code = utf8[index + 1]
                } else {
                    index += 1
                    continue
                }
                if runStart < index { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index])) }
                switch code {
                case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                default:
                    out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                            upperHex[Int(code >> 4)], upperHex[Int(code & 0x0F)]])
                }
                index += escape
                runStart = index
            }
            if runStart < count { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<count])) }
            out.append(UInt8(ascii: "\""))
        }

        /// Whether any of the eight bytes in `word` is one `appendString` must look at: a
        /// control character (below 0x20), `"`, `\`, DEL or any byte of a multi-byte
        /// character (0x80 and up). Never false when one is there (it may be true when
        /// none is, and the bytes are then looked at one by one).
        @inline(__always)
        static func mayNeedEscape(_ word: UInt64) -> Bool {
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            @inline(__always) func hasZeroByte(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
            let below0x20 = (word &- ones &* 0x20) & ~word & highs
            let special = hasZeroByte(word ^ (ones &* 0x22)) | hasZeroByte(word ^ (ones &* 0x5C)) | hasZeroByte(word ^ (ones &* 0x7F))
            return (word & highs) | below0x20 | special != 0
        }

        // MARK: Visitor: singular fields

        mutating func visitUnknown(bytes: Data) throws {}

        mutating func visitSingularFloatField(value: Float, fieldNumber: Int) throws {
            try startField(fieldNumber)
            float(value)
        }

        mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {
            try startField(fieldNumber)
            double(value)
        }

        mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {
            try startField(fieldNumber)
            int(value)
        }

        mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {
            try startField(fieldNumber)
            uint(value)
        }

        mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {
            try startField(fieldNumber)
            bool(value)
        }

        mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {
            try startField(fieldNumber)
            string(value)
        }

        mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {
            try startField(fieldNumber)
            bytes(value)
        }

        mutating func enumToken<E: SwiftProtobuf.Enum>(_ value: E, field: Int, repeated: Bool) throws -> [UInt8] {
            let key = EnumKey(type: ObjectIdentifier(E.self), rawValue: value.rawValue)
            if let found = localEnums[key] { return found }
            let found = try FastJSON.enumToken(value, field: field, of: names.type, repeated: repeated)
            localEnums[key] = found
            return found
        }

        mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {
            let token = try enumToken(value, field: fieldNumber, repeated: false)
            try startField(fieldNumber)
            out.append(contentsOf: token)
        }

        mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
            try startField(fieldNumber)
            try object(value)
        }

        mutating func visitSingularGroupField<G: SwiftProtobuf.Message>(value: G, fieldNumber: Int) throws {
            throw Unsupported()
        }

        // MARK: Visitor: repeated fields (packed ones arrive here too)

        mutating func visitRepeatedFloatField(value: [Float], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.float($1) }
        }

        mutating func visitRepeatedDoubleField(value: [Double], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.double($1) }
        }

        mutating func visitRepeatedInt32Field(value: [Int32], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.int(Int64($1)) }
        }

        mutating func visitRepeatedInt64Field(value: [Int64], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.int($1) }
        }

        mutating func visitRepeatedUInt32Field(value: [UInt32], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.uint(UInt64($1)) }
        }

        mutating func visitRepeatedUInt64Field(value: [UInt64], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.uint($1) }
        }

        // The other integer encodings are the same numbers in JSON (swift-protobuf's
        // defaults would call the singular methods, one field name per element).
        mutating func visitRepeatedSInt32Field(value: [Int32], fieldNumber: Int) throws { try visitRepeatedInt32Field(value: value, fieldNumber: fieldNumber) }
        mutating func visitRepeatedSInt64Field(value: [Int64], fieldNumber: Int) throws { try visitRepeatedInt64Field(value: value, fieldNumber: fieldNumber) }
        mutating func visitRepeatedSFixed32Field(value: [Int32], fieldNumber: Int) throws { try visitRepeatedInt32Field(value: value, fieldNumber: fieldNumber) }
        mutating func visitRepeatedSFixed64Field(value: [Int64], fieldNumber: Int) throws { try visitRepeatedInt64Field(value: value, fieldNumber: fieldNumber) }
        mutating func visitRepeatedFixed32Field(value: [UInt32], fieldNumber: Int) throws { try visitRepeatedUInt32Field(value: value, fieldNumber: fieldNumber) }
        mutating func visitRepeatedFixed64Field(value: [UInt64], fieldNumber: Int) throws { try visitRepeatedUInt64Field(value: value, fieldNumber: fieldNumber) }

        mutating func visitRepeatedBoolField(value: [Bool], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.bool($1) }
        }

        mutating func visitRepeatedStringField(value: [String], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.string($1) }
        }

        mutating func visitRepeatedBytesField(value: [Data], fieldNumber: Int) throws {
            try array(value, fieldNumber) { $0.bytes($1) }
        }

        mutating func visitRepeatedEnumField<E: SwiftProtobuf.Enum>(value: [E], fieldNumber: Int) throws {
            var tokens: [[UInt8]] = []
            tokens.reserveCapacity(value.count)
            for item in value { tokens.append(try enumToken(item, field: fieldNumber, repeated: true)) }
            try array(tokens, fieldNumber) { $0.out.append(contentsOf: $1) }
        }

        mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws {
            try array(value, fieldNumber) { try $0.object($1) }
        }

        mutating func visitRepeatedGroupField<G: SwiftProtobuf.Message>(value: [G], fieldNumber: Int) throws {
            throw Unsupported()
        }

        // MARK: Visitor: maps (entries in key order)

        mutating func map<K: MapKeyType, V>(_ value: [K.BaseType: V], _ key: K.Type, _ number: Int,
                                            _ each: (inout Writer, V) throws -> Void) throws {
            try startField(number)
            out.append(UInt8(ascii: "{"))
            let saved = comma
            comma = false
            for (index, entry) in value.sorted(by: { K._lessThan(lhs: $0.key, rhs: $1.key) }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                var keyWriter = MapKeyWriter()
                try K.visitSingular(value: entry.key, fieldNumber: 1, with: &keyWriter)
                guard let text = keyWriter.text else { throw Unsupported() }
                Self.appendString(text, to: &out)
                out.append(UInt8(ascii: ":"))
                bareValue = true
                try each(&self, entry.value)
                bareValue = false
            }
            comma = saved
            out.append(UInt8(ascii: "}"))
        }

        mutating func visitMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type,
            value: _ProtobufMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws {
            try map(value, KeyType.self, fieldNumber) { writer, item in
                try ValueType.visitSingular(value: item, fieldNumber: 2, with: &writer)
            }
        }

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type,
            value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws where ValueType.RawValue == Int {
            throw Unsupported()
        }

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
            value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws {
            try map(value, KeyType.self, fieldNumber) { writer, item in
                writer.bareValue = false  // an object writes no name of its own
                try writer.object(item)
            }
        }

        mutating func visitExtensionFields(fields: ExtensionFieldValueSet, start: Int, end: Int) throws {
            throw Unsupported()  // proto3 messages have none
        }
    }

    /// Catches a map key as the text JSON uses for it (keys are always strings).
    struct MapKeyWriter: SwiftProtobuf.Visitor {
        var text: String?

        mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws { text = String(value) }
        mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws { text = String(value) }
        mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws { text = value ? "true" : "false" }
        mutating func visitSingularStringField(value: String, fieldNumber: Int) throws { text = value }
        mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws { throw Unsupported() }
        mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws { throw Unsupported() }
        mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws { throw Unsupported() }
        mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws { throw Unsupported() }
        mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws { throw Unsupported() }
        mutating func visitUnknown(bytes: Data) throws {}
        mutating func visitMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws { throw Unsupported() }
        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws where ValueType.RawValue == Int { throw Unsupported() }
        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type, value: _ProtobufMessageMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws { throw Unsupported() }
    }
}
