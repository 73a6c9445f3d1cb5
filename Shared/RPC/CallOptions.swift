/// Per-call options for a client.
public struct CallOptions: Sendable {
    /// How long to wait for the response. When the call is made while serving another
    /// call, the effective timeout is the smaller of this and the time that call has
    /// left, so a deadline propagates down a chain of services.
    public var timeout: Duration?
    /// Extra metadata sent with the call.
    public var metadata: Metadata
    /// Overrides the method's retry eligibility (e.g. a money-moving call made safe to
    /// retry by an idempotency key).
    public var retryable: Bool?

    public init(timeout: Duration? = nil, metadata: Metadata = [:], retryable: Bool? = nil) {
        self.timeout = timeout
        self.metadata = metadata
        self.retryable = retryable
    }
}
