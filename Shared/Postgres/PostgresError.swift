/// An error from the PostgreSQL layer.
///
/// `description` is deliberately generic: it names the kind of failure and the SQLSTATE,
/// never the server's message, the SQL text or bound values, so it is safe to show to a
/// caller or write to a log. `debugDescription` carries the server's detail for operators
/// reading a local debug session; it must not be returned to clients.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Could not open a connection (server down, wrong credentials, bad URL).
        case connectionFailed
        /// The connection broke while a statement was in flight. Retryable: the next call
        /// uses a fresh connection.
        case connectionLost
        /// The server rejected the statement; see `sqlState`.
        case server
        /// A column could not be decoded into the requested Swift type.
        case decoding
        /// No connection became free within the pool's acquire timeout.
        case poolTimeout
        /// The client has been shut down.
        case poolClosed
        /// A migration problem (changed checksum, bad file name, failed script).
        case migration
        /// A serialization failure or deadlock persisted after every retry.
        case retriesExhausted
    }

    public var kind: Kind
    /// The five-character SQLSTATE for server errors (e.g. `23505`).
    public var sqlState: String?
    /// The constraint that was violated, when the server reports one.
    public var constraint: String?
    /// The column a decoding error concerns, or a column the server reported.
    public var column: String?
    /// A message that is safe to show (never contains data values or SQL).
    public var safeMessage: String
    /// The server's own message and detail; for debugging only.
    public var serverMessage: String?

    public init(
        kind: Kind, safeMessage: String, sqlState: String? = nil, constraint: String? = nil,
        column: String? = nil, serverMessage: String? = nil
    ) {
        self.kind = kind
        self.safeMessage = safeMessage
        self.sqlState = sqlState
        self.constraint = constraint
        self.column = column
        self.serverMessage = serverMessage
    }

    /// Whether running the same work again on a fresh connection may succeed.
    public var isRetryable: Bool {
        switch kind {
        case .connectionLost, .connectionFailed, .poolTimeout: return true
        case .server: return sqlState.map(PostgresError.retryableStates.contains) ?? false
        default: return false
        }
    }

    /// `true` for 40001 (serialization_failure) and 40P01 (deadlock_detected).
    public var isSerializationFailure: Bool {
        kind == .server && (sqlState == "40001" || sqlState == "40P01")
    }

    public var isUniqueViolation: Bool { kind == .server && sqlState == "23505" }
    /// 55P03 (lock_not_available): a lock another session held was not released within
    /// the connection's `lockTimeout`. Nothing the statement did is kept.
    public var isLockTimeout: Bool { kind == .server && sqlState == "55P03" }
    public var isForeignKeyViolation: Bool { kind == .server && sqlState == "23503" }
    public var isCheckViolation: Bool { kind == .server && sqlState == "23514" }

    static let retryableStates: Set<String> = ["40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006"]

    public var description: String {
        var text = "PostgresError.\(kind): \(safeMessage)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let constraint { text += " [constraint \(constraint)]" }
        return text
    }

    public var debugDescription: String {
        var text = description
        if let serverMessage { text += " — server said: \(serverMessage)" }
        return text
    }
}
