import Foundation
import Logging
import RPC
import Synchronization

/// The authenticated caller of an RPC, attached by `AuthInterceptor`.
public struct AuthenticatedCaller: Sendable {
    /// Whose rights apply: the caller, or — when a WholeCare service calls on a person's
    /// behalf — that person (from the `on-behalf-of` token).
    public let principal: Principal
    /// The service that relayed the call, if it was relayed.
    public let relayedBy: Principal?
}

enum CallerKey: ContextKey {
    typealias Value = AuthenticatedCaller
}

extension ServerContext {
    /// The authenticated caller, or UNAUTHENTICATED.
    public func caller() throws -> AuthenticatedCaller {
        guard let caller = values[CallerKey.self] else {
            throw RPCError(code: .unauthenticated, message: "this method needs a bearer token")
        }
        return caller
    }

    /// The principal whose rights apply to this call.
    public func principal() throws -> Principal { try caller().principal }
}

/// Verifies the bearer token on every call except the methods listed as public, and
/// attaches the caller. A WholeCare service may add `on-behalf-of: <person's token>`; the
/// call is then decided on that person's rights, never the service's.
public struct AuthInterceptor: ServerInterceptor {
    public let verifier: TokenVerifier
    public let publicMethods: Set<String>

    public init(verifier: TokenVerifier, publicMethods: Set<String>) {
        self.verifier = verifier
        self.publicMethods = publicMethods.union(Self.alwaysPublic)
    }

    static let alwaysPublic: Set<String> = ["wholecare.health.v1.Health/Check", "wholecare.health.v1.Health/ListMethods"]

    public func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
        var context = context
        if let header = request.metadata[MetadataKey.authorization] {
            let caller = try await authenticate(header: header, onBehalfOf: request.metadata[MetadataKey.onBehalfOf])
            context.values[CallerKey.self] = caller
            let principal = caller.principal
            context.lazyLogMetadata.append { ["caller": .string("\(principal.kind.rawValue):\(principal.subject)")] }
        } else if !publicMethods.contains(request.method) {
            throw RPCError(code: .unauthenticated, message: "this method needs a bearer token")
        }
        let final = context
        return try await ServerContext.$current.withValue(final) { try await next(request, final) }
    }

    func authenticate(header: String, onBehalfOf: String?) async throws -> AuthenticatedCaller {
        // A refusal says which token it refused: a service relaying a person's token must
        // not pass the refusal of its own on as the person's (that would tell them to sign
        // in again).
        let ownRefused: Metadata = [MetadataKey.refusedToken: MetadataKey.authorization]
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw RPCError(code: .unauthenticated, message: "the authorization header must be 'Bearer <token>'", metadata: ownRefused)
        }
        let principal: Principal
        do {
            principal = try await verifier.verify(String(header.dropFirst(7)))
        } catch is TokenRejection {
            throw RPCError(code: .unauthenticated, message: "the token is invalid or expired", metadata: ownRefused)
        } catch {
            throw RPCError(code: .unavailable, message: "the token could not be checked right now")
        }
        guard let onBehalfOf else { return AuthenticatedCaller(principal: principal, relayedBy: nil) }
        guard principal.kind == .service else {
            throw RPCError(code: .permissionDenied, message: "only WholeCare services may act on behalf of someone")
        }
        do {
            let person = try await verifier.verify(onBehalfOf)
            return AuthenticatedCaller(principal: person, relayedBy: principal)
        } catch {
            throw RPCError(code: .unauthenticated, message: "the on-behalf-of token is invalid or expired",
                           metadata: [MetadataKey.refusedToken: MetadataKey.onBehalfOf])
        }
    }
}
