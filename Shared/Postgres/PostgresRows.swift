import CLibPQ
import Foundation

/// The rows a statement returned, fully read into memory.
///
/// The rows keep libpq's result alive and read cells straight out of it: no copy of the
/// cells, and no `String` made for a value that is not a string (an id, a number, a time,
/// bytes). The result is immutable once received, so reading it from any thread is safe.
public struct PostgresRows: Sendable, RandomAccessCollection {
    /// A result's column names and their positions. A prepared statement's results all
    /// have the same columns, so the connection keeps one per statement (see
    /// `PostgresConnection.read`) instead of making the names again for every result.
    final class Layout: Sendable {
        let columns: [String]
        let columnIndex: [String: Int]

        init(result: OpaquePointer) {
            let columnCount = Int(PQnfields(result))
            var columns: [String] = []
            columns.reserveCapacity(columnCount)
            var index: [String: Int] = [:]
            for position in 0..<columnCount {
                let name = String(cString: PQfname(result, Int32(position)))
                columns.append(name)
                if index[name] == nil { index[name] = position }
            }
            self.columns = columns
            self.columnIndex = index
        }

        /// Whether `result` has these columns, in this order (compared without making
        /// `String`s).
        func matches(_ result: OpaquePointer) -> Bool {
            guard Int(PQnfields(result)) == columns.count else { return false }
            for (position, name) in columns.enumerated() {
                guard let actual = PQfname(result, Int32(position)) else { return false }
                var name = name
                let same = name.withUTF8 { utf8 -> Bool in
                    for (index, byte) in utf8.enumerated() where UInt8(bitPattern: actual[index]) != byte { return false }
                    return actual[utf8.count] == 0
                }
                guard same else { return false }
            }
            return true
        }
    }

    final class Storage: @unchecked Sendable {
        let layout: Layout
        var columns: [String] { layout.columns }
        var columnIndex: [String: Int] { layout.columnIndex }
        let rowCount: Int
        private let result: OpaquePointer

        /// Takes ownership of `result` (cleared when the last row is gone); `layout` must be
        /// the result's own (by default it is read from the result).
        init(result: OpaquePointer, layout: Layout? = nil) {
            self.result = result
            self.layout = layout ?? Layout(result: result)
            self.rowCount = Int(PQntuples(result))
        }

        deinit { PQclear(result) }

        /// The libpq result, for `PostgresCells` (valid while `self` lives).
        var resultHandle: OpaquePointer { result }

        /// The cell's text as UTF-8 bytes (or its binary value's bytes; valid while `self`
        /// lives), or nil for NULL.
        func cell(row: Int, column: Int) -> UnsafeBufferPointer<UInt8>? {
            if PQgetisnull(result, Int32(row), Int32(column)) == 1 { return nil }
            let length = Int(PQgetlength(result, Int32(row), Int32(column)))
            let start = UnsafeRawPointer(PQgetvalue(result, Int32(row), Int32(column))!).assumingMemoryBound(to: UInt8.self)
            return UnsafeBufferPointer(start: start, count: length)
        }
    }

    let storage: Storage
    /// Rows changed by an INSERT/UPDATE/DELETE (0 for other statements).
    public let affectedRows: Int

    init(storage: Storage, affectedRows: Int) {
        self.storage = storage
        self.affectedRows = affectedRows
    }

    public var columns: [String] { storage.columns }
    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.rowCount }
    public subscript(position: Int) -> PostgresRow {
        precondition(position >= 0 && position < storage.rowCount, "row index out of range")
        return PostgresRow(storage: storage, row: position)
    }
}

/// One result row. Decode columns by name:
/// `let id = try row.decode("id", as: UUID.self)`, or by position in hot loops.
public struct PostgresRow: Sendable {
    let storage: PostgresRows.Storage
    let row: Int

    /// The result's column names, in order.
    public var columns: [String] { storage.columns }

    /// Decodes the named column; the error names the column and the expected type.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let position = storage.columnIndex[column] else {
            throw PostgresError(
                kind: .decoding, safeMessage: "no column \"\(column)\" in the result (expected \(T.postgresExpectation))",
                column: column)
        }
        return try withExtendedLifetime(storage) {
            try PostgresCells.decode(storage.cell(row: row, column: position), result: storage.resultHandle, column: position) { column }
        }
    }

    /// Decodes the column at a position (0-based).
    public func decode<T: PostgresDecodable>(at position: Int, as type: T.Type = T.self) throws -> T {
        guard position >= 0, position < storage.columns.count else {
            throw PostgresError(kind: .decoding, safeMessage: "no column at position \(position)")
        }
        return try withExtendedLifetime(storage) {
            try PostgresCells.decode(storage.cell(row: row, column: position), result: storage.resultHandle, column: position) {
                storage.columns[position]
            }
        }
    }

    /// Reads this row's cells for as long as `body` runs, without retaining the result for
    /// each one (a hot loop over many rows and columns). The cells, and the bytes they
    /// give, must not be kept or returned: they point into the result, which may be freed
    /// once `body` returns.
    public func withCells<T>(_ body: (PostgresCells) throws -> T) rethrows -> T {
        try withExtendedLifetime(storage) {
            try body(PostgresCells(result: storage.resultHandle, row: Int32(row), columnCount: storage.columns.count))
        }
    }

    /// Whether the named column is NULL (or absent).
    public func isNull(_ column: String) -> Bool {
        guard let position = storage.columnIndex[column] else { return true }
        return storage.cell(row: row, column: position) == nil
    }
}


/// A row's cells, valid only inside `PostgresRow.withCells` (never store or return it).
public struct PostgresCells {
    let result: OpaquePointer
    let row: Int32
    let columnCount: Int

    /// Whether the column's cells are in the binary format (see
    /// `PostgresQuery.binaryResults()`): then `utf8` gives the value's bytes, not text.
    public func isBinary(_ position: Int) -> Bool {
        position >= 0 && position < columnCount && PQfformat(result, Int32(position)) == 1
    }

    /// A `uuid` cell in either format (nil for NULL).
    public func uuid(_ position: Int) throws -> UUID? {
        try decode(position, as: UUID?.self)
    }

    /// The cell's text (nil for NULL); for a binary column, the value's bytes.
    public func utf8(_ position: Int) throws -> UnsafeBufferPointer<UInt8>? {
        guard position >= 0, position < columnCount else {
            throw PostgresError(kind: .decoding, safeMessage: "no column at position \(position)")
        }
        let column = Int32(position)
        if PQgetisnull(result, row, column) == 1 { return nil }
        let start = UnsafeRawPointer(PQgetvalue(result, row, column)!).assumingMemoryBound(to: UInt8.self)
        return UnsafeBufferPointer(start: start, count: Int(PQgetlength(result, row, column)))
    }

    /// Decodes the cell at a position.
    public func decode<T: PostgresDecodable>(_ position: Int, as type: T.Type = T.self) throws -> T {
        try Self.decode(try utf8(position), result: result, column: position) {
            String(cString: PQfname(result, Int32(position)))
        }
    }

    /// Decodes one cell of `result` in its column's format: text, or binary for a
    /// statement asked for in binary (`PostgresQuery.binaryResults()`), by the column's
    /// type. `name` is asked for only when decoding fails, to name the column in the error
    /// (names are not made per cell).
    static func decode<T: PostgresDecodable>(_ cell: UnsafeBufferPointer<UInt8>?, result: OpaquePointer, column position: Int,
                                             name: () -> String) throws -> T {
        let column = Int32(position)
        if PQfformat(result, column) == 1 {
            let type = PostgresType(rawValue: UInt32(PQftype(result, column)))
            do {
                return try T.decode(nullableBinary: cell, type: type, column: "")
            } catch {
                return try T.decode(nullableBinary: cell, type: type, column: name())
            }
        }
        do {
            return try T.decode(nullableUTF8: cell, column: "")
        } catch {
            return try T.decode(nullableUTF8: cell, column: name())
        }
    }
}
