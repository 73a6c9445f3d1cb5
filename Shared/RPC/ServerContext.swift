import Logging

/// What a handler knows about the call it is serving.
public struct ServerContext: Sendable {
    /// The full method name.
    public let method: String
    /// Metadata the caller sent (keys lower-case).
    public let metadata: Metadata
    /// When the caller stops waiting, if it set a timeout.
    public let deadline: ContinuousClock.Instant?
    /// The remote address, or `in-process`.
    public let peer: String
    /// A logger carrying the method and trace id. Composed when first used, so a call
    /// that logs nothing pays nothing for it.
    public var logger: Logger {
        get {
            var logger = storedLogger
            if !loggerComposed {
                logger[metadataKey: "method"] = .string(method)
                if let trace = metadata[MetadataKey.traceID] { logger[metadataKey: "trace_id"] = .string(trace) }
            }
            for extra in lazyLogMetadata {
                for (key, value) in extra() { logger[metadataKey: key] = value }
            }
            return logger
        }
        set {
            storedLogger = newValue
            loggerComposed = true
        }
    }
    private var storedLogger: Logger
    private var loggerComposed = false
    /// More metadata for `logger` (interceptors add theirs, such as the caller), made only
    /// when something logs.
    public var lazyLogMetadata: [@Sendable () -> Logger.Metadata] = []
    /// Values attached by interceptors (the authenticated principal, for one).
    public var values: ContextValues

    public init(
        method: String, metadata: Metadata, deadline: ContinuousClock.Instant?, peer: String, logger: Logger,
        values: ContextValues = ContextValues()
    ) {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.storedLogger = logger
        self.values = values
    }

    /// Time left before the deadline (never negative), or `nil` without one.
    public var remainingTime: Duration? {
        guard let deadline else { return nil }
        let left = deadline - ContinuousClock.now
        return left < .zero ? .zero : left
    }

    /// The context of the call the current task is serving, if any. Clients read it to
    /// forward the remaining time (and the trace id) to the calls they make.
    @TaskLocal public static var current: ServerContext?
}

/// Type-keyed values carried by a `ServerContext`.
public struct ContextValues: Sendable {
    private var storage: [ObjectIdentifier: any Sendable] = [:]

    public init() {}

    public subscript<Key: ContextKey>(key: Key.Type) -> Key.Value? {
        get { storage[ObjectIdentifier(key)] as? Key.Value }
        set { storage[ObjectIdentifier(key)] = newValue }
    }
}

/// A key for `ContextValues`.
public protocol ContextKey {
    associatedtype Value: Sendable
}
