import Foundation
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

    /// The cached token, renewed when less than a minute is left.
    public func token() async throws -> String {
        if let current = state.withLock({ $0 }), current.expiresAt.timeIntervalSinceNow > 60 { return current.token }
        let fresh = try await source()
        state.withLock { $0 = fresh }
        return fresh.token
    }
}
