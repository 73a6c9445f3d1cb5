import Auth
import Foundation
import Testing
import WholeCareCrypto

@Suite("Token verification")
struct TokenVerifierTests {
    static let key = Ed25519.PrivateKey()
    static let otherKey = Ed25519.PrivateKey()

    static func claims(exp: TimeInterval = 600, nbf: TimeInterval = 0, aud: String = "wholecare", iss: String = "wholecare-identity",
                       kind: String = "service_user") -> TokenClaims {
        let now = Int64(Date().timeIntervalSince1970)
        return TokenClaims(iss: iss, aud: aud, sub: UUID().uuidString.lowercased(), exp: now + Int64(exp), iat: now,
                           nbf: now + Int64(nbf), jti: "j1", kind: kind, roles: [], org: nil, scopes: [])
    }

    static func verifier(fetches: FetchCounter = FetchCounter(), refetchInterval: Duration = .seconds(10)) -> TokenVerifier {
        let publicKey = key.publicKey
        return TokenVerifier(leeway: 5, refetchInterval: refetchInterval) {
            fetches.increment()
            return ["k1": publicKey]
        }
    }

    @Test("a well-formed token verifies into a principal")
    func valid() async throws {
        let token = try JWT.sign(Self.claims(), key: Self.key, kid: "k1")
        let principal = try await Self.verifier().verify(token)
        #expect(principal.kind == .serviceUser)
        #expect(principal.token == token)
    }

    enum Tamper: String, CaseIterable, Sendable {
        case payloadEdited, signatureFlipped, otherKey, algNone, algHS256, unknownKid, expired, notYetValid, wrongAudience,
             wrongIssuer, unknownKind, garbage, twoParts
    }

    @Test("tampered and unacceptable tokens are rejected", arguments: Tamper.allCases)
    func rejected(tamper: Tamper) async throws {
        let good = try JWT.sign(Self.claims(), key: Self.key, kid: "k1")
        let parts = good.split(separator: ".").map(String.init)
        func header(_ json: String) -> String { Base64URL.encode(Array(json.utf8)) }
        let token: String
        switch tamper {
        case .payloadEdited:
            var claims = Self.claims()
            claims.kind = "administrator"
            let json = try JSONEncoder().encode(claims)
            token = parts[0] + "." + Base64URL.encode(Array(json)) + "." + parts[2]
        case .signatureFlipped:
            var signature = Base64URL.decode(parts[2])!
            signature[5] ^= 0x20
            token = parts[0] + "." + parts[1] + "." + Base64URL.encode(signature)
        case .otherKey: token = try JWT.sign(Self.claims(), key: Self.otherKey, kid: "k1")
        case .algNone: token = header(#"{"alg":"none","kid":"k1"}"#) + "." + parts[1] + "."
        case .algHS256: token = header(#"{"alg":"HS256","kid":"k1"}"#) + "." + parts[1] + "." + parts[2]
        case .unknownKid: token = try JWT.sign(Self.claims(), key: Self.key, kid: "k-unknown")
        case .expired: token = try JWT.sign(Self.claims(exp: -120), key: Self.key, kid: "k1")
        case .notYetValid: token = try JWT.sign(Self.claims(nbf: 300), key: Self.key, kid: "k1")
        case .wrongAudience: token = try JWT.sign(Self.claims(aud: "someone-else"), key: Self.key, kid: "k1")
        case .wrongIssuer: token = try JWT.sign(Self.claims(iss: "evil"), key: Self.key, kid: "k1")
        case .unknownKind: token = try JWT.sign(Self.claims(kind: "superuser"), key: Self.key, kid: "k1")
        case .garbage: token = "not-a-token"
        case .twoParts: token = parts[0] + "." + parts[1]
        }
        await #expect(throws: TokenRejection.self) { _ = try await Self.verifier().verify(token) }
    }

    @Test("an unknown key id fetches the key set again, but not more than once per interval")
    func unknownKidRefetchBounded() async throws {
        let fetches = FetchCounter()
        // An hour, so that a slow machine cannot reach the end of the interval mid-test.
        let verifier = Self.verifier(fetches: fetches, refetchInterval: .seconds(3600))
        for i in 0..<20 {
            let token = try JWT.sign(Self.claims(), key: Self.key, kid: "random-\(i)")
            await #expect(throws: TokenRejection.self) { _ = try await verifier.verify(token) }
        }
        #expect(fetches.value == 1)
    }

    @Test("calls arriving while the key set is being fetched wait for that fetch instead of being refused")
    func concurrentFirstVerifications() async throws {
        let fetches = FetchCounter(), callers = FetchCounter()
        let publicKey = Self.key.publicKey
        let verifier = TokenVerifier(leeway: 5) {
            fetches.increment()
            // A slow identity: it answers only once every caller is on its way in, and 50 ms
            // more, so that they almost certainly all arrive during the fetch (one that came
            // later would find the keys and pass too: this cannot fail the test).
            let giveUp = ContinuousClock.now + .seconds(20)
            while callers.value < 8 && ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(5)) }
            try await Task.sleep(for: .milliseconds(50))
            return ["k1": publicKey]
        }
        let tokens = try (0..<8).map { _ in try JWT.sign(Self.claims(), key: Self.key, kid: "k1") }
        let verified = try await withThrowingTaskGroup(of: Bool.self) { group in
            for token in tokens {
                group.addTask {
                    callers.increment()
                    return try await verifier.verify(token).token == token
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(verified == 8)
        #expect(fetches.value == 1)
    }

    @Test("a rotated key verifies after the new key id is fetched; the old key still verifies")
    func rotation() async throws {
        let old = Ed25519.PrivateKey(), new = Ed25519.PrivateKey()
        let keys = KeySet()
        keys.set(["old": old.publicKey])
        let verifier = TokenVerifier(refetchInterval: .zero) { keys.get() }
        _ = try await verifier.verify(try JWT.sign(Self.claims(), key: old, kid: "old"))
        keys.set(["new": new.publicKey, "old": old.publicKey])
        _ = try await verifier.verify(try JWT.sign(Self.claims(), key: new, kid: "new"))
        _ = try await verifier.verify(try JWT.sign(Self.claims(), key: old, kid: "old"))
    }

    @Test("a token claiming to live longer than 15 minutes is refused, however well signed")
    func lifetimeCapped() async throws {
        let verifier = Self.verifier()
        _ = try await verifier.verify(try JWT.sign(Self.claims(exp: 15 * 60), key: Self.key, kid: "k1"))
        await #expect(throws: TokenRejection.badClaims) {
            _ = try await verifier.verify(try JWT.sign(Self.claims(exp: 15 * 60 + 1), key: Self.key, kid: "k1"))
        }
        await #expect(throws: TokenRejection.badClaims) {
            _ = try await verifier.verify(try JWT.sign(Self.claims(exp: 365 * 86_400), key: Self.key, kid: "k1"))
        }
    }

    @Test("a key identity stops listing is dropped once the key set is old, with the tokens it signed, cached or not")
    func removedKeyDropped() async throws {
        let old = Ed25519.PrivateKey(), new = Ed25519.PrivateKey()
        let keys = KeySet()
        keys.set(["old": old.publicKey, "new": new.publicKey])
        let verifier = TokenVerifier(refetchInterval: .zero, keyMaxAge: .milliseconds(100)) { keys.get() }
        let cachedToken = try JWT.sign(Self.claims(), key: old, kid: "old")
        _ = try await verifier.verify(cachedToken)
        keys.set(["new": new.publicKey])  // "old" was compromised and removed from identity
        try await Task.sleep(for: .milliseconds(150))
        // The next calls notice the key set is old and fetch it again in the background;
        // soon the cached token is refused, and so is a fresh one signed with the old key.
        let deadline = ContinuousClock.now + .seconds(10)
        var refused = false
        while !refused && ContinuousClock.now < deadline {
            do {
                _ = try await verifier.verify(cachedToken)
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                refused = true
            }
        }
        #expect(refused, "a token signed by a removed key was still accepted")
        await #expect(throws: TokenRejection.unknownKey) {
            _ = try await verifier.verify(try JWT.sign(Self.claims(), key: old, kid: "old"))
        }
        // The key still listed keeps working.
        _ = try await verifier.verify(try JWT.sign(Self.claims(), key: new, kid: "new"))
    }
}

final class KeySet: @unchecked Sendable {
    private let lock = NSLock()
    private var keys: [String: Ed25519.PublicKey] = [:]
    func set(_ value: [String: Ed25519.PublicKey]) { lock.withLock { keys = value } }
    func get() -> [String: Ed25519.PublicKey] { lock.withLock { keys } }
}
