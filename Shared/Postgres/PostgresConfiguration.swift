/// How a ``PostgresClient`` connects and sizes its pool. Every field has a default.
public struct PostgresConfiguration: Sendable {
    /// A libpq connection string: `postgresql://user:pass@host:port/db?...` or `key=value` pairs.
    public var connectionString: String
    /// The most connections the pool opens (and threads it runs blocking calls on).
    public var maxConnections: Int
    /// How long a caller waits for a free connection before failing with `.poolTimeout`.
    public var acquireTimeout: Duration
    /// libpq's `connect_timeout`, in seconds.
    public var connectTimeoutSeconds: Int
    /// Shown in `pg_stat_activity`.
    public var applicationName: String
    /// Prepared statements kept per connection before the cache is reset.
    public var statementCacheLimit: Int
    /// How many times `withTransaction` runs the body when it meets a serialization
    /// failure or deadlock (SQLSTATE 40001 / 40P01) or a lost connection before commit.
    public var transactionAttempts: Int
    /// Schema search path set on each new connection (`nil` keeps the role's default).
    public var searchPath: String?
    /// The longest a statement waits for a lock another session holds (a row being
    /// written, an advisory lock) before failing with SQLSTATE 55P03 (`isLockTimeout`);
    /// `nil` keeps the server's setting (by default, wait for ever).
    public var lockTimeout: Duration?

    public init(
        connectionString: String = "postgresql:///wholecare",
        maxConnections: Int = 8,
        acquireTimeout: Duration = .seconds(5),
        connectTimeoutSeconds: Int = 5,
        applicationName: String = "wholecare",
        statementCacheLimit: Int = 512,
        transactionAttempts: Int = 6,
        searchPath: String? = nil,
        lockTimeout: Duration? = nil
    ) {
        self.connectionString = connectionString
        self.maxConnections = maxConnections
        self.acquireTimeout = acquireTimeout
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.applicationName = applicationName
        self.statementCacheLimit = statementCacheLimit
        self.transactionAttempts = transactionAttempts
        self.searchPath = searchPath
        self.lockTimeout = lockTimeout
    }
}

/// Transaction isolation levels.
public enum PostgresIsolation: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

/// A notification delivered by `LISTEN`.
public struct PostgresNotification: Sendable, Equatable {
    public var channel: String
    public var payload: String
    /// `true` for the synthetic event sent after the listener reconnected: notifications
    /// may have been missed, so consumers should rescan whatever they watch.
    public var isReconnect: Bool
}

extension Duration {
    /// The value for `lock_timeout`: whole milliseconds, at least 1 (0 would mean "wait
    /// for ever").
    var lockTimeoutMilliseconds: Int64 {
        max(1, components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
