import Contracts
import Foundation
import Logging
import RPC
import RPCTransport
import ServiceKit
import Synchronization
import WholeCareCrypto

/// A WholeCare service's connection to identity: verifies tokens with identity's keys,
/// decides access with identity's facts, and calls identity with the service's own
/// credentials (adding the person's token when acting for them).
public struct IdentityLink: Sendable {
    /// Display names of accounts and organisations, cached for five minutes.
    public func displayNames(_ ids: [UUID]) async throws -> [UUID: String] {
        let now = ContinuousClock.now
        var result: [UUID: String] = [:]
        var missing: [UUID] = []
        names.withLock { cache in
            for id in Set(ids) {
                if let hit = cache[id], now - hit.at < .seconds(300) { result[id] = hit.name } else { missing.append(id) }
            }
        }
        guard !missing.isEmpty else { return result }
        var request = Wholecare_Identity_V1_GetDisplayNamesRequest()
        request.accountIds = missing.map(\.lowercasedString)
        // Asked in the service's own name (display names are not personal data categories).
        let response = try await credentials.inOwnName { authorization in
            try await anonymousIdentity.getDisplayNames(request, options: CallOptions(metadata: ["authorization": authorization]))
        }
        names.withLock { cache in
            if cache.count > 20_000 { cache.removeAll() }
            for (key, name) in response.names {
                guard let id = UUID(hyphenated: key) else { continue }
                cache[id] = (name, now)
                result[id] = name
            }
        }
        return result
    }

    /// Which of these ids are organisations identity knows. The list is asked in the
    /// service's own name and kept for a minute; an id not in it is asked again once the
    /// list is a second old, so an organisation created a moment ago is found (and made-up
    /// ids cost at most one fetch a second).
    public func organisations(_ ids: [UUID]) async throws -> Set<UUID> {
        let wanted = Set(ids)
        let now = ContinuousClock.now
        // Answer from the list unless it is over a minute old, or misses an id and nobody
        // has asked identity in the last second (one call asks; the others use the list).
        let cached = organisationList.withLock { state -> Set<UUID>? in
            let fresh = state.at.map { now - $0 < .seconds(60) } ?? false
            let found = wanted.intersection(state.ids)
            if fresh && (found == wanted || state.asked.map({ now - $0 < .seconds(1) }) == true) { return found }
            state.asked = now
            return nil
        }
        if let cached { return cached }
        let response = try await credentials.inOwnName { authorization in
            try await anonymousIdentity.listOrganisations(.init(), options: CallOptions(metadata: ["authorization": authorization]))
        }
        let list = Set(response.organisations.compactMap { UUID(hyphenated: $0.id) })
        organisationList.withLock { state in
            if state.at.map({ $0 < now }) != false { (state.ids, state.at) = (list, now) }  // an older fetch never wins
        }
        return wanted.intersection(list)
    }

    /// Identity's API, authenticated as this service (plus `on-behalf-of` when serving a person).
    public let identity: Wholecare_Identity_V1_Identity.Client
    public let verifier: TokenVerifier
    public let authorizer: Authorizer
    public let credentials: ServiceCredentials
    var transport: RPCClientTransport?
    let anonymousIdentity: Wholecare_Identity_V1_Identity.Client
    private let names = NameCache()
    private let organisationList = OrganisationListCache()

    /// Reads `IDENTITY_ADDRESS` (host:port, default 127.0.0.1:7101), `SERVICE_CLIENT_ID`
    /// (default `svc-<service>`) and `SERVICE_CLIENT_SECRET` (required).
    public static func fromEnvironment(_ environment: EnvironmentConfiguration, service: String, logger: Logger) throws -> IdentityLink {
        let address = environment.string("IDENTITY_ADDRESS", default: "127.0.0.1:\(ServiceCatalog.identity.defaultPort)")
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else {
            throw ConfigurationError(variable: "IDENTITY_ADDRESS", problem: "must be host:port")
        }
        let secret = try environment.require("SERVICE_CLIENT_SECRET")
        let clientID = environment.string("SERVICE_CLIENT_ID", default: "svc-\(service)")
        let factsTTL = try environment.duration("ACCESS_FACTS_TTL", default: .seconds(30))
        guard factsTTL <= .seconds(60) else {
            throw ConfigurationError(variable: "ACCESS_FACTS_TTL", problem: "must be at most 60s (revocations must take effect within a minute)")
        }
        return IdentityLink(host: String(parts[0]), port: port, clientID: clientID, secret: secret, factsTTL: factsTTL, logger: logger)
    }

    public init(host: String, port: Int, clientID: String, secret: String, factsTTL: Duration = .seconds(30), logger: Logger) {
        let transport = RPCClientTransport(
            configuration: RPCClientConfiguration(host: host, port: port, agent: "wholecare-\(clientID)"), logger: logger)
        self.init(channel: transport, clientID: clientID, secret: secret, factsTTL: factsTTL)
        self.transport = transport
    }

    /// Over any channel (an in-process identity in tests).
    public init(channel: any RPCChannel, clientID: String, secret: String, factsTTL: Duration = .seconds(30)) {
        self.transport = nil
        let anonymous = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: channel))
        self.anonymousIdentity = anonymous
        let credentials = ServiceCredentials {
            var request = Wholecare_Identity_V1_SignInClientRequest()
            request.clientID = clientID
            request.clientSecret = secret
            let response = try await anonymous.signInClient(request, options: CallOptions(timeout: .seconds(5)))
            return (response.accessToken, Date().addingTimeInterval(TimeInterval(response.expiresInSeconds)))
        }
        self.credentials = credentials
        let identity = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: channel, interceptors: [credentials]))
        self.identity = identity
        self.verifier = TokenVerifier {
            let response = try await anonymous.getSigningKeys(Wholecare_Identity_V1_GetSigningKeysRequest(), options: CallOptions(timeout: .seconds(5)))
            var keys: [String: Ed25519.PublicKey] = [:]
            for key in response.keys { keys[key.kid] = try Ed25519.PublicKey(rawRepresentation: Array(key.publicKey)) }
            return keys
        }
        self.authorizer = Authorizer(factsTTL: factsTTL) { principal, person in
            guard let subject = principal.subjectID else { return .none }
            var request = Wholecare_Identity_V1_GetAccessFactsRequest()
            request.subjectID = subject.lowercasedString
            request.subjectOrganisationID = principal.organisationID?.lowercasedString ?? ""
            request.personID = person.lowercasedString
            // The service asks for facts in its own name, not the person's.
            let facts = try await credentials.inOwnName { authorization in
                try await anonymous.getAccessFacts(request, options: CallOptions(metadata: ["authorization": authorization]))
            }
            return IdentityLink.policyFacts(facts)
        }
    }

    /// Identity's care-relationship change feed after `sequence`, asked in this service's
    /// own name (never on behalf of a person being served).
    public func careTeamChanges(after sequence: Int64, pageSize: Int32) async throws -> Wholecare_Identity_V1_ListCareTeamChangesResponse {
        var request = Wholecare_Identity_V1_ListCareTeamChangesRequest()
        request.afterSequence = sequence
        request.pageSize = pageSize
        return try await credentials.inOwnName { authorization in
            try await anonymousIdentity.listCareTeamChanges(
                request, options: CallOptions(timeout: .seconds(10), metadata: ["authorization": authorization]))
        }
    }

    static func policyFacts(_ facts: Wholecare_Identity_V1_AccessFacts) -> AccessFacts {
        var scopes: [DataCategory: Bool] = [:]
        for scope in facts.carerScopes {
            guard let category = category(scope.category) else { continue }
            scopes[category] = (scopes[category] ?? false) || scope.write
        }
        return AccessFacts(
            personExists: facts.personExists,
            relationships: Set(facts.relationships.compactMap { role -> AccessFacts.Relationship? in
                switch role {
                case .careCoordinator: return .careCoordinator
                case .careTeamMember: return .careTeamMember
                default: return nil
                }
            }),
            consentedCategories: Set(facts.consentedCategories.compactMap(category)),
            carerScopes: scopes, organisationHasRelationship: facts.organisationHasRelationship)
    }

    static func category(_ value: Wholecare_Identity_V1_DataCategory) -> DataCategory? {
        switch value {
        case .record: return .record
        case .budget: return .budget
        case .messages: return .messages
        case .appointments: return .appointments
        case .reminders: return .reminders
        default: return nil
        }
    }

    /// The server interceptor that authenticates callers of this service.
    public func authInterceptor(publicMethods: Set<String> = []) -> AuthInterceptor {
        AuthInterceptor(verifier: verifier, publicMethods: publicMethods)
    }

    public func close() async {
        await transport?.close()
    }
}

/// A lock-protected name cache shared by copies of an `IdentityLink`.
final class NameCache: Sendable {
    private let state = Mutex<[UUID: (name: String, at: ContinuousClock.Instant)]>([:])
    func withLock<T>(_ body: (inout [UUID: (name: String, at: ContinuousClock.Instant)]) -> T) -> T {
        state.withLock { body(&$0) }
    }
}

final class OrganisationListCache: Sendable {
    struct State {
        var ids: Set<UUID> = []
        /// When the list was fetched, and when identity was last asked for it.
        var at: ContinuousClock.Instant?
        var asked: ContinuousClock.Instant?
    }
    private let state = Mutex(State())
    func withLock<T>(_ body: (inout State) -> T) -> T { state.withLock { body(&$0) } }
}
