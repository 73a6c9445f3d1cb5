import Foundation
import Synchronization
import WholeCareCrypto

/// Why a token was refused. Callers answer UNAUTHENTICATED without the detail.
public enum TokenRejection: Error, Sendable, Equatable {
    case malformed
    case unsupportedAlgorithm
    case unknownKey
    case badSignature
    case expired
    case notYetValid
    case wrongIssuer
    case wrongAudience
    case badClaims
}

/// Verifies access tokens locally with identity's public keys.
///
/// Keys are cached by key id. A token with an unknown `kid` triggers one fetch of the key
/// set (at most one fetch per `refetchInterval`, so random key ids cannot turn into a
/// flood of calls to identity); calls that arrive while a fetch is under way wait for it
/// rather than being refused. The key set is also fetched again once it is older than
/// `keyMaxAge`, and a key identity no longer lists is dropped, together with every cached
/// token it signed: removing a compromised key from identity ends trust in it everywhere
/// within `keyMaxAge` (if identity cannot be reached, the keys already held stay in use).
/// Only `alg: EdDSA` is accepted, and no token may claim to live longer than
/// `maxLifetime` (identity issues at most 15 minutes). Verified tokens are cached until
/// they expire, so a caller pays for the signature check once per token.
public final class TokenVerifier: Sendable {
    public typealias KeyFetcher = @Sendable () async throws -> [String: Ed25519.PublicKey]

    public let issuer: String
    public let audience: String
    /// Clock skew tolerated for `exp`, `nbf` and `iat`.
    public let leeway: TimeInterval
    /// The longest a token may claim to live (`exp` − `iat`).
    public let maxLifetime: TimeInterval
    private let fetchKeys: KeyFetcher
    private let refetchInterval: Duration
    private let keyMaxAge: Duration
    private let state = Mutex<State>(State())
    private let now: @Sendable () -> Date

    private struct State {
        var keys: [String: Ed25519.PublicKey] = [:]
        /// When `keys` was last replaced by a successful fetch (or `install`).
        var keysSince: ContinuousClock.Instant?
        var lastFetch: ContinuousClock.Instant?
        var inFlight: Task<[String: Ed25519.PublicKey], any Error>?
        /// A background refresh of an old key set is under way.
        var refreshing = false
        var lastRefresh: ContinuousClock.Instant?
        /// Verified tokens, with the key id that signed each.
        var verified: [String: (principal: Principal, kid: String)] = [:]

        /// Replaces the key set, and forgets tokens signed by a key no longer in it.
        mutating func replaceKeys(_ new: [String: Ed25519.PublicKey]) {
            keys = new
            keysSince = .now
            verified = verified.filter { new[$0.value.kid] != nil }
        }
    }

    public init(issuer: String = TokenIssuerDefaults.issuer, audience: String = TokenIssuerDefaults.audience,
                leeway: TimeInterval = 30, maxLifetime: TimeInterval = 15 * 60, refetchInterval: Duration = .seconds(10),
                keyMaxAge: Duration = .seconds(300), now: @escaping @Sendable () -> Date = { Date() }, fetchKeys: @escaping KeyFetcher) {
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.maxLifetime = maxLifetime
        self.refetchInterval = refetchInterval
        self.keyMaxAge = keyMaxAge
        self.fetchKeys = fetchKeys
        self.now = now
    }

    /// Verifies a token and returns its principal, or throws `TokenRejection`.
    public func verify(_ token: String) async throws -> Principal {
        let (cached, refresh) = state.withLock { s in
            let now = ContinuousClock.now
            // Once the set is old, and at most once per `refetchInterval` while identity
            // does not answer: one refresh at a time, started by one call.
            let refresh = !s.refreshing && s.keysSince.map { now - $0 > keyMaxAge } == true
                && s.lastRefresh.map { now - $0 >= refetchInterval } != false
            if refresh {
                s.refreshing = true
                s.lastRefresh = now
            }
            return (s.verified[token], refresh)
        }
        if refresh {
            // In the background, so no call waits on identity for it; if identity cannot be
            // reached, the keys already held stay in use. It does not use up the allowance
            // for unknown key ids, so a key identity starts using meanwhile is fetched at once.
            Task {
                _ = try? await self.fetchKeySet(refresh: true)
                self.state.withLock { $0.refreshing = false }
            }
        }
        if let cached {
            guard cached.principal.expiresAt.timeIntervalSince(now()) > -leeway else { throw TokenRejection.expired }
            return cached.principal
        }
        guard let parts = JWT.parse(token) else { throw TokenRejection.malformed }
        guard parts.header.alg == "EdDSA" else { throw TokenRejection.unsupportedAlgorithm }
        guard let kid = parts.header.kid, !kid.isEmpty else { throw TokenRejection.unknownKey }
        let key = try await key(for: kid)
        guard key.isValidSignature(parts.signature, for: parts.signingInput) else { throw TokenRejection.badSignature }
        guard let claims = try? JSONDecoder().decode(TokenClaims.self, from: Data(parts.claimsJSON)) else {
            throw TokenRejection.badClaims
        }
        let principal = try check(claims, token: token)
        state.withLock { state in
            guard state.keys[kid] != nil else { return }  // the key went away meanwhile: do not cache
            if state.verified.count > 20_000 {
                // Cheap bound: drop the expired, and if still large, everything.
                let nowDate = now()
                state.verified = state.verified.filter { $0.value.principal.expiresAt > nowDate }
                if state.verified.count > 20_000 { state.verified.removeAll() }
            }
            state.verified[token] = (principal, kid)
        }
        return principal
    }

    private func check(_ claims: TokenClaims, token: String) throws -> Principal {
        let current = now().timeIntervalSince1970
        guard claims.iss == issuer else { throw TokenRejection.wrongIssuer }
        guard claims.aud == audience else { throw TokenRejection.wrongAudience }
        guard Double(claims.exp) > current - leeway else { throw TokenRejection.expired }
        guard Double(claims.nbf) <= current + leeway, Double(claims.iat) <= current + leeway else {
            throw TokenRejection.notYetValid
        }
        guard Double(claims.exp) - Double(claims.iat) <= maxLifetime else { throw TokenRejection.badClaims }
        guard let kind = Principal.Kind(rawValue: claims.kind), !claims.sub.isEmpty, !claims.jti.isEmpty else {
            throw TokenRejection.badClaims
        }
        var organisation: UUID?
        if let org = claims.org {
            guard let parsed = UUID(uuidString: org) else { throw TokenRejection.badClaims }
            organisation = parsed
        }
        return Principal(
            subject: claims.sub, kind: kind, roles: Set(claims.roles), organisationID: organisation,
            scopes: Set(claims.scopes), tokenID: claims.jti, expiresAt: Date(timeIntervalSince1970: TimeInterval(claims.exp)),
            token: token)
    }

    private func key(for kid: String) async throws -> Ed25519.PublicKey {
        if let key = state.withLock({ $0.keys[kid] }) { return key }
        guard let keys = try await fetchKeySet(), let key = keys[kid] else { throw TokenRejection.unknownKey }
        return key
    }

    /// Fetches the key set (sharing a fetch already under way; for an unknown key id, at
    /// most one per `refetchInterval`, else nil) and makes it the one in use.
    private func fetchKeySet(refresh: Bool = false) async throws -> [String: Ed25519.PublicKey]? {
        let fetchKeys = fetchKeys
        let fetch = state.withLock { state -> Task<[String: Ed25519.PublicKey], any Error>? in
            if let inFlight = state.inFlight { return inFlight }  // share the fetch under way
            if !refresh {
                if let last = state.lastFetch, ContinuousClock.now - last < refetchInterval { return nil }
                state.lastFetch = .now
            }
            let task = Task { try await fetchKeys() }
            state.inFlight = task
            return task
        }
        guard let fetch else { return nil }
        let result = await fetch.result
        state.withLock { state in
            if state.inFlight == fetch {
                state.inFlight = nil
                if case .success(let keys) = result { state.replaceKeys(keys) }
            }
        }
        return try result.get()
    }

    /// Installs keys directly (identity itself, and tests).
    public func install(keys: [String: Ed25519.PublicKey]) {
        state.withLock { $0.replaceKeys(keys) }
    }
}

/// The issuer and audience every WholeCare token carries.
public enum TokenIssuerDefaults {
    public static let issuer = "wholecare-identity"
    public static let audience = "wholecare"
}
