import Foundation
import SwiftProtobuf
import Synchronization

/// A call as a client sends it to a channel.
public struct ClientRequest: Sendable {
    public var method: String
    public var metadata: Metadata
    /// Time the caller will wait; `nil` for no deadline.
    public var timeout: Duration?
    public var payload: Data

    public init(method: String, metadata: Metadata, timeout: Duration?, payload: Data) {
        self.method = method
        self.metadata = metadata
        self.timeout = timeout
        self.payload = payload
    }
}

/// A way to deliver calls: a TCP connection pool, or an in-process router.
/// Implementations throw `RPCError` for every failure.
public protocol RPCChannel: Sendable {
    func unary(_ request: ClientRequest) async throws -> RawResponse
}

/// Wraps every call a client makes (adding credentials, logging, metrics).
public protocol ClientInterceptor: Sendable {
    func intercept(
        _ request: ClientRequest, next: @Sendable (ClientRequest) async throws -> RawResponse
    ) async throws -> RawResponse
}

/// Makes typed calls over a channel, forwarding deadlines and trace ids from the call
/// being served, and retrying UNAVAILABLE failures of idempotent methods within a budget.
public struct RPCClient: Sendable {
    public let channel: any RPCChannel
    public let interceptors: [any ClientInterceptor]
    public let retryPolicy: RetryPolicy
    let budget: RetryBudget
    private let chain: @Sendable (ClientRequest) async throws -> RawResponse

    public init(channel: any RPCChannel, interceptors: [any ClientInterceptor] = [], retryPolicy: RetryPolicy = .default) {
        self.channel = channel
        self.interceptors = interceptors
        self.retryPolicy = retryPolicy
        self.budget = RetryBudget(policy: retryPolicy)
        var chain: @Sendable (ClientRequest) async throws -> RawResponse = { request in try await channel.unary(request) }
        for interceptor in interceptors.reversed() {
            let next = chain
            chain = { request in try await interceptor.intercept(request, next: next) }
        }
        self.chain = chain
    }

    /// Sends one request and waits for its response.
    public func unary<Input, Output>(
        _ method: MethodDescriptor<Input, Output>, _ request: Input, options: CallOptions = CallOptions()
    ) async throws -> Output {
        let payload = try await unaryPayload(method, request, options: options)
        do {
            return try Output(serializedBytes: payload)
        } catch {
            throw RPCError(code: .internal, message: "the response is not a valid \(Output.protoMessageName)")
        }
    }

    /// Sends one request and returns its response's bytes undecoded, for a caller that
    /// relays them in another form (the gateway writes JSON straight from them).
    public func unaryPayload<Input, Output>(
        _ method: MethodDescriptor<Input, Output>, _ request: Input, options: CallOptions = CallOptions()
    ) async throws -> Data {
        let payload: Data
        do {
            payload = try WireEncoder.encode(request)
        } catch {
            throw RPCError(code: .internal, message: "the request could not be serialized")
        }
        var metadata = options.metadata
        var timeout = options.timeout
        if let serving = ServerContext.current {
            // Propagate the caller's deadline and trace id down the chain.
            if let left = serving.remainingTime { timeout = timeout.map { min($0, left) } ?? left }
            if metadata[MetadataKey.traceID] == nil, let trace = serving.metadata[MetadataKey.traceID] {
                metadata[MetadataKey.traceID] = trace
            }
        }
        let raw = ClientRequest(method: method.fullName, metadata: metadata, timeout: timeout, payload: payload)
        return try await send(raw, retryable: options.retryable ?? method.idempotent).payload
    }

    /// Sends a raw request through the interceptors, with retries where allowed.
    public func send(_ request: ClientRequest, retryable: Bool) async throws -> RawResponse {
        let chain = chain
        let started = ContinuousClock.now
        var attempt = 1
        while true {
            var attemptRequest = request
            if let timeout = request.timeout {
                let left = timeout - (ContinuousClock.now - started)
                guard left > .zero else { throw RPCError(code: .deadlineExceeded, message: "deadline exceeded") }
                attemptRequest.timeout = left
            }
            do {
                let response = try await chain(attemptRequest)
                budget.recordSuccess()
                return response
            } catch let error as RPCError where error.code == .unavailable && retryable {
                guard attempt < retryPolicy.maxAttempts, budget.allowRetry() else { throw error }
                let pause = retryPolicy.backoff(attempt: attempt)
                if let timeout = request.timeout, ContinuousClock.now - started + pause >= timeout { throw error }
                try await Task.sleep(for: pause)
                attempt += 1
            } catch let error as RPCError {
                if error.code == .unavailable { budget.recordFailure() }
                throw error
            }
        }
    }
}

/// When and how often a client retries.
public struct RetryPolicy: Sendable {
    /// Attempts in total, including the first.
    public var maxAttempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Retry budget (gRPC's retry throttling): tokens start at `maxTokens`; each failed
    /// attempt spends one, each success earns `tokenRatio`; retries happen only while
    /// more than half the tokens remain, so a failing dependency never sees more than a
    /// bounded multiple of the original load.
    public var maxTokens: Double
    public var tokenRatio: Double

    public init(maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(50), maxBackoff: Duration = .seconds(1),
                maxTokens: Double = 10, tokenRatio: Double = 0.1) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxTokens = maxTokens
        self.tokenRatio = tokenRatio
    }

    public static let `default` = RetryPolicy()
    public static let none = RetryPolicy(maxAttempts: 1)

    /// Full jitter: uniformly random in [0, min(max, initial · 2^(attempt-1))].
    public func backoff(attempt: Int) -> Duration {
        let ceiling = min(Double(maxBackoff.components.seconds) + Double(maxBackoff.components.attoseconds) / 1e18,
                          (Double(initialBackoff.components.seconds) + Double(initialBackoff.components.attoseconds) / 1e18)
                            * pow(2, Double(attempt - 1)))
        return .nanoseconds(Int64(Double.random(in: 0...ceiling) * 1e9))
    }
}

/// The shared token bucket behind `RetryPolicy`'s budget.
final class RetryBudget: Sendable {
    private let tokens: Mutex<Double>
    private let full: Atomic<Bool>
    private let maxTokens: Double
    private let ratio: Double

    init(policy: RetryPolicy) {
        self.tokens = Mutex(policy.maxTokens)
        self.full = Atomic(true)
        self.maxTokens = policy.maxTokens
        self.ratio = policy.tokenRatio
    }

    func recordSuccess() {
        // The common case — a healthy server and a full bucket — touches no lock.
        guard !full.load(ordering: .relaxed) else { return }
        tokens.withLock {
            $0 = min(maxTokens, $0 + ratio)
            if $0 >= maxTokens { full.store(true, ordering: .relaxed) }
        }
    }

    func recordFailure() {
        tokens.withLock { $0 = max(0, $0 - 1) }
        full.store(false, ordering: .relaxed)
    }

    /// Spends a token for the failure that prompted the retry; allows the retry only
    /// while the bucket stays above half.
    func allowRetry() -> Bool {
        full.store(false, ordering: .relaxed)
        return tokens.withLock { value in
            value = max(0, value - 1)
            return value > maxTokens / 2
        }
    }

    var available: Double { tokens.withLock { $0 } }
}
