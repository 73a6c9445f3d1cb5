import Foundation
import WholeCareCrypto

/// The claims of a WholeCare access token (a JWT signed with EdDSA / Ed25519).
public struct TokenClaims: Codable, Sendable, Equatable {
    public var iss: String
    public var aud: String
    public var sub: String
    public var exp: Int64
    public var iat: Int64
    public var nbf: Int64
    public var jti: String
    /// Subject kind (`service_user`, `carer`, `professional`, `provider_system`, `administrator`, `service`).
    public var kind: String
    public var roles: [String]
    public var org: String?
    public var scopes: [String]

    public init(iss: String, aud: String, sub: String, exp: Int64, iat: Int64, nbf: Int64, jti: String, kind: String,
                roles: [String], org: String?, scopes: [String]) {
        self.iss = iss
        self.aud = aud
        self.sub = sub
        self.exp = exp
        self.iat = iat
        self.nbf = nbf
        self.jti = jti
        self.kind = kind
        self.roles = roles
        self.org = org
        self.scopes = scopes
    }
}

struct JWTHeader: Codable {
    var alg: String
    var typ: String?
    var kid: String?
}

/// Builds and parses compact JWS strings.
public enum JWT {
    /// Signs claims with an Ed25519 key: `base64url(header).base64url(claims).base64url(signature)`.
    public static func sign(_ claims: TokenClaims, key: Ed25519.PrivateKey, kid: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = try encoder.encode(JWTHeader(alg: "EdDSA", typ: "JWT", kid: kid))
        let body = try encoder.encode(claims)
        let signingInput = Base64URL.encode(Array(header)) + "." + Base64URL.encode(Array(body))
        let signature = try key.signature(for: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }

    struct Parts {
        let header: JWTHeader
        let claimsJSON: [UInt8]
        let signingInput: [UInt8]
        let signature: [UInt8]
    }

    /// Splits and decodes a token without checking anything but its shape.
    static func parse(_ token: String) -> Parts? {
        guard token.utf8.count <= 8192 else { return nil }
        let pieces = token.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 3,
              let headerBytes = Base64URL.decode(pieces[0]),
              let claims = Base64URL.decode(pieces[1]),
              let signature = Base64URL.decode(pieces[2]),
              let header = try? JSONDecoder().decode(JWTHeader.self, from: Data(headerBytes))
        else { return nil }
        return Parts(header: header, claimsJSON: claims, signingInput: Array((pieces[0] + "." + pieces[1]).utf8), signature: signature)
    }
}
