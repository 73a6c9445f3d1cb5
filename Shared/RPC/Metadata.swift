/// Call metadata: an ordered list of key/value pairs with ASCII keys compared
/// case-insensitively (stored lower-case). A key may repeat.
public struct Metadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence, CustomStringConvertible {
    public typealias Key = String
    public typealias Value = String

    public private(set) var entries: [(key: String, value: String)]

    public init() { entries = [] }

    public init(dictionaryLiteral elements: (String, String)...) {
        entries = elements.map { (Self.normalize($0.0), $0.1) }
    }

    public init(_ pairs: [(String, String)]) {
        entries = pairs.map { (Self.normalize($0.0), $0.1) }
    }

    public static func normalize(_ key: String) -> String {
        // Keys are ASCII; lowercasing only ASCII letters keeps this cheap and locale-free.
        var needsWork = false
        for byte in key.utf8 where byte >= 65 && byte <= 90 { needsWork = true; break }
        guard needsWork else { return key }
        return String(decoding: key.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// The first value for a key.
    public subscript(key: String) -> String? {
        get {
            let k = Self.normalize(key)
            return entries.first { $0.key == k }?.value
        }
        set {
            let k = Self.normalize(key)
            entries.removeAll { $0.key == k }
            if let newValue { entries.append((k, newValue)) }
        }
    }

    public func values(for key: String) -> [String] {
        let k = Self.normalize(key)
        return entries.filter { $0.key == k }.map(\.value)
    }

    public mutating func add(_ key: String, _ value: String) {
        entries.append((Self.normalize(key), value))
    }

    public mutating func remove(_ key: String) {
        let k = Self.normalize(key)
        entries.removeAll { $0.key == k }
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: String)]> {
        entries.makeIterator()
    }

    public static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.entries.count == rhs.entries.count && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }

    /// Keys only: values may be tokens or personal data.
    public var description: String { "Metadata(keys: \(entries.map(\.key)))" }

}

/// Metadata keys with a defined meaning in the protocol.
public enum MetadataKey {
    /// `Bearer <token>`: who is calling.
    public static let authorization = "authorization"
    /// Never sent as metadata: the deadline travels in `Request.timeout_micros`.
    /// A request carrying it is refused with INVALID_ARGUMENT.
    public static let timeout = "timeout"
    /// Correlates logs across services; generated if absent.
    public static let traceID = "trace-id"
    /// Makes a state-changing call safe to repeat.
    public static let idempotencyKey = "idempotency-key"
    /// On an INVALID_ARGUMENT response: the request field at fault.
    public static let field = "field"
    /// On an RPC made by a service for a person: that person's own token.
    public static let onBehalfOf = "on-behalf-of"
    /// On an UNAUTHENTICATED response from a service's authentication step, before any of
    /// the call's work: which token was refused, `authorization` (the caller's own) or
    /// `on-behalf-of` (the person's a service relayed). It speaks of one hop: a service
    /// never passes on one it received.
    public static let refusedToken = "refused-token"

    public static let reserved: Set<String> = [authorization, timeout, traceID, idempotencyKey]

    /// What a trace id may be: 1 to 64 ASCII letters, digits, `-` and `_`. A trace id is
    /// written into log lines and passed on to other services, so any other is dropped
    /// where it arrives (and a new one made where ids are made).
    public static func isValidTraceID(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64
            && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }
    }
}
