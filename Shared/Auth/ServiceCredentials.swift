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
    private let state = Mutex<(token: String, expiresAt: Date)?>(nil)

    public init(source: @escaping TokenSource) {
        self.source = source
    }

    public func intercept(
        _ request: ClientRequest, next: @Sendable (ClientRequest) async throws -> RawResponse
    ) async throws -> RawResponse {
        var request = request
        if request.metadata[MetadataKey.authorization] == nil {
            request.metadata[MetadataKey.authorization] = "Bearer " + (try await token())
        }
        if request.metadata[MetadataKey.onBehalfOf] == nil, let serving = ServerContext.current,
           let caller = try? serving.caller(), caller.principal.kind != .service {
            request.metadata[MetadataKey.onBehalfOf] = caller.principal.token
        }
        return try await next(request)
    }

    /// The cached token, renewed when less than a minute is left. Identity refusing the
    /// service's own client id and secret is this deployment's fault, never the caller's:
    /// INTERNAL (see `refused`), not the UNAUTHENTICATED that would tell a person to sign in again.
    public func token() async throws -> String {
        if let current = state.withLock({ $0 }), current.expiresAt.timeIntervalSinceNow > 60 { return current.token }
        let fresh: (token: String, expiresAt: Date)
        do {
            fresh = try await source()
        } catch let error as RPCError where Self.isRefusal(error) {
            throw refused(error)
        }
        state.withLock { $0 = fresh }
        return fresh.token
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
            if error.code == .unauthenticated {
                state.withLock { if $0?.token == sent { $0 = nil } }
            }
            throw refused(error)
        }
    }

    private static func isRefusal(_ error: RPCError) -> Bool {
        error.code == .unauthenticated || error.code == .permissionDenied
    }

    private func refused(_ error: RPCError) -> RPCError {
        let logger = ServerContext.current?.logger ?? Logger(label: "wholecare.service-credentials")
        if error.code == .unauthenticated {
            logger.error("identity refused this service's own credentials; check SERVICE_CLIENT_ID and SERVICE_CLIENT_SECRET",
                         metadata: ["status": "\(error.code)"])
        } else {
            logger.error("identity refused a call this service made in its own name; check what its client id may do (IDENTITY_CARE_TEAM_FEED_CLIENTS for the care-team feed)",
                         metadata: ["status": "\(error.code)"])
        }
        return RPCError(code: .internal, message: "identity refused a call this service made in its own name")
    }
}
