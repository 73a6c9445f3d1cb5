import ServiceTestSupport
import Auth
import Contracts
import Foundation
import IdentityService
import RPC
import Testing
import WholeCareCrypto

@Suite("Registration, sign-in and tokens")
struct SignInTests {
    @Test("register, sign in, refresh, sign out: a full round trip")
    func roundTrip() async throws {
        try await IdentityHarness.with { h in
            let registered = try await h.register("ada@example.org", name: "Ada")
            #expect(registered.tokenType == "Bearer")
            #expect(registered.expiresInSeconds == 900)
            #expect(registered.account.kind == .serviceUser)
            let me = try await h.api.whoAmI(.init(), options: IdentityHarness.bearer(registered.accessToken))
            #expect(me.displayName == "Ada")
            #expect(me.email == "ada@example.org")

            let signedIn = try await h.signIn("ADA@example.org")  // e-mail is case-insensitive
            var refresh = Wholecare_Identity_V1_RefreshRequest()
            refresh.refreshToken = signedIn.refreshToken
            let refreshed = try await h.api.refresh(refresh)
            #expect(refreshed.refreshToken != signedIn.refreshToken)
            #expect(try await h.api.whoAmI(.init(), options: IdentityHarness.bearer(refreshed.accessToken)).id == me.id)

            var signOut = Wholecare_Identity_V1_SignOutRequest()
            signOut.refreshToken = refreshed.refreshToken
            _ = try await h.api.signOut(signOut, options: IdentityHarness.bearer(refreshed.accessToken))
            refresh.refreshToken = refreshed.refreshToken
            let afterSignOut = await #expect(throws: RPCError.self) { try await h.api.refresh(refresh) }
            #expect(afterSignOut?.code == .unauthenticated)

            var events = Wholecare_Identity_V1_ListAuthEventsRequest()
            events.limit = 10
            let log = try await h.api.listAuthEvents(events, options: IdentityHarness.bearer(registered.accessToken)).events.map(\.event)
            #expect(log.contains("registered"))
            #expect(log.contains("signed_in"))
            #expect(log.contains("signed_out"))
        }
    }

    @Test("access tokens are EdDSA JWTs with the documented claims, living at most 15 minutes")
    func tokenClaims() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("claims@example.org")
            let parts = session.accessToken.split(separator: ".")
            let header = try JSONSerialization.jsonObject(with: Data(Base64URL.decode(parts[0])!)) as! [String: Any]
            #expect(header["alg"] as? String == "EdDSA")
            #expect(header["kid"] as? String == "test-key")
            let claims = try JSONDecoder().decode(TokenClaims.self, from: Data(Base64URL.decode(parts[1])!))
            #expect(claims.iss == "wholecare-identity")
            #expect(claims.aud == "wholecare")
            #expect(claims.sub == session.account.id)
            #expect(claims.kind == "service_user")
            #expect(claims.exp - claims.iat == 900)
            #expect(!claims.jti.isEmpty)
            // The published public key verifies it.
            let keys = try await h.api.getSigningKeys(.init()).keys
            #expect(keys.count == 1)
            #expect(keys[0].current)
            let publicKey = try Ed25519.PublicKey(rawRepresentation: Array(keys[0].publicKey))
            let verifier = TokenVerifier { ["test-key": publicKey] }
            #expect(try await verifier.verify(session.accessToken).subject == session.account.id)
        }
    }

    @Test("reusing a spent refresh token revokes the whole family")
    func refreshReuseRevokesFamily() async throws {
        try await IdentityHarness.with { h in
            let first = try await h.register("reuse@example.org")
            var request = Wholecare_Identity_V1_RefreshRequest()
            request.refreshToken = first.refreshToken
            let second = try await h.api.refresh(request)
            // An attacker replays the first (already spent) token…
            let replay = await #expect(throws: RPCError.self) { try await h.api.refresh(request) }
            #expect(replay?.code == .unauthenticated)
            // …and the legitimate holder's newer token is now dead too.
            request.refreshToken = second.refreshToken
            await #expect(throws: RPCError.self) { try await h.api.refresh(request) }
            let events = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(second.accessToken)).events
            #expect(events.contains { $0.event == "refresh_reuse_detected" })
        }
    }

    @Test("changing the password revokes every refresh token and records the change")
    func changePasswordRevokes() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("change@example.org")
            let other = try await h.signIn("change@example.org")
            var change = Wholecare_Identity_V1_ChangePasswordRequest()
            change.currentPassword = IdentityHarness.password
            change.newPassword = "an entirely different phrase"
            let fresh = try await h.api.changePassword(change, options: IdentityHarness.bearer(session.accessToken))
            for token in [session.refreshToken, other.refreshToken] {
                var refresh = Wholecare_Identity_V1_RefreshRequest()
                refresh.refreshToken = token
                await #expect(throws: RPCError.self) { try await h.api.refresh(refresh) }
            }
            var refresh = Wholecare_Identity_V1_RefreshRequest()
            refresh.refreshToken = fresh.session.refreshToken
            _ = try await h.api.refresh(refresh)
            _ = try await h.signIn("change@example.org", password: "an entirely different phrase")
            let events = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(fresh.session.accessToken)).events
            #expect(events.filter { $0.event == "password_changed" }.count == 1)
        }
    }

    @Test("refreshes racing a password change leave no working refresh token from before it")
    func refreshRacingPasswordChange() async throws {
        try await IdentityHarness.with { h in
            let first = try await h.register("race@example.org")
            var sessions = [first]
            for _ in 0..<7 { sessions.append(try await h.signIn("race@example.org")) }
            var change = Wholecare_Identity_V1_ChangePasswordRequest()
            change.currentPassword = IdentityHarness.password
            change.newPassword = "an entirely different phrase"
            let (api, request, bearer) = (h.api, change, IdentityHarness.bearer(first.accessToken))
            let handedOut = try await withThrowingTaskGroup(of: String?.self) { group in
                for session in sessions {
                    let token = session.refreshToken
                    group.addTask {
                        var refresh = Wholecare_Identity_V1_RefreshRequest()
                        refresh.refreshToken = token
                        return try? await api.refresh(refresh).refreshToken
                    }
                }
                group.addTask {
                    _ = try await api.changePassword(request, options: bearer)
                    return nil
                }
                return try await group.reduce(into: [String]()) { if let token = $1 { $0.append(token) } }
            }
            // Whether a refresh ran before, during or after the change, what it handed out
            // (and every token from before) is refused now.
            for token in handedOut + sessions.map(\.refreshToken) {
                var refresh = Wholecare_Identity_V1_RefreshRequest()
                refresh.refreshToken = token
                await #expect(throws: RPCError.self) { try await api.refresh(refresh) }
            }
        }
    }

    @Test("signing out with someone else's refresh token is refused and leaves their session and history alone")
    func signOutOthersToken() async throws {
        try await IdentityHarness.with { h in
            let victim = try await h.register("victim@example.org")
            let other = try await h.register("other@example.org")
            var signOut = Wholecare_Identity_V1_SignOutRequest()
            signOut.refreshToken = victim.refreshToken
            let refused = await #expect(throws: RPCError.self) {
                try await h.api.signOut(signOut, options: IdentityHarness.bearer(other.accessToken))
            }
            #expect(refused?.code == .permissionDenied)
            // The victim's session still refreshes: nothing was revoked.
            var refresh = Wholecare_Identity_V1_RefreshRequest()
            refresh.refreshToken = victim.refreshToken
            let refreshed = try await h.api.refresh(refresh)
            // And neither history records a sign-out that did not happen.
            for token in [refreshed.accessToken, other.accessToken] {
                let log = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(token)).events.map(\.event)
                #expect(!log.contains("signed_out"))
            }
        }
    }

    @Test("with no access token, the refresh token alone ends its session and the history shows it; with neither, UNAUTHENTICATED")
    func signOutWithRefreshTokenOnly() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("lapsed@example.org")
            let otherDevice = try await h.signIn("lapsed@example.org")
            // Neither credential: refused, nothing happens.
            let refused = await #expect(throws: RPCError.self) { try await h.api.signOut(.init()) }
            #expect(refused?.code == .unauthenticated)
            // A made-up refresh token: nothing to revoke, nothing recorded, and no hint either way.
            var unknown = Wholecare_Identity_V1_SignOutRequest()
            unknown.refreshToken = "not-a-token-anyone-was-given"
            _ = try await h.api.signOut(unknown)
            // The real one ends this session only.
            var signOut = Wholecare_Identity_V1_SignOutRequest()
            signOut.refreshToken = session.refreshToken
            _ = try await h.api.signOut(signOut)
            var refresh = Wholecare_Identity_V1_RefreshRequest()
            refresh.refreshToken = session.refreshToken
            let spent = await #expect(throws: RPCError.self) { try await h.api.refresh(refresh) }
            #expect(spent?.code == .unauthenticated)
            refresh.refreshToken = otherDevice.refreshToken
            let other = try await h.api.refresh(refresh)
            // The same token again (now revoked) ends nothing more and records nothing.
            _ = try await h.api.signOut(signOut)
            var log = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(other.accessToken)).events.map(\.event)
            #expect(log.filter { $0 == "signed_out" }.count == 1)

            // A spent token (its session refreshed since) is reuse, as in Refresh: the session
            // it belonged to is ended and the history says a spent token came back.
            refresh.refreshToken = other.refreshToken
            let successor = try await h.api.refresh(refresh)
            signOut.refreshToken = other.refreshToken
            _ = try await h.api.signOut(signOut)
            refresh.refreshToken = successor.refreshToken
            await #expect(throws: RPCError.self) { try await h.api.refresh(refresh) }
            let third = try await h.signIn("lapsed@example.org")
            log = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(third.accessToken)).events.map(\.event)
            #expect(log.filter { $0 == "signed_out" }.count == 1)
            #expect(log.contains("refresh_reuse_detected"))

            // An expired token ends nothing and records nothing.
            let expiring = try await h.signIn("lapsed@example.org")
            let later = Date().addingTimeInterval(400 * 24 * 3600)
            #expect(try await h.store.signOut(byToken: TokenIssuer.hash(expiring.refreshToken), now: later) == .nothing)
            refresh.refreshToken = expiring.refreshToken
            _ = try await h.api.refresh(refresh)
        }
    }

    @Test("a refreshed session continues: the new token refreshes again, and the reply names the account as it is now")
    func refreshChain() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("chain@example.org", name: "Chain")
            var refresh = Wholecare_Identity_V1_RefreshRequest()
            refresh.refreshToken = session.refreshToken
            let second = try await h.api.refresh(refresh)
            #expect(second.account.displayName == "Chain")
            #expect(second.account.id == session.account.id)
            refresh.refreshToken = second.refreshToken
            let third = try await h.api.refresh(refresh)
            #expect(third.refreshToken != second.refreshToken)
            #expect(try await h.api.whoAmI(.init(), options: IdentityHarness.bearer(third.accessToken)).id == session.account.id)
            // One session: signing out with the newest token ends it.
            var signOut = Wholecare_Identity_V1_SignOutRequest()
            signOut.refreshToken = third.refreshToken
            _ = try await h.api.signOut(signOut, options: IdentityHarness.bearer(third.accessToken))
            refresh.refreshToken = third.refreshToken
            await #expect(throws: RPCError.self) { try await h.api.refresh(refresh) }
        }
    }

    @Test("a revoked family gets no new refresh token")
    func revokedFamilyGetsNoToken() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("family@example.org")
            let account = UUID(uuidString: session.account.id)!
            let family = UUID()
            let firstHash = Array("first token".utf8), secondHash = Array("second token".utf8)
            #expect(try await h.store.storeRefreshToken(accountID: account, familyID: family, hash: firstHash,
                                                        expiresAt: Date().addingTimeInterval(3600)))
            #expect(try await h.store.signOut(tokenHash: firstHash, caller: account, eventAccount: nil) == .signedOut)
            #expect(try await h.store.storeRefreshToken(accountID: account, familyID: family, hash: secondHash,
                                                        expiresAt: Date().addingTimeInterval(3600)) == false)
        }
    }

    @Test("a sign-in whose checked password was changed meanwhile gets no token, and a rehash never overwrites a changed password")
    func changedPasswordBeatsSignIn() async throws {
        try await IdentityHarness.with { h in
            let session = try await h.register("checked@example.org")
            let account = UUID(uuidString: session.account.id)!
            let checked = try #require(try await h.store.account(id: account)).passwordHash
            // The password changes after a sign-in checked it.
            var change = Wholecare_Identity_V1_ChangePasswordRequest()
            change.currentPassword = IdentityHarness.password
            change.newPassword = "an entirely different phrase"
            _ = try await h.api.changePassword(change, options: IdentityHarness.bearer(session.accessToken))
            let current = try #require(try await h.store.account(id: account)).passwordHash
            #expect(current != checked)
            #expect(try await h.store.storeRefreshToken(accountID: account, familyID: UUID(), hash: Array("late".utf8),
                                                        expiresAt: Date().addingTimeInterval(3600), passwordHash: checked) == false)
            #expect(try await h.store.rehashPassword(accountID: account, from: checked, to: "a stronger hash of the old password") == false)
            #expect(try #require(try await h.store.account(id: account)).passwordHash == current)
            // With the current password both go through.
            #expect(try await h.store.storeRefreshToken(accountID: account, familyID: UUID(), hash: Array("fresh".utf8),
                                                        expiresAt: Date().addingTimeInterval(3600), passwordHash: current))
            _ = try await h.signIn("checked@example.org", password: "an entirely different phrase")
        }
    }

    @Test("a wrong password and an unknown account get the identical answer")
    func identicalFailures() async throws {
        try await IdentityHarness.with { h in
            _ = try await h.register("known@example.org")
            let wrong = await #expect(throws: RPCError.self) { try await h.signIn("known@example.org", password: "not the right phrase") }
            let unknown = await #expect(throws: RPCError.self) { try await h.signIn("nobody@example.org") }
            #expect(wrong == unknown)
            #expect(wrong?.code == .unauthenticated)
        }
    }

    @Test("passwords shorter than 12 characters or common are refused, naming the field", arguments: [
        "short pass", "password1234", "qwertyuiop123", "aaaaaaaaaaaaaaa", "123456789012", "abcabcabcabc", "Liverpool1234!",
    ])
    func passwordPolicy(password: String) async throws {
        try await IdentityHarness.with { h in
            var request = Wholecare_Identity_V1_RegisterRequest()
            request.email = "policy@example.org"
            request.password = password
            request.displayName = "P"
            let error = await #expect(throws: RPCError.self) { try await h.api.register(request) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.metadata["field"] == "password")
            let stored = try await h.store.account(email: "policy@example.org")
            #expect(stored == nil)
        }
    }

    @Test("bad registration input is refused with the field named, and nothing is written", arguments: [
        ("email", "not-an-email"), ("display_name", ""), ("display_name", String(repeating: "x", count: 201)),
    ])
    func badRegistration(field: String, value: String) async throws {
        try await IdentityHarness.with { h in
            var request = Wholecare_Identity_V1_RegisterRequest()
            request.email = field == "email" ? value : "fine@example.org"
            request.displayName = field == "display_name" ? value : "Fine"
            request.password = IdentityHarness.password
            let error = await #expect(throws: RPCError.self) { try await h.api.register(request) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.metadata["field"] == field)
            let stored = try await h.store.account(email: "fine@example.org")
            #expect(stored == nil)
        }
    }

    @Test("throttling grows with failures, tells the caller when to retry, and lifts when the window passes")
    func throttling() async throws {
        try await IdentityHarness.with { h in
            // Time moves only when the test advances it: a loaded machine must not let the
            // real second of throttling pass before the next attempt.
            h.clock.freeze()
            _ = try await h.register("throttle@example.org")
            for _ in 0..<5 {
                _ = try? await h.signIn("throttle@example.org", password: "not the right phrase")
            }
            // The fifth failure imposed a delay: even the right password waits.
            let throttled = await #expect(throws: RPCError.self) { try await h.signIn("throttle@example.org") }
            #expect(throttled?.code == .resourceExhausted)
            #expect(throttled?.metadata["retry-after"] != nil)
            h.clock.advance(2)
            _ = try await h.signIn("throttle@example.org")  // the owner gets in once the delay passes

            // The hard ceiling: 100 failures in an hour lock the address until the window ends.
            for _ in 0..<95 {
                h.clock.advance(31)  // past each delay, but 95 × 31 s stays inside the hour
                _ = try? await h.signIn("throttle@example.org", password: "not the right phrase")
            }
            let locked = await #expect(throws: RPCError.self) { try await h.signIn("throttle@example.org") }
            #expect(locked?.code == .resourceExhausted)
            h.clock.advance(3600)
            _ = try await h.signIn("throttle@example.org")
            // Unknown addresses are throttled exactly the same way.
            for _ in 0..<5 { _ = try? await h.signIn("ghost@example.org", password: "whatever phrase here") }
            let ghost = await #expect(throws: RPCError.self) { try await h.signIn("ghost@example.org") }
            #expect(ghost?.code == .resourceExhausted)
        }
    }

    @Test("methods other than sign-in need a token; a tampered token is refused")
    func tokensRequired() async throws {
        try await IdentityHarness.with { h in
            let missing = await #expect(throws: RPCError.self) { try await h.api.whoAmI(.init()) }
            #expect(missing?.code == .unauthenticated)
            let session = try await h.register("tamper@example.org")
            var token = session.accessToken
            token.removeLast(3)
            token += "AAA"
            let tampered = await #expect(throws: RPCError.self) { try await h.api.whoAmI(.init(), options: IdentityHarness.bearer(token)) }
            #expect(tampered?.code == .unauthenticated)
            let foreign = try JWT.sign(
                TokenClaims(iss: "wholecare-identity", aud: "wholecare", sub: session.account.id, exp: Int64(Date().timeIntervalSince1970) + 600,
                            iat: Int64(Date().timeIntervalSince1970), nbf: Int64(Date().timeIntervalSince1970), jti: "x",
                            kind: "administrator", roles: ["platform_admin"], org: nil, scopes: []),
                key: Ed25519.PrivateKey(), kid: "test-key")
            let forged = await #expect(throws: RPCError.self) {
                try await h.api.createOrganisation(.init(), options: IdentityHarness.bearer(foreign))
            }
            #expect(forged?.code == .unauthenticated)
        }
    }
}
