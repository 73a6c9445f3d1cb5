import Auth
import Foundation
import WholeCareCrypto

/// The Ed25519 keys identity signs with. The first entry is current; the others still
/// verify tokens signed before a rotation, until they are removed.
public struct SigningKeyring: Sendable {
    public let keys: [(kid: String, key: Ed25519.PrivateKey)]

    public var current: (kid: String, key: Ed25519.PrivateKey) { keys[0] }

    public init(keys: [(kid: String, key: Ed25519.PrivateKey)]) throws {
        guard !keys.isEmpty else { throw CryptoError(.invalidKey, "the signing keyring is empty") }
        self.keys = keys
    }

    /// Parses `kid:base64url-seed,kid2:seed2` (32-byte Ed25519 seeds).
    public init(parsing text: String) throws {
        var keys: [(String, Ed25519.PrivateKey)] = []
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty,
                  let seed = Base64URL.decode(parts[1].trimmingCharacters(in: .whitespaces))
                    ?? Data(base64Encoded: String(parts[1])).map(Array.init)
            else { throw CryptoError(.invalidKey, "signing keys look like kid:base64seed") }
            keys.append((String(parts[0]).trimmingCharacters(in: .whitespaces), try Ed25519.PrivateKey(rawRepresentation: seed)))
        }
        try self.init(keys: keys)
    }

    /// A fresh key in the text form, for operators rotating keys.
    public static func generateEntry(kid: String) -> String {
        "\(kid):\(Base64URL.encode(Ed25519.PrivateKey().rawRepresentation))"
    }

    public var publicKeys: [String: Ed25519.PublicKey] {
        Dictionary(keys.map { ($0.kid, $0.key.publicKey) }, uniquingKeysWith: { first, _ in first })
    }
}

/// Issues access tokens (signed JWTs) and refresh tokens (opaque; stored as hashes).
public struct TokenIssuer: Sendable {
    public let keyring: SigningKeyring
    public let accessTokenLifetime: TimeInterval
    public let refreshTokenLifetime: TimeInterval
    public let issuer = TokenIssuerDefaults.issuer
    public let audience = TokenIssuerDefaults.audience

    /// Access tokens live at most 15 minutes.
    public static let maximumAccessLifetime: TimeInterval = 15 * 60

    public init(keyring: SigningKeyring, accessTokenLifetime: TimeInterval = 15 * 60, refreshTokenLifetime: TimeInterval = 30 * 86_400) {
        self.keyring = keyring
        self.accessTokenLifetime = min(accessTokenLifetime, Self.maximumAccessLifetime)
        self.refreshTokenLifetime = refreshTokenLifetime
    }

    public func accessToken(subject: String, kind: Principal.Kind, roles: [String], organisation: UUID?, scopes: [String],
                            now: Date = Date()) throws -> (token: String, expiresAt: Date) {
        let issued = Int64(now.timeIntervalSince1970)
        let expires = issued + Int64(accessTokenLifetime)
        let claims = TokenClaims(
            iss: issuer, aud: audience, sub: subject, exp: expires, iat: issued, nbf: issued,
            jti: Base64URL.encode(SecureRandom.bytes(16)), kind: kind.rawValue, roles: roles.sorted(),
            org: organisation?.lowercasedString, scopes: scopes.sorted())
        let token = try JWT.sign(claims, key: keyring.current.key, kid: keyring.current.kid)
        return (token, Date(timeIntervalSince1970: TimeInterval(expires)))
    }

    /// A new opaque refresh token and the hash to store.
    public func newRefreshToken() -> (token: String, hash: [UInt8]) {
        let token = "wcr_" + SecureRandom.token(byteCount: 32)
        return (token, Self.hash(token))
    }

    public static func hash(_ token: String) -> [UInt8] { Digest.sha256(token) }
}
