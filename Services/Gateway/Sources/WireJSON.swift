import Foundation
import Synchronization
import SwiftProtobuf

/// Writes an upstream reply's JSON straight from its protobuf bytes, without building the
/// message: the same bytes `FastJSON` writes for the decoded message (tests compare the
/// two), at a fraction of the cost, since decoding a record summary into swift-protobuf's
/// messages (an object per entry and per nested message, a `String` per field) cost as much
/// as writing its JSON.
///
/// What a message type looks like on the wire (field numbers, types, presence) is learnt
/// once per type from its own generated decoding code (`Probe` answers its questions), so
/// it is always the schema the gateway was built with. Bytes this single pass does not
/// handle — fields out of number order, a non-repeated field twice, a repeated field in two
/// runs, a message type it has no schema for, nesting deeper than swift-protobuf allows —
/// are decoded and written by `FastJSON` instead, which also gives the same error for
/// malformed bytes (invalid UTF-8, truncated fields) as decoding always did.
enum WireJSON {
    /// The bytes need the decoding path (see above).
    struct Fallback: Error {}

    /// JSON for a reply of type `M`; throws only if the bytes are not a valid `M`.
    static func encode<M: SwiftProtobuf.Message>(_ payload: Data, as type: M.Type) throws -> [UInt8] {
        if let schema = try? schema(for: M.self) {
            do {
                return try payload.withUnsafeBytes { bytes in try transcode(bytes, schema: schema, root: M.self) }
            } catch is Fallback {
                // Below.
            } catch is FastJSON.Unsupported {
                // An enum token FastJSON leaves to swift-protobuf: below too.
            }
        }
        return try FastJSON.encode(try M(serializedBytes: payload))
    }

    /// This single pass alone; throws `Fallback` where `encode` would decode instead.
    static func transcode(_ bytes: UnsafeRawBufferPointer, schema: Schema, root: any SwiftProtobuf.Message.Type) throws -> [UInt8] {
        var transcoder = try Transcoder(root: root, capacity: bytes.count + bytes.count / 4 + 64)
        var reader = Reader(bytes: bytes)
        try transcoder.object(&reader, schema.table, depth: 0)
        return transcoder.writer.out
    }

    // MARK: - Schemas

    /// A scalar field type as it appears on the wire.
    enum Scalar: Sendable {
        case double, float, int64, uint64, int32, uint32, sint32, sint64, fixed32, fixed64, sfixed32, sfixed64, bool, string, bytes
    }

    /// What a field holds. Nothing in it (or in `Field`) is reference-counted, so the hot
    /// loop copies fields for free: names, token tables and nested tables point into memory
    /// allocated once per message type and kept for the life of the process, as the schemas
    /// themselves are. Allocations are also left behind by a build that fails (a type is
    /// tried once, though the message types built inside it may be built again) and by two
    /// threads building the same type at once; either way they are bounded by the number of
    /// message types.
    enum Kind: Sendable {
        case scalar(Scalar)
        case enumeration(Tokens)
        case message(Table)
        case map(key: Scalar, value: MapValue)
    }

    /// What a map's values are (`Probe` finds no other kinds).
    enum MapValue: Sendable {
        case scalar(Scalar)
        case message(Table)
    }

    /// An enum field's JSON tokens (`"NAME"`, or the number for a value without a name):
    /// the first values ready in a table, others asked of `FastJSON` (which caches them).
    struct Tokens: @unchecked Sendable {
        /// Empty where the value has no ready token.
        let table: UnsafeBufferPointer<UnsafeBufferPointer<UInt8>>
        let other: Unmanaged<TokenSource>

        init(first count: Int, _ token: @escaping @Sendable (Int) throws -> [UInt8]) {
            let table = UnsafeMutableBufferPointer<UnsafeBufferPointer<UInt8>>.allocate(capacity: count)
            for raw in 0..<count { table.initializeElement(at: raw, to: WireJSON.kept((try? token(raw)) ?? [])) }
            self.table = UnsafeBufferPointer(table)
            other = Unmanaged.passRetained(TokenSource(token))
        }

        func append(_ raw: Int, to out: inout [UInt8]) throws {
            if raw >= 0, raw < table.count, table[raw].count > 0 {
                out.append(contentsOf: table[raw])
            } else {
                out.append(contentsOf: try other._withUnsafeGuaranteedRef { try $0.token(raw) })
            }
        }
    }

    final class TokenSource: Sendable {
        let token: @Sendable (Int) throws -> [UInt8]
        init(_ token: @escaping @Sendable (Int) throws -> [UInt8]) { self.token = token }
    }

    /// A copy of `bytes` that is never freed.
    static func kept(_ bytes: [UInt8]) -> UnsafeBufferPointer<UInt8> {
        guard !bytes.isEmpty else { return UnsafeBufferPointer(start: nil, count: 0) }
        let copy = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
        _ = copy.initialize(from: bytes)
        return UnsafeBufferPointer(copy)
    }

    struct Field: @unchecked Sendable {
        /// `"name":` (empty: no field has this number).
        let name: UnsafeBufferPointer<UInt8>
        let kind: Kind
        let repeated: Bool
        /// Written even when it holds the default value (message fields, oneof members and
        /// proto3 `optional` fields).
        let explicitPresence: Bool
        /// The field's oneof, as one bit per oneof of the message (0: in none).
        let oneof: UInt64

        static let absent = Field(name: UnsafeBufferPointer(start: nil, count: 0), kind: .scalar(.bool), repeated: false,
                                  explicitPresence: false, oneof: 0)
    }

    /// A message type's fields, indexed by number. Allocated before its fields are filled
    /// in (a type may contain itself), and filled in once, before it is shared.
    struct Table: @unchecked Sendable {
        let fields: UnsafeMutableBufferPointer<Field>

        subscript(number: Int) -> Field? {
            guard number >= 0, number < fields.count else { return nil }
            let field = fields[number]
            return field.name.count > 0 ? field : nil
        }
    }

    /// A message type's schema.
    final class Schema: Sendable {
        let table: Table

        init(table: Table) {
            self.table = table
        }
    }

    private static let schemas = Mutex<[ObjectIdentifier: Schema]>([:])
    /// Types found to have no schema here (asked once).
    private static let noSchema = Mutex<Set<ObjectIdentifier>>([])

    struct NoSchema: Error {}

    /// The schema of `type` and every message type it contains.
    static func schema(for type: any SwiftProtobuf.Message.Type) throws -> Schema {
        let key = ObjectIdentifier(type)
        if let found = schemas.withLock({ $0[key] }) { return found }
        if noSchema.withLock({ $0.contains(key) }) { throw NoSchema() }
        var building: [ObjectIdentifier: Schema] = [:]
        do {
            let schema = try build(type, &building)
            schemas.withLock { cache in
                for (key, value) in building where cache[key] == nil { cache[key] = value }
            }
            return schemas.withLock { $0[key] } ?? schema
        } catch {
            noSchema.withLock { _ = $0.insert(key) }
            throw NoSchema()
        }
    }

    private static func build(_ type: any SwiftProtobuf.Message.Type, _ building: inout [ObjectIdentifier: Schema]) throws -> Schema {
        let key = ObjectIdentifier(type)
        if let found = building[key] { return found }
        if let found = schemas.withLock({ $0[key] }) { return found }
        // Names come from FastJSON's tables, which also refuse well-known types.
        let names = try FastJSON.names(for: type)
        var probe = Probe(numbers: names.byNumber.keys.sorted())
        try probe.run(type)
        // A type whose names table is incomplete (fields numbered beyond the scan) is left
        // to the decoder rather than have fields dropped as unknown.
        guard names.complete else { throw NoSchema() }
        // `complete` means every field is numbered within FastJSON's scan (512 at most),
        // so the table, a slot per number up to the highest, stays small.
        let highest = probe.found.keys.max() ?? 0
        let fields = UnsafeMutableBufferPointer<Field>.allocate(capacity: highest + 1)
        fields.initialize(repeating: .absent)
        let schema = Schema(table: Table(fields: fields))
        building[key] = schema
        let oneofs = try oneofBits(type, fields: probe.found.filter { $0.value.explicit && !$0.value.repeated }.keys.sorted())
        for (number, entry) in probe.found {
            guard let name = names.byNumber[number] else { continue }
            let (found, repeated, explicit) = entry
            let kind: Kind
            switch found {
            case .scalar(let scalar): kind = .scalar(scalar)
            case .enumeration(let token): kind = .enumeration(Tokens(first: 32) { raw in try token(raw, number, type, repeated) })
            case .message(let nested): kind = .message(try build(nested, &building).table)
            case .map(let key, .scalar(let value)): kind = .map(key: key, value: .scalar(value))
            case .map(let key, .message(let nested)): kind = .map(key: key, value: .message(try build(nested, &building).table))
            case .map, .unsupported: throw NoSchema()
            }
            fields[number] = Field(name: kept(name), kind: kind, repeated: repeated, explicitPresence: explicit,
                                   oneof: oneofs[number] ?? 0)
        }
        return schema
    }

    /// Which of `fields` (singular fields with presence) share a oneof: the generated code
    /// reports a conflict when a second member of a oneof is set. One bit per oneof.
    private static func oneofBits(_ type: any SwiftProtobuf.Message.Type, fields: [Int]) throws -> [Int: UInt64] {
        var group: [Int: Int] = [:]  // field → the first field of its oneof
        for (index, first) in fields.enumerated() where group[first] == nil {
            for second in fields[(index + 1)...] where group[second] == nil {
                var probe = Probe(numbers: [first, second])
                probe.give = [first, second]
                try probe.run(type)
                if probe.conflicted {
                    group[first] = first
                    group[second] = first
                }
            }
        }
        let firsts = Set(group.values).sorted()
        guard firsts.count <= 64 else { throw NoSchema() }
        return group.mapValues { UInt64(1) << UInt64(firsts.firstIndex(of: $0)!) }
    }

    /// Asks a message type's generated `decodeMessage` about each of its field numbers in
    /// turn and notes which decoding method it calls for it: that names the field's type,
    /// whether it repeats, and whether it tracks presence (an optional value).
    struct Probe: SwiftProtobuf.Decoder {
        indirect enum Found {
            case scalar(Scalar)
            case enumeration(@Sendable (_ raw: Int, _ field: Int, _ parent: any SwiftProtobuf.Message.Type, _ repeated: Bool) throws -> [UInt8])
            case message(any SwiftProtobuf.Message.Type)
            case map(key: Scalar, value: Found)
            case unsupported
        }

        let numbers: [Int]
        /// Fields to give a value (to find which belong to one oneof: setting the second
        /// of two makes generated code call `handleConflictingOneOf`).
        var give: Set<Int> = []
        var conflicted = false
        var index = 0
        var current = 0
        var found: [Int: (Found, repeated: Bool, explicit: Bool)] = [:]

        init(numbers: [Int]) {
            self.numbers = numbers
        }

        mutating func run(_ type: any SwiftProtobuf.Message.Type) throws {
            var message = type.init()
            try message.decodeMessage(decoder: &self)
        }

        mutating func note(_ kind: Found, repeated: Bool = false, explicit: Bool = false) {
            found[current] = (kind, repeated, explicit)
        }

        /// Notes an optional field and, if this probe is setting fields (`give`), sets it.
        mutating func note<T>(_ kind: Found, explicit: Bool, _ value: inout T?, _ set: @autoclosure () -> T) {
            note(kind, explicit: explicit)
            if give.contains(current) { value = set() }
        }

        mutating func nextFieldNumber() throws -> Int? {
            guard index < numbers.count else { return nil }
            current = numbers[index]
            index += 1
            return current
        }

        mutating func handleConflictingOneOf() throws { conflicted = true }

        mutating func decodeSingularFloatField(value: inout Float) throws { note(.scalar(.float)) }
        mutating func decodeSingularFloatField(value: inout Float?) throws { note(.scalar(.float), explicit: true, &value, 0) }
        mutating func decodeRepeatedFloatField(value: inout [Float]) throws { note(.scalar(.float), repeated: true) }
        mutating func decodeSingularDoubleField(value: inout Double) throws { note(.scalar(.double)) }
        mutating func decodeSingularDoubleField(value: inout Double?) throws { note(.scalar(.double), explicit: true, &value, 0) }
        mutating func decodeRepeatedDoubleField(value: inout [Double]) throws { note(.scalar(.double), repeated: true) }
        mutating func decodeSingularInt32Field(value: inout Int32) throws { note(.scalar(.int32)) }
        mutating func decodeSingularInt32Field(value: inout Int32?) throws { note(.scalar(.int32), explicit: true, &value, 0) }
        mutating func decodeRepeatedInt32Field(value: inout [Int32]) throws { note(.scalar(.int32), repeated: true) }
        mutating func decodeSingularInt64Field(value: inout Int64) throws { note(.scalar(.int64)) }
        mutating func decodeSingularInt64Field(value: inout Int64?) throws { note(.scalar(.int64), explicit: true, &value, 0) }
        mutating func decodeRepeatedInt64Field(value: inout [Int64]) throws { note(.scalar(.int64), repeated: true) }
        mutating func decodeSingularUInt32Field(value: inout UInt32) throws { note(.scalar(.uint32)) }
        mutating func decodeSingularUInt32Field(value: inout UInt32?) throws { note(.scalar(.uint32), explicit: true, &value, 0) }
        mutating func decodeRepeatedUInt32Field(value: inout [UInt32]) throws { note(.scalar(.uint32), repeated: true) }
        mutating func decodeSingularUInt64Field(value: inout UInt64) throws { note(.scalar(.uint64)) }
        mutating func decodeSingularUInt64Field(value: inout UInt64?) throws { note(.scalar(.uint64), explicit: true, &value, 0) }
        mutating func decodeRepeatedUInt64Field(value: inout [UInt64]) throws { note(.scalar(.uint64), repeated: true) }
        mutating func decodeSingularSInt32Field(value: inout Int32) throws { note(.scalar(.sint32)) }
        mutating func decodeSingularSInt32Field(value: inout Int32?) throws { note(.scalar(.sint32), explicit: true, &value, 0) }
        mutating func decodeRepeatedSInt32Field(value: inout [Int32]) throws { note(.scalar(.sint32), repeated: true) }
        mutating func decodeSingularSInt64Field(value: inout Int64) throws { note(.scalar(.sint64)) }
        mutating func decodeSingularSInt64Field(value: inout Int64?) throws { note(.scalar(.sint64), explicit: true, &value, 0) }
        mutating func decodeRepeatedSInt64Field(value: inout [Int64]) throws { note(.scalar(.sint64), repeated: true) }
        mutating func decodeSingularFixed32Field(value: inout UInt32) throws { note(.scalar(.fixed32)) }
        mutating func decodeSingularFixed32Field(value: inout UInt32?) throws { note(.scalar(.fixed32), explicit: true, &value, 0) }
        mutating func decodeRepeatedFixed32Field(value: inout [UInt32]) throws { note(.scalar(.fixed32), repeated: true) }
        mutating func decodeSingularFixed64Field(value: inout UInt64) throws { note(.scalar(.fixed64)) }
        mutating func decodeSingularFixed64Field(value: inout UInt64?) throws { note(.scalar(.fixed64), explicit: true, &value, 0) }
        mutating func decodeRepeatedFixed64Field(value: inout [UInt64]) throws { note(.scalar(.fixed64), repeated: true) }
        mutating func decodeSingularSFixed32Field(value: inout Int32) throws { note(.scalar(.sfixed32)) }
        mutating func decodeSingularSFixed32Field(value: inout Int32?) throws { note(.scalar(.sfixed32), explicit: true, &value, 0) }
        mutating func decodeRepeatedSFixed32Field(value: inout [Int32]) throws { note(.scalar(.sfixed32), repeated: true) }
        mutating func decodeSingularSFixed64Field(value: inout Int64) throws { note(.scalar(.sfixed64)) }
        mutating func decodeSingularSFixed64Field(value: inout Int64?) throws { note(.scalar(.sfixed64), explicit: true, &value, 0) }
        mutating func decodeRepeatedSFixed64Field(value: inout [Int64]) throws { note(.scalar(.sfixed64), repeated: true) }
        mutating func decodeSingularBoolField(value: inout Bool) throws { note(.scalar(.bool)) }
        mutating func decodeSingularBoolField(value: inout Bool?) throws { note(.scalar(.bool), explicit: true, &value, false) }
        mutating func decodeRepeatedBoolField(value: inout [Bool]) throws { note(.scalar(.bool), repeated: true) }
        mutating func decodeSingularStringField(value: inout String) throws { note(.scalar(.string)) }
        mutating func decodeSingularStringField(value: inout String?) throws { note(.scalar(.string), explicit: true, &value, "") }
        mutating func decodeRepeatedStringField(value: inout [String]) throws { note(.scalar(.string), repeated: true) }
        mutating func decodeSingularBytesField(value: inout Data) throws { note(.scalar(.bytes)) }
        mutating func decodeSingularBytesField(value: inout Data?) throws { note(.scalar(.bytes), explicit: true, &value, Data()) }
        mutating func decodeRepeatedBytesField(value: inout [Data]) throws { note(.scalar(.bytes), repeated: true) }

        static func enumToken<E: SwiftProtobuf.Enum>(_ type: E.Type) -> Found {
            .enumeration { raw, field, parent, repeated in
                // Every value of an open (proto3) enum has a case; anything else decodes
                // differently (an unknown field), so leave it to the decoder.
                guard let value = E(rawValue: raw) else { throw Fallback() }
                return try FastJSON.enumToken(value, field: field, of: parent, repeated: repeated)
            }
        }

        mutating func decodeSingularEnumField<E: SwiftProtobuf.Enum>(value: inout E) throws where E.RawValue == Int {
            note(Self.enumToken(E.self))
        }
        mutating func decodeSingularEnumField<E: SwiftProtobuf.Enum>(value: inout E?) throws where E.RawValue == Int {
            note(Self.enumToken(E.self), explicit: true, &value, E())
        }
        mutating func decodeRepeatedEnumField<E: SwiftProtobuf.Enum>(value: inout [E]) throws where E.RawValue == Int {
            note(Self.enumToken(E.self), repeated: true)
        }
        mutating func decodeSingularMessageField<M: SwiftProtobuf.Message>(value: inout M?) throws {
            note(.message(M.self), explicit: true, &value, M())
        }
        mutating func decodeRepeatedMessageField<M: SwiftProtobuf.Message>(value: inout [M]) throws {
            note(.message(M.self), repeated: true)
        }
        mutating func decodeSingularGroupField<G: SwiftProtobuf.Message>(value: inout G?) throws { note(.unsupported) }
        mutating func decodeRepeatedGroupField<G: SwiftProtobuf.Message>(value: inout [G]) throws { note(.unsupported) }

        static func scalar(_ type: Any.Type) -> Scalar? {
            switch ObjectIdentifier(type) {
            case ObjectIdentifier(ProtobufString.self): return .string
            case ObjectIdentifier(ProtobufBytes.self): return .bytes
            case ObjectIdentifier(ProtobufBool.self): return .bool
            case ObjectIdentifier(ProtobufInt32.self): return .int32
            case ObjectIdentifier(ProtobufInt64.self): return .int64
            case ObjectIdentifier(ProtobufUInt32.self): return .uint32
            case ObjectIdentifier(ProtobufUInt64.self): return .uint64
            case ObjectIdentifier(ProtobufSInt32.self): return .sint32
            case ObjectIdentifier(ProtobufSInt64.self): return .sint64
            case ObjectIdentifier(ProtobufFixed32.self): return .fixed32
            case ObjectIdentifier(ProtobufFixed64.self): return .fixed64
            case ObjectIdentifier(ProtobufSFixed32.self): return .sfixed32
            case ObjectIdentifier(ProtobufSFixed64.self): return .sfixed64
            case ObjectIdentifier(ProtobufDouble.self): return .double
            case ObjectIdentifier(ProtobufFloat.self): return .float
            default: return nil
            }
        }

        /// Map keys JSON writes as text (strings, integers, booleans).
        static func mapKey(_ type: Any.Type) -> Scalar? {
            guard let key = scalar(type) else { return nil }
            switch key {
            case .double, .float, .bytes: return nil
            default: return key
            }
        }

        mutating func decodeMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: inout _ProtobufMap<KeyType, ValueType>.BaseType
        ) throws {
            if let key = Self.mapKey(KeyType.self), let item = Self.scalar(ValueType.self) {
                note(.map(key: key, value: .scalar(item)))
            } else {
                note(.unsupported)
            }
        }
        mutating func decodeMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: inout _ProtobufEnumMap<KeyType, ValueType>.BaseType
        ) throws where ValueType.RawValue == Int {
            note(.unsupported)  // FastJSON leaves these to swift-protobuf too
        }
        mutating func decodeMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type, value: inout _ProtobufMessageMap<KeyType, ValueType>.BaseType
        ) throws {
            if let key = Self.mapKey(KeyType.self) {
                note(.map(key: key, value: .message(ValueType.self)))
            } else {
                note(.unsupported)
            }
        }
        mutating func decodeExtensionField(values: inout ExtensionFieldValueSet, messageType: any SwiftProtobuf.Message.Type,
                                           fieldNumber: Int) throws {
            note(.unsupported)
        }
    }

    // MARK: - Reading the wire format

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var at: Int
        let end: Int

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            self.at = 0
            self.end = bytes.count
        }

        init(bytes: UnsafeRawBufferPointer, from: Int, to: Int) {
            self.bytes = bytes
            self.at = from
            self.end = to
        }

        var atEnd: Bool { at >= end }

        mutating func varint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while at < end {
                let byte = bytes[at]
                at += 1
                if shift == 63, byte > 1 { throw Fallback() }
                result |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return result }
                shift += 7
                if shift > 63 { throw Fallback() }
            }
            throw Fallback()
        }

        mutating func fixed32() throws -> UInt32 {
            guard end - at >= 4 else { throw Fallback() }
            var value: UInt32 = 0
            for i in 0..<4 { value |= UInt32(bytes[at + i]) << (8 * UInt32(i)) }
            at += 4
            return value
        }

        mutating func fixed64() throws -> UInt64 {
            guard end - at >= 8 else { throw Fallback() }
            var value: UInt64 = 0
            for i in 0..<8 { value |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += 8
            return value
        }

        /// A length-delimited value: its bounds.
        mutating func delimited() throws -> Range<Int> {
            let length = try varint()
            guard length <= UInt64(end - at) else { throw Fallback() }
            let range = at..<(at + Int(length))
            at = range.upperBound
            return range
        }

        mutating func skip(wireType: UInt64) throws {
            switch wireType {
            case 0: _ = try varint()
            case 1: _ = try fixed64()
            case 2: _ = try delimited()
            case 5: _ = try fixed32()
            default: throw Fallback()  // groups, or not protobuf
            }
        }
    }

    // MARK: - Writing

    struct Transcoder {
        var writer: FastJSON.Writer
        /// swift-protobuf's default limit; deeper messages go to the decoder, which refuses them.
        static let maxDepth = 100

        init(root: any SwiftProtobuf.Message.Type, capacity: Int) throws {
            writer = try FastJSON.Writer(root: root)
            writer.out.reserveCapacity(capacity)
        }

        /// `{…}` for the message in `reader`, to its end.
        mutating func object(_ reader: inout Reader, _ table: Table, depth: Int) throws {
            guard depth < Self.maxDepth else { throw Fallback() }
            writer.out.append(UInt8(ascii: "{"))
            var comma = false
            var last = 0
            var oneofsSeen: UInt64 = 0
            /// The repeated field whose array is open, and its map entries if it is a map.
            var open: Field?
            var openNumber = 0
            var elements = 0
            var entries: [(key: MapKey, value: [UInt8])] = []
            func closeOpen(_ t: inout Transcoder) throws {
                guard let field = open else { return }
                if case .map(let key, _) = field.kind {
                    t.name(field, &comma)
                    try t.writeMap(entries, key: key)
                    entries.removeAll(keepingCapacity: true)
                } else if elements > 0 {
                    t.writer.out.append(UInt8(ascii: "]"))
                }
                open = nil
            }
            while !reader.atEnd {
                let tag = try reader.varint()
                let number = Int(truncatingIfNeeded: tag >> 3)
                let wireType = tag & 7
                guard number > 0, number < 1 << 29 else { throw Fallback() }
                guard let field = table[number] else {
                    // Unknown fields: JSON leaves them out.
                    try reader.skip(wireType: wireType)
                    continue
                }
                if let current = open, openNumber == number {
                    // The open repeated field goes on.
                    try element(&reader, current, wireType: wireType, elements: &elements, entries: &entries, comma: &comma, depth: depth)
                    continue
                }
                // Fields must come in number order, each once (a repeated one in one run).
                guard number > last else { throw Fallback() }
                try closeOpen(&self)
                last = number
                if field.repeated || isMap(field) {
                    open = field
                    openNumber = number
                    elements = 0
                    try element(&reader, field, wireType: wireType, elements: &elements, entries: &entries, comma: &comma, depth: depth)
                } else {
                    // Two members of one oneof: decoding keeps the last.
                    guard oneofsSeen & field.oneof == 0 else { throw Fallback() }
                    oneofsSeen |= field.oneof
                    try singular(&reader, field, wireType: wireType, comma: &comma, depth: depth)
                }
            }
            try closeOpen(&self)
            guard reader.at == reader.end else { throw Fallback() }
            writer.out.append(UInt8(ascii: "}"))
        }

        func isMap(_ field: Field) -> Bool {
            if case .map = field.kind { return true }
            return false
        }

        mutating func name(_ field: Field, _ comma: inout Bool) {
            if comma { writer.out.append(UInt8(ascii: ",")) }
            comma = true
            writer.out.append(contentsOf: field.name)
        }

        mutating func singular(_ reader: inout Reader, _ field: Field, wireType: UInt64, comma: inout Bool, depth: Int) throws {
            switch field.kind {
            case .message(let table):
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                name(field, &comma)
                var nested = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                try object(&nested, table, depth: depth + 1)
            case .scalar(let scalar):
                let (mark, hadComma) = (writer.out.count, comma)
                name(field, &comma)
                if try !value(&reader, scalar, wireType: wireType, omitDefault: !field.explicitPresence) {
                    // The default of a field without presence is not written: take the name back.
                    writer.out.removeSubrange(mark...)
                    comma = hadComma
                }
            case .enumeration(let tokens):
                guard wireType == 0 else { throw Fallback() }
                let raw = Int(Int32(truncatingIfNeeded: try reader.varint()))
                if raw == 0, !field.explicitPresence { return }
                name(field, &comma)
                try tokens.append(raw, to: &writer.out)
            case .map:
                throw Fallback()  // handled as repeated
            }
        }

        /// One element of a repeated field (a packed run may hold many).
        mutating func element(_ reader: inout Reader, _ field: Field, wireType: UInt64, elements: inout Int,
                              entries: inout [(key: MapKey, value: [UInt8])], comma: inout Bool, depth: Int) throws {
            func start(_ t: inout Transcoder) {
                if elements == 0 {
                    t.name(field, &comma)
                    t.writer.out.append(UInt8(ascii: "["))
                } else {
                    t.writer.out.append(UInt8(ascii: ","))
                }
                elements += 1
            }
            switch field.kind {
            case .message(let table):
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                start(&self)
                var nested = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                try object(&nested, table, depth: depth + 1)
            case .scalar(let scalar):
                if wireType == 2, scalar != .string, scalar != .bytes {
                    // Packed.
                    let range = try reader.delimited()
                    var packed = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                    let inner: UInt64 = switch scalar {
                    case .double, .fixed64, .sfixed64: 1
                    case .float, .fixed32, .sfixed32: 5
                    default: 0
                    }
                    while !packed.atEnd {
                        start(&self)
                        _ = try value(&packed, scalar, wireType: inner, omitDefault: false)
                    }
                } else {
                    start(&self)
                    _ = try value(&reader, scalar, wireType: wireType, omitDefault: false)
                }
            case .enumeration(let tokens):
                if wireType == 2 {
                    let range = try reader.delimited()
                    var packed = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                    while !packed.atEnd {
                        let raw = Int(Int32(truncatingIfNeeded: try packed.varint()))
                        start(&self)
                        try tokens.append(raw, to: &writer.out)
                    }
                } else {
                    guard wireType == 0 else { throw Fallback() }
                    let raw = Int(Int32(truncatingIfNeeded: try reader.varint()))
                    start(&self)
                    try tokens.append(raw, to: &writer.out)
                }
            case .map(let keyType, let valueKind):
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                var entry = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                entries.append(try mapEntry(&entry, key: keyType, value: valueKind, depth: depth))
            }
        }

        /// A map key as JSON writes it, with the order swift-protobuf sorts keys in.
        enum MapKey {
            case text(String)
            case signed(Int64)
            case unsigned(UInt64)
            case bool(Bool)

            var json: String {
                switch self {
                case .text(let s): return s
                case .signed(let v): return String(v)
                case .unsigned(let v): return String(v)
                case .bool(let v): return v ? "true" : "false"
                }
            }

            /// Equal keys are the same map key (the later entry wins).
            func same(as other: MapKey) -> Bool {
                switch (self, other) {
                case (.text(let a), .text(let b)): return a == b
                case (.signed(let a), .signed(let b)): return a == b
                case (.unsigned(let a), .unsigned(let b)): return a == b
                case (.bool(let a), .bool(let b)): return a == b
                default: return false
                }
            }

            func less(than other: MapKey) -> Bool {
                switch (self, other) {
                case (.text(let a), .text(let b)): return a < b
                case (.signed(let a), .signed(let b)): return a < b
                case (.unsigned(let a), .unsigned(let b)): return a < b
                case (.bool(let a), .bool(let b)): return !a && b
                default: return false
                }
            }
        }

        /// One map entry: its key, and its value written as JSON (a missing key or value
        /// is the default, as when decoding).
        mutating func mapEntry(_ reader: inout Reader, key keyType: Scalar, value valueKind: MapValue, depth: Int) throws -> (key: MapKey, value: [UInt8]) {
            var key: MapKey?
            var valueBytes: [UInt8]?
            while !reader.atEnd {
                let tag = try reader.varint()
                let wireType = tag & 7
                switch tag >> 3 {
                case 1:
                    guard key == nil else { throw Fallback() }
                    key = try mapKey(&reader, keyType, wireType: wireType)
                case 2:
                    guard valueBytes == nil else { throw Fallback() }
                    valueBytes = try mapValue(&reader, valueKind, wireType: wireType, depth: depth)
                default:
                    try reader.skip(wireType: wireType)
                }
            }
            if key == nil {
                var empty = Reader(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
                key = try mapKey(&empty, keyType, wireType: nil)
            }
            if valueBytes == nil {
                var empty = Reader(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
                valueBytes = try mapValue(&empty, valueKind, wireType: nil, depth: depth)
            }
            return (key!, valueBytes!)
        }

        /// Reads a key (`wireType` nil: the default key).
        mutating func mapKey(_ reader: inout Reader, _ type: Scalar, wireType: UInt64?) throws -> MapKey {
            switch type {
            case .string:
                guard let wireType else { return .text("") }
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                let slice = UnsafeRawBufferPointer(rebasing: reader.bytes[range])
                guard let text = String(validating: slice, as: UTF8.self) else { throw Fallback() }
                return .text(text)
            case .bool:
                guard let wireType else { return .bool(false) }
                guard wireType == 0 else { throw Fallback() }
                return .bool(try reader.varint() != 0)
            case .int32, .int64, .sint32, .sint64, .sfixed32, .sfixed64:
                guard let wireType else { return .signed(0) }
                return .signed(try signed(&reader, type, wireType: wireType))
            case .uint32, .uint64, .fixed32, .fixed64:
                guard let wireType else { return .unsigned(0) }
                return .unsigned(try unsigned(&reader, type, wireType: wireType))
            case .double, .float, .bytes:
                throw Fallback()
            }
        }

        /// Writes a map value on its own and returns its bytes (`wireType` nil: the default).
        mutating func mapValue(_ reader: inout Reader, _ kind: MapValue, wireType: UInt64?, depth: Int) throws -> [UInt8] {
            let saved = writer.out
            writer.out = []
            defer { writer.out = saved }
            switch kind {
            case .scalar(let scalar):
                if let wireType {
                    _ = try value(&reader, scalar, wireType: wireType, omitDefault: false)
                } else {
                    defaultValue(scalar)
                }
            case .message(let table):
                if let wireType {
                    guard wireType == 2 else { throw Fallback() }
                    let range = try reader.delimited()
                    var nested = Reader(bytes: reader.bytes, from: range.lowerBound, to: range.upperBound)
                    try object(&nested, table, depth: depth + 1)
                } else {
                    writer.out.append(contentsOf: "{}".utf8)
                }
            }
            return writer.out
        }

        mutating func writeMap(_ entries: [(key: MapKey, value: [UInt8])], key: Scalar) throws {
            // The later of two equal keys wins, as in a decoded map; then keys in order.
            var kept: [(key: MapKey, value: [UInt8])] = []
            for entry in entries {
                if let index = kept.firstIndex(where: { $0.key.same(as: entry.key) }) {
                    kept[index].value = entry.value
                } else {
                    kept.append(entry)
                }
            }
            kept.sort { $0.key.less(than: $1.key) }
            writer.out.append(UInt8(ascii: "{"))
            for (index, entry) in kept.enumerated() {
                if index > 0 { writer.out.append(UInt8(ascii: ",")) }
                FastJSON.Writer.appendString(entry.key.json, to: &writer.out)
                writer.out.append(UInt8(ascii: ":"))
                writer.out.append(contentsOf: entry.value)
            }
            writer.out.append(UInt8(ascii: "}"))
        }

        mutating func defaultValue(_ scalar: Scalar) {
            switch scalar {
            case .string: writer.out.append(contentsOf: "\"\"".utf8)
            case .bytes: writer.out.append(contentsOf: "\"\"".utf8)
            case .bool: writer.bool(false)
            case .double: writer.double(0)
            case .float: writer.float(0)
            default: writer.uint(0)
            }
        }

        func signed(_ reader: inout Reader, _ type: Scalar, wireType: UInt64) throws -> Int64 {
            switch type {
            case .int32:
                guard wireType == 0 else { throw Fallback() }
                return Int64(Int32(truncatingIfNeeded: try reader.varint()))
            case .int64:
                guard wireType == 0 else { throw Fallback() }
                return Int64(bitPattern: try reader.varint())
            case .sint32:
                guard wireType == 0 else { throw Fallback() }
                let raw = UInt32(truncatingIfNeeded: try reader.varint())
                return Int64(Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))))
            case .sint64:
                guard wireType == 0 else { throw Fallback() }
                let raw = try reader.varint()
                return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
            case .sfixed32:
                guard wireType == 5 else { throw Fallback() }
                return Int64(Int32(bitPattern: try reader.fixed32()))
            case .sfixed64:
                guard wireType == 1 else { throw Fallback() }
                return Int64(bitPattern: try reader.fixed64())
            default:
                throw Fallback()
            }
        }

        func unsigned(_ reader: inout Reader, _ type: Scalar, wireType: UInt64) throws -> UInt64 {
            switch type {
            case .uint32:
                guard wireType == 0 else { throw Fallback() }
                return UInt64(UInt32(truncatingIfNeeded: try reader.varint()))
            case .uint64:
                guard wireType == 0 else { throw Fallback() }
                return try reader.varint()
            case .fixed32:
                guard wireType == 5 else { throw Fallback() }
                return UInt64(try reader.fixed32())
            case .fixed64:
                guard wireType == 1 else { throw Fallback() }
                return try reader.fixed64()
            default:
                throw Fallback()
            }
        }

        /// Writes one scalar value; with `omitDefault`, writes nothing for the type's
        /// default (implicit presence) and returns false.
        mutating func value(_ reader: inout Reader, _ scalar: Scalar, wireType: UInt64, omitDefault: Bool) throws -> Bool {
            switch scalar {
            case .string:
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                if range.isEmpty, omitDefault { return false }
                let slice = UnsafeRawBufferPointer(rebasing: reader.bytes[range])
                guard Self.isValidUTF8(slice) else { throw Fallback() }
                FastJSON.Writer.appendString(utf8: slice.assumingMemoryBound(to: UInt8.self), to: &writer.out)
            case .bytes:
                guard wireType == 2 else { throw Fallback() }
                let range = try reader.delimited()
                if range.isEmpty, omitDefault { return false }
                writer.bytes(Data(reader.bytes[range]))
            case .bool:
                guard wireType == 0 else { throw Fallback() }
                let flag = try reader.varint() != 0
                if !flag, omitDefault { return false }
                writer.bool(flag)
            case .double:
                guard wireType == 1 else { throw Fallback() }
                let bits = try reader.fixed64()
                if bits == 0, omitDefault { return false }
                writer.double(Double(bitPattern: bits))
            case .float:
                guard wireType == 5 else { throw Fallback() }
                let bits = try reader.fixed32()
                if bits == 0, omitDefault { return false }
                writer.float(Float(bitPattern: bits))
            case .int32, .int64, .sint32, .sint64, .sfixed32, .sfixed64:
                let number = try signed(&reader, scalar, wireType: wireType)
                if number == 0, omitDefault { return false }
                writer.int(number)
            case .uint32, .uint64, .fixed32, .fixed64:
                let number = try unsigned(&reader, scalar, wireType: wireType)
                if number == 0, omitDefault { return false }
                writer.uint(number)
            }
            return true
        }

        static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
            for byte in bytes where byte >= 0x80 {
                return String(validating: bytes, as: UTF8.self) != nil
            }
            return true
        }
    }
}
