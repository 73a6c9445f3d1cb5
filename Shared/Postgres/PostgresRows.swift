/// The rows a statement returned, fully read into memory.
public struct PostgresRows: Sendable, RandomAccessCollection {
    final class Storage: Sendable {
        let columns: [String]
        let columnIndex: [String: Int]
        /// Row-major cells in text format; `nil` is SQL NULL.
        let cells: [Substring?]
        let rowCount: Int

        init(columns: [String], cells: [Substring?], rowCount: Int) {
            self.columns = columns
            var index: [String: Int] = [:]
            for (position, name) in columns.enumerated() where index[name] == nil { index[name] = position }
            self.columnIndex = index
            self.cells = cells
            self.rowCount = rowCount
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
    public subscript(position: Int) -> PostgresRow { PostgresRow(storage: storage, row: position) }
}

/// One result row. Decode columns by name:
/// `let id = try row.decode("id", as: UUID.self)`.
public struct PostgresRow: Sendable {
    let storage: PostgresRows.Storage
    let row: Int

    /// Decodes the named column; the error names the column and the expected type.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let position = storage.columnIndex[column] else {
            throw PostgresError(
                kind: .decoding, safeMessage: "no column \"\(column)\" in the result (expected \(T.postgresExpectation))",
                column: column)
        }
        return try T.decode(nullable: storage.cells[row * storage.columns.count + position], column: column)
    }

    /// Decodes the column at a position (0-based).
    public func decode<T: PostgresDecodable>(at position: Int, as type: T.Type = T.self) throws -> T {
        guard position >= 0, position < storage.columns.count else {
            throw PostgresError(kind: .decoding, safeMessage: "no column at position \(position)")
        }
        return try T.decode(
            nullable: storage.cells[row * storage.columns.count + position], column: storage.columns[position])
    }

    /// Whether the named column is NULL (or absent).
    public func isNull(_ column: String) -> Bool {
        guard let position = storage.columnIndex[column] else { return true }
        return storage.cells[row * storage.columns.count + position] == nil
    }
}
