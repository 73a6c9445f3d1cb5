import Foundation
import Logging
import RPC
import Synchronization

/// Adds a WholeCare service's own bearer token to its outgoing calls and, when the call
/// is made while serving a person, that person's token as `on-behalf-of`, so the callee
/// decides on the person's rights.
public final class ServiceCredentials: ClientInterceptor, Sendable {
    public typealias TokenSource = @Sendable () async throws -> (token: String, expiresAt: Date)

    private let source: TokenSource
    private let state = Mutex<State>(State())

    private struct State {
        var current: (token: String, expiresAt: Date)?
        /// The sign-in under way, which every call that needs a token meanwhile awaits
        /// (calls refused together sign in once, not once each).
        var signingIn: Task<(token: String, expiresAt: Date), any Error>?
    }

    public init(source: @escaping TokenSource) {
        self.source = source
    }

    public func intercept(
        _ request: ClientRequest, next: @Sendable (ClientRequest) async throws -> RawResponse
    ) async throws -> RawResponse {
        var request = request
        if request.metadata[MetadataKey.onBehalfOf] == nil, let serving = ServerContext.current,
           let caller = try? serving.caller(), caller.principal.kind != .service {
            request.metadata[MetadataKey.onBehalfOf] = caller.principal.token
        }
        do {
            return try await send(request, next: next)
        } catch var error as RPCError where error.metadata[MetadataKey.refusedToken] != nil {
            // `refused-token` names the tokens of this hop only: passed on, a caller further
            // up would read it as speaking of its own (and might make again a call whose
            // work was done).
            error.metadata.remove(MetadataKey.refusedToken)
            throw error
        }
    }

    private func send(_ request: ClientRequest, next: @Sendable (ClientRequest) async throws -> RawResponse) async throws -> RawResponse {
        guard request.metadata[MetadataKey.authorization] == nil else { return try await next(request) }
        var request = request
        let started = ContinuousClock.now
        let sent = try await token()
        request.metadata[MetadataKey.authorization] = "Bearer " + sent
        do {
            return try await next(request)
        } catch let error as RPCError where Self.refusedOwnToken(error) {
            // The callee no longer accepts this service's token (the key that signed it
            // withdrawn, say) while the person's, if any, may be fine. It refused before
            // doing anything, so the call is made once more with a fresh token, within
            // what is left of the caller's time; a second refusal is this deployment's
            // fault (INTERNAL), never the person's.
            forget(sent)
            let fresh = try await token()
            var refusal = error
            if fresh != sent {
                if let timeout = request.timeout {
                    let left = timeout - (ContinuousClock.now - started)
                    guard left > .zero else { throw RPCError(code: .deadlineExceeded, message: "deadline exceeded") }
                    request.timeout = left
                }
                request.metadata[MetadataKey.authorization] = "Bearer " + fresh
                do {
                    return try await next(request)
                } catch let again as RPCError where Self.refusedOwnToken(again) {
                    refusal = again
                }
            }
            forget(fresh)
            throw refused(refusal, byCallee: true)
        }
    }

    /// The callee's answer when it refused the token this service sent as its own (a
    /// callee that does not say which token it refused is taken at its word).
    private static func refusedOwnToken(_ error: RPCError) -> Bool {
        error.code == .unauthenticated && error.metadata[MetadataKey.refusedToken] == MetadataKey.authorization
    }

    /// Drops the cached token, unless another call has already replaced it.
    private func forget(_ token: String) {
        state.withLock { if $0.current?.token == token { $0.current = nil } }
    }

    /// The cached token, renewed when less than a minute is left. Identity refusing the
    /// service's own client id and secret is this deployment's fault, never the caller's:
    /// INTERNAL (see `refused`), not the UNAUTHENTICATED that would tell a person to sign in again.
    public func token() async throws -> String {
        enum Next { case cached(String), await(Task<(token: String, expiresAt: Date), any Error>) }
        let source = self.source
        let next = state.withLock { locked -> Next in
            if let current = locked.current, current.expiresAt.timeIntervalSinceNow > 60 { return .cached(current.token) }
            if let signingIn = locked.signingIn { return .await(signingIn) }
            // Detached: the sign-in is shared, so it must not run under the first caller's
            // deadline or context (every waiter would fail with that caller's deadline).
            // It clears its own slot (no other sign-in starts while it is set) and keeps
            // its token, so that its outcome is never handed to a caller who came after it
            // ended: a failure would be, when every caller that waited for it had been cancelled.
            let signingIn = Task.detached { [self] in
                let result: Result<(token: String, expiresAt: Date), any Error>
                do { result = .success(try await source()) } catch { result = .failure(error) }
                self.state.withLock { locked in
                    locked.signingIn = nil
                    if case .success(let fresh) = result { locked.current = fresh }
                }
                return try result.get()
            }
            locked.signingIn = signingIn
            return .await(signingIn)
        }
        switch next {
        case .cached(let token):
            return token
        case .await(let signingIn):
            let result = try await Self.waitFor(signingIn)
            do {
                return try result.get().token
            } catch let error as RPCError where Self.isRefusal(error) {
                throw refused(error)
            }
        }
    }

    /// Whether a sign-in is under way (for tests: one that has ended never is).
    var isSigningIn: Bool { state.withLock { $0.signingIn != nil } }

    /// The shared sign-in's outcome; a caller cancelled meanwhile stops waiting at once
    /// (CANCELLED), and the sign-in goes on for the others.
    private static func waitFor<T: Sendable>(_ task: Task<T, any Error>) async throws -> Result<T, any Error> {
        let waiter = Waiter<Result<T, any Error>>()
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>?, Never>) in
                waiter.set(continuation)
                Task { waiter.resume(with: await task.result) }
                if Task.isCancelled { waiter.resume(with: nil) }
            }
        } onCancel: {
            waiter.resume(with: nil)
        }
        guard let outcome else { throw RPCError(code: .cancelled, message: "the call was cancelled") }
        return outcome
    }

    /// Makes a call in the service's own name (no person's token goes with it), given the
    /// `authorization` value to send. A refusal is answered as for `token()`. When identity
    /// no longer accepts the token itself (UNAUTHENTICATED: identity restarted with new
    /// keys, say), the cached token is dropped, unless another call has already replaced
    /// it, so that the next call signs in afresh.
    public func inOwnName<T>(_ call: (_ authorization: String) async throws -> T) async throws -> T {
        let sent = try await token()
        do {
            return try await call("Bearer " + sent)
        } catch let error as RPCError where Self.isRefusal(error) {
            if error.code == .unauthenticated { forget(sent) }
            throw refused(error)
        }
    }

    private static func isRefusal(_ error: RPCError) -> Bool {
        error.code == .unauthenticated || error.code == .permissionDenied
    }

    private func refused(_ error: RPCError, byCallee: Bool = false) -> RPCError {
        let logger = ServerContext.current?.logger ?? Logger(label: "wholecare.service-credentials")
        if byCallee {
            logger.error("a service refused this service's token just issued by identity; check that IDENTITY_ADDRESS is the identity the other services trust, and the clocks",
                         metadata: ["status": "\(error.code)"])
        } else if error.code == .unauthenticated {
            logger.error("identity refused this service's own credentials; check SERVICE_CLIENT_ID and SERVICE_CLIENT_SECRET",
                         metadata: ["status": "\(error.code)"])
        } else {
            logger.error("identity refused a call this service made in its own name; check what its client id may do (IDENTITY_CARE_TEAM_FEED_CLIENTS for the care-team feed)",
                         metadata: ["status": "\(error.code)"])
        }
        return RPCError(code: .internal, message: "identity refused a call this service made in its own name")
    }
}

/// One waiter's continuation, resumed once: by the outcome or by cancellation, whichever
/// comes first (a cancellation that comes before the continuation is set is seen by the
/// waiter itself, which checks `Task.isCancelled` after setting it).
private final class Waiter<T: Sendable>: Sendable {
    private let slot = Mutex<CheckedContinuation<T?, Never>?>(nil)

    func set(_ continuation: CheckedContinuation<T?, Never>) {
        slot.withLock { $0 = continuation }
    }

    func resume(with value: T?) {
        slot.withLock { $0.take() }?.resume(returning: value)
    }
}
