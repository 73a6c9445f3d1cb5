import Auth
import Contracts
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC
import RPCTransport
import SwiftProtobuf
import WholeCareCrypto

/// What every route needs: the upstream clients, token verification, rate limits and
/// settings. Routes translate HTTP/JSON to RPC and back; no database is ever touched.
public struct API: Sendable {
    public let settings: GatewaySettings
    let identity: Wholecare_Identity_V1_Identity.Client
    let records: Wholecare_Records_V1_Records.Client
    let ledger: Wholecare_Ledger_V1_Ledger.Client
    let health: [(name: String, client: Wholecare_Health_V1_Health.Client)]
    let verifier: TokenVerifier
    let byAddress: RateLimiter
    let byAccount: RateLimiter
    let logger: Logger

    public init(settings: GatewaySettings, identity: any RPCChannel, records: any RPCChannel, ledger: any RPCChannel, logger: Logger) {
        self.settings = settings
        self.identity = .init(RPCClient(channel: identity))
        self.records = .init(RPCClient(channel: records))
        self.ledger = .init(RPCClient(channel: ledger))
        self.health = [("identity", .init(RPCClient(channel: identity))), ("records", .init(RPCClient(channel: records))),
                       ("ledger", .init(RPCClient(channel: ledger)))]
        let keysClient = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: identity))
        let keysBudget = settings.callBudget
        self.verifier = TokenVerifier {
            let response = try await keysClient.getSigningKeys(.init(), options: CallOptions(timeout: keysBudget))
            var keys: [String: Ed25519.PublicKey] = [:]
            for key in response.keys { keys[key.kid] = try Ed25519.PublicKey(rawRepresentation: Array(key.publicKey)) }
            return keys
        }
        self.byAddress = RateLimiter(limit: settings.authAttemptsPerMinute)
        self.byAccount = RateLimiter(limit: settings.authAttemptsPerMinute)
        self.logger = logger
    }

    /// Call options for an upstream call made for this request: the caller's token, the
    /// request id as trace id, and the route's time budget as the deadline: the
    /// configured call budget, or three times it for an export.
    func options(_ request: Request, _ context: GatewayContext, token: String? = nil, export: Bool = false,
                 idempotencyKey: String? = nil) -> CallOptions {
        var metadata: Metadata = [MetadataKey.traceID: context.requestID]
        if let token { metadata[MetadataKey.authorization] = "Bearer " + token }
        if let idempotencyKey { metadata[MetadataKey.idempotencyKey] = idempotencyKey }
        return CallOptions(timeout: export ? settings.callBudget * 3 : settings.callBudget, metadata: metadata)
    }

    /// An upstream call whose reply is the response body, written as JSON straight from
    /// the reply's bytes (`WireJSON`).
    func relay<Input, Output>(_ client: RPCClient, _ method: MethodDescriptor<Input, Output>, _ request: Input,
                              options: CallOptions, status: HTTPResponse.Status = .ok) async throws -> Response {
        let payload = try await client.unaryPayload(method, request, options: options)
        return try ProtoJSON.response(payload: payload, as: Output.self, status: status)
    }

    /// The authenticated caller (checked once per request: see `Registrar.add`).
    func caller(_ request: Request, _ context: GatewayContext) async throws -> Principal {
        if let caller = context.caller { return caller }
        return try await Credentials.caller(request, verifier: verifier)
    }

    func body<M: SwiftProtobuf.Message>(_ request: Request, _ context: GatewayContext, _ type: M.Type) async throws -> M {
        try await ProtoJSON.body(request, context: context, as: type, limit: settings.maxBodyBytes)
    }

    /// The `Idempotency-Key` header, required on calls that move money or book something.
    func idempotencyKey(_ request: Request) throws -> String {
        guard let key = request.headers[.idempotencyKey], Validate.isIdempotencyKey(key) else {
            throw Problem.badRequest("send an Idempotency-Key header (up to 200 printable ASCII characters, no spaces) with calls that move money",
                                     field: "Idempotency-Key")
        }
        return key
    }

    func pathID(_ context: GatewayContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name), value.count == 36, UUID(uuidString: value) != nil else {
            throw Problem.badRequest("\(name) must be an id (a UUID)", field: name)
        }
        return value.lowercased()
    }

    func query(_ request: Request, _ name: String) -> String? {
        request.uri.queryParameters.get(name)
    }

    func pageSize(_ request: Request, max: Int) throws -> UInt32 {
        guard let text = query(request, "page_size") else { return 0 }
        guard let value = UInt32(text), value >= 1, value <= max else {
            throw Problem.badRequest("page_size must be a whole number from 1 to \(max)", field: "page_size")
        }
        return value
    }

    /// Sign-in and registration limits: per client address and per account. The account
    /// is the e-mail as identity reads it (trimmed, lower-cased), so spellings of one
    /// account that identity treats as the same share one limit.
    func rateLimit(_ request: Request, _ context: GatewayContext, account: String) throws {
        let accountKey = "acct:" + account.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let retry = [byAddress.attempt("ip:" + Self.rateLimitKey(clientAddress(request, context))), byAccount.attempt(accountKey)].compactMap { $0 }.max()
        if let retry {
            var problem = Problem(status: .tooManyRequests, type: "too-many-requests", title: "Too Many Requests",
                                  detail: "too many attempts; try again in \(retry) seconds")
            problem.headers[.retryAfter] = String(retry)
            throw problem
        }
    }
}

/// The documented routes: method, path (Hummingbird syntax) and OpenAPI operation id.
/// The OpenAPI document and this table are checked against each other by a test.
public struct RouteSpec: Sendable, Hashable {
    public let method: String
    public let path: String
    public let operationID: String

    /// `/v1/people/:person_id/record` → `/v1/people/{person_id}/record`.
    public var openAPIPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(":") ? "{" + $0.dropFirst() + "}" : String($0) }.joined(separator: "/")
    }
}
