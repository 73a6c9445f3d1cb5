import Foundation

/// A SQL statement with its bind values kept apart from the text.
///
/// Build one by string interpolation: every interpolated value becomes a `$N`
/// placeholder and a bind, so data can never change the statement's meaning.
///
/// ```swift
/// let rows = try await db.query("SELECT id FROM accounts WHERE email = \(email)")
/// ```
///
/// Raw SQL text can only be added through the explicitly named ``init(unsafeSQL:)`` or
/// ``StringInterpolation/appendInterpolation(unsafeRaw:)``, and identifiers through
/// ``StringInterpolation/appendInterpolation(identifier:)`` which quotes them.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public internal(set) var sql: String
    public internal(set) var binds: [PostgresBind]
    /// Whether the server sends this statement's result in its binary format (see
    /// ``binaryResults()``).
    public internal(set) var wantsBinaryResults = false

    /// The same statement with its result in PostgreSQL's binary format: ids, numbers,
    /// times and bytes arrive as their bytes, so neither side prints or parses text for
    /// them. Every column must be of a type `PostgresDecodable` reads in binary (text,
    /// integers, `bool`, `float4`/`float8`, `uuid`, `bytea`, `timestamptz`/`timestamp`,
    /// `json`/`jsonb`); cast any other (`date`, `numeric`, arrays) to `text` in the
    /// statement. Binary reading is strict about types: a `uuid` or integer column is not
    /// read as a `String`, nor an integer as a `Double`, as the text reading allows.
    public func binaryResults() -> PostgresQuery {
        var query = self
        query.wantsBinaryResults = true
        return query
    }

    /// Creates a query from SQL text that contains no interpolated values.
    /// Only use with text written in the source code, never with input.
    public init(unsafeSQL sql: String, binds: [PostgresBind] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.sql = value
        self.binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        self.sql = stringInterpolation.sql
        self.binds = stringInterpolation.binds
    }

    /// The SQL with bind values redacted, safe to log.
    public var description: String {
        "\(sql) [\(binds.count) bind\(binds.count == 1 ? "" : "s") redacted]"
    }

    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        var sql: String
        var binds: [PostgresBind]

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql = ""
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds = []
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// Appends a bound value as `$N`.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            binds.append(value.postgresBind)
            sql += "$\(binds.count)"
        }

        /// Appends a bound optional value (`NULL` when `nil`) as `$N`.
        public mutating func appendInterpolation<T: PostgresEncodable>(_ value: T?) {
            binds.append(value.map(\.postgresBind) ?? PostgresBind(null: T.postgresType))
            sql += "$\(binds.count)"
        }

        /// Appends a quoted SQL identifier (schema, table, column name).
        public mutating func appendInterpolation(identifier: String) {
            sql += PostgresQuery.quoteIdentifier(identifier)
        }

        /// Appends SQL text verbatim. The name says it: never pass input here.
        public mutating func appendInterpolation(unsafeRaw text: String) {
            sql += text
        }
    }

    /// Quotes an identifier the way PostgreSQL's `quote_ident` does.
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Appends another query, renumbering its `$N` placeholders after this query's binds.
    public mutating func append(_ other: PostgresQuery) {
        let offset = binds.count
        guard offset > 0, !other.binds.isEmpty else {
            sql += other.sql
            binds += other.binds
            return
        }
        var result = ""
        result.reserveCapacity(other.sql.utf8.count + 8)
        var iterator = other.sql.makeIterator()
        var pending: Character? = iterator.next()
        while let character = pending {
            pending = iterator.next()
            guard character == "$", let first = pending, first.isASCII, first.isNumber else {
                result.append(character)
                continue
            }
            var digits = ""
            while let next = pending, next.isASCII, next.isNumber {
                digits.append(next)
                pending = iterator.next()
            }
            result += "$\(Int(digits)! + offset)"
        }
        sql += result
        binds += other.binds
    }
}

/// A single bound parameter as sent to libpq.
public struct PostgresBind: Sendable, Equatable {
    public enum Format: Int32, Sendable { case text = 0, binary = 1 }
    public var bytes: [UInt8]?
    public var format: Format
    /// The PostgreSQL type OID, or 0 to let the server infer it from context.
    public var type: PostgresType

    public init(text: String, type: PostgresType) {
        self.bytes = Array(text.utf8)
        self.format = .text
        self.type = type
    }

    public init(binary: [UInt8], type: PostgresType) {
        self.bytes = binary
        self.format = .binary
        self.type = type
    }

    public init(null type: PostgresType) {
        self.bytes = nil
        self.format = .text
        self.type = type
    }
}

/// PostgreSQL type OIDs used for binds.
public struct PostgresType: RawRepresentable, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let unspecified = PostgresType(rawValue: 0)
    public static let bool = PostgresType(rawValue: 16)
    public static let bytea = PostgresType(rawValue: 17)
    public static let int8 = PostgresType(rawValue: 20)
    public static let int4 = PostgresType(rawValue: 23)
    public static let text = PostgresType(rawValue: 25)
    public static let jsonb = PostgresType(rawValue: 3802)
    public static let float8 = PostgresType(rawValue: 701)
    public static let timestamptz = PostgresType(rawValue: 1184)
    public static let date = PostgresType(rawValue: 1082)
    public static let uuid = PostgresType(rawValue: 2950)
    public static let textArray = PostgresType(rawValue: 1009)
    public static let int8Array = PostgresType(rawValue: 1016)
    public static let uuidArray = PostgresType(rawValue: 2951)
    // Further column types a result in the binary format is read from.
    public static let name = PostgresType(rawValue: 19)
    public static let int2 = PostgresType(rawValue: 21)
    public static let json = PostgresType(rawValue: 114)
    public static let float4 = PostgresType(rawValue: 700)
    public static let unknown = PostgresType(rawValue: 705)
    public static let bpchar = PostgresType(rawValue: 1042)
    public static let varchar = PostgresType(rawValue: 1043)
    public static let timestamp = PostgresType(rawValue: 1114)
}
