@testable import Auth
import Contracts
import Foundation
import RPC
import Synchronization
import Testing
import WholeCareCrypto

/// A service calling another for a person (its own token, the person's as `on-behalf-of`)
/// through the real `AuthInterceptor` and `TokenVerifier`, in process.
@Suite("Service credentials")
struct ServiceCredentialsTests {
    static let withdrawnKey = Ed25519.PrivateKey()
    static let currentKey = Ed25519.PrivateKey()

    static func token(kind: String, key: Ed25519.PrivateKey, kid: String, subject: String = UUID().uuidString.lowercased()) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return try JWT.sign(TokenClaims(iss: TokenIssuerDefaults.issuer, aud: TokenIssuerDefaults.audience, sub: subject, exp: now + 600,
                                        iat: now, nbf: now, jti: UUID().uuidString, kind: kind, roles: [], org: nil, scopes: []),
                            key: key, kid: kid)
    }

    enum Key { case current, withdrawn }

    /// A token of the calling service (`svc-records`), signed by the key the callee trusts or by the withdrawn one.
    static func serviceToken(signedBy key: Key) throws -> String {
        try token(kind: "service", key: key == .current ? currentKey : withdrawnKey, kid: key == .current ? "current" : "withdrawn",
                  subject: "svc-records")
    }

    /// A service user's token, as a service relays it.
    static func personToken(signedBy key: Key) throws -> String {
        try token(kind: "service_user", key: key == .current ? currentKey : withdrawnKey, kid: key == .current ? "current" : "withdrawn")
    }

    /// Answers with who the call was decided for, and who relayed it; counts the calls it ran.
    struct WhoService: Wholecare_Diagnostics_V1_Echo.ServiceProtocol {
        let ran = Counter()
        /// The time the last call had left when it ran.
        let timeLeft = TimeLeft()

        func echo(request: Wholecare_Diagnostics_V1_EchoRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_EchoResponse {
            ran.increment()
            timeLeft.value.withLock { $0 = context.deadline.map { $0 - ContinuousClock.now } }
            let caller = try context.caller()
            var response = Wholecare_Diagnostics_V1_EchoResponse()
            response.text = "\(caller.principal.kind.rawValue) via \(caller.relayedBy?.kind.rawValue ?? "nobody")"
            return response
        }
        func sleep(request: Wholecare_Diagnostics_V1_SleepRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_SleepResponse { .init() }
        func fail(request: Wholecare_Diagnostics_V1_FailRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_FailResponse { .init() }
    }

    final class TimeLeft: Sendable {
        let value = Mutex<Duration?>(nil)
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func increment() { value.withLock { $0 += 1 } }
        var count: Int { value.withLock { $0 } }
    }

    /// The callee trusts only the current key: the other has been withdrawn. The calling
    /// service's sign-ins hand out `tokens` in turn (the last one from then on).
    struct Setup {
        let client: Wholecare_Diagnostics_V1_Echo.Client
        /// The same callee without the service's credentials.
        let bare: Wholecare_Diagnostics_V1_Echo.Client
        let service: WhoService
        let signIns: Counter
        let credentials: ServiceCredentials

        init(tokens: [String], signInTime: Duration = .zero) {
            let currentPublic = ServiceCredentialsTests.currentKey.publicKey
            let verifier = TokenVerifier(leeway: 5) { ["current": currentPublic] }
            var router = RPCRouter()
            let service = WhoService()
            router.register(service)
            router.interceptors = [AuthInterceptor(verifier: verifier, publicMethods: [])]
            let signIns = Counter()
            let credentials = ServiceCredentials {
                let index = signIns.count
                signIns.increment()
                if index > 0 { try await Task.sleep(for: signInTime) }
                return (tokens[min(index, tokens.count - 1)], Date().addingTimeInterval(900))
            }
            self.client = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: InProcessChannel(router: router), interceptors: [credentials]))
            self.bare = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: InProcessChannel(router: router)))
            self.service = service
            self.signIns = signIns
            self.credentials = credentials
        }

        func echo(forPerson personToken: String, timeout: Duration? = nil) async throws -> String {
            var request = Wholecare_Diagnostics_V1_EchoRequest()
            request.text = "hello"
            return try await client.echo(request, options: CallOptions(timeout: timeout, metadata: [MetadataKey.onBehalfOf: personToken])).text
        }
    }

    @Test("a callee that no longer accepts the service's own token gets the call once more with a fresh one, and the person is served")
    func refusedOwnTokenIsRenewed() async throws {
        let stale = try Self.serviceToken(signedBy: .withdrawn)
        let fresh = try Self.serviceToken(signedBy: .current)
        let person = try Self.personToken(signedBy: .current)
        let setup = Setup(tokens: [stale, fresh])
        // The stale token is the one the service holds when the call is made.
        #expect(try await setup.credentials.token() == stale)

        #expect(try await setup.echo(forPerson: person) == "service_user via service")
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 1)
        // The fresh token is kept: the next call needs no sign-in.
        #expect(try await setup.echo(forPerson: person) == "service_user via service")
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 2)
    }

    @Test("the call made again keeps the caller's deadline, less the time the refusal and the new sign-in took")
    func retryKeepsTheDeadline() async throws {
        let stale = try Self.serviceToken(signedBy: .withdrawn)
        let fresh = try Self.serviceToken(signedBy: .current)
        let person = try Self.personToken(signedBy: .current)
        // A budget the whole suite's load cannot use up; the new sign-in takes a second of it.
        let setup = Setup(tokens: [stale, fresh], signInTime: .seconds(1))
        _ = try await setup.credentials.token()
        #expect(try await setup.echo(forPerson: person, timeout: .seconds(30)) == "service_user via service")
        let left = try #require(setup.service.timeLeft.value.withLock { $0 })
        #expect(left <= .seconds(29))
        // A sign-in that takes longer than the caller has left: the call is not made again.
        let slow = Setup(tokens: [stale, fresh], signInTime: .milliseconds(600))
        _ = try await slow.credentials.token()
        let error = await #expect(throws: RPCError.self) { try await slow.echo(forPerson: person, timeout: .milliseconds(300)) }
        #expect(error?.code == .deadlineExceeded)
        #expect(slow.service.ran.count == 0)
    }

    /// Credentials whose first sign-in waits until the test opens the gate (identity answers
    /// only when the test says so) and then ends with `first`; later sign-ins answer `own` at once.
    static func gatedCredentials(own: String, first: @escaping @Sendable () throws -> (token: String, expiresAt: Date))
        -> (credentials: ServiceCredentials, open: AsyncStream<Void>.Continuation, signIns: Counter) {
        let (gate, open) = AsyncStream<Void>.makeStream()
        let signIns = Counter()
        let credentials = ServiceCredentials {
            let index = signIns.count
            signIns.increment()
            guard index == 0 else { return (own, Date().addingTimeInterval(900)) }
            for await _ in gate { break }
            return try first()
        }
        return (credentials, open, signIns)
    }

    // Without the fix the cancelled caller waits for a sign-in that waits for the test: the
    // time limit turns that into a failure.
    @Test("a caller cancelled while the service is signing in stops waiting at once; the sign-in goes on for the others",
          .timeLimit(.minutes(1)))
    func cancelledWaiterStopsWaiting() async throws {
        let own = try Self.serviceToken(signedBy: .current)
        let (credentials, open, signIns) = Self.gatedCredentials(own: own) { (own, Date().addingTimeInterval(900)) }
        let cancelled = Task { try await credentials.token() }
        let patient = Task { try await credentials.token() }
        cancelled.cancel()
        // The cancelled caller is answered while the sign-in is still waiting for identity.
        let error = await #expect(throws: RPCError.self) { try await cancelled.value }
        #expect(error?.code == .cancelled)
        open.yield()
        #expect(try await patient.value == own)
        #expect(signIns.count == 1)
        #expect(try await credentials.token() == own)
        #expect(signIns.count == 1)
    }

    // Without the fix the failed sign-in stays in its slot until a caller takes it: the
    // wait below never ends, and the time limit turns that into a failure.
    @Test("a sign-in that failed after its only caller was cancelled is not handed to the next caller, who signs in afresh",
          .timeLimit(.minutes(1)))
    func failedSignInIsNotKept() async throws {
        let own = try Self.serviceToken(signedBy: .current)
        let (credentials, open, signIns) = Self.gatedCredentials(own: own) {
            throw RPCError(code: .unavailable, message: "identity is restarting")
        }
        let cancelled = Task { try await credentials.token() }
        cancelled.cancel()
        let error = await #expect(throws: RPCError.self) { try await cancelled.value }
        #expect(error?.code == .cancelled)
        #expect(credentials.isSigningIn)
        // Identity fails the sign-in no one is waiting for any more.
        open.yield()
        while credentials.isSigningIn { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try await credentials.token() == own)
        #expect(signIns.count == 2)
    }

    @Test("many calls refused together sign the service in once")
    func refusalsShareOneSignIn() async throws {
        let stale = try Self.serviceToken(signedBy: .withdrawn)
        let fresh = try Self.serviceToken(signedBy: .current)
        let person = try Self.personToken(signedBy: .current)
        let setup = Setup(tokens: [stale, fresh])
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await setup.echo(forPerson: person) } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(answers == Array(repeating: "service_user via service", count: 20))
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 20)
    }

    @Test("when the fresh token is refused too, the caller is told INTERNAL (this deployment's fault), never UNAUTHENTICATED",
          arguments: [false, true])
    func refusedAgainIsInternal(sameTokenAgain: Bool) async throws {
        let stale = try Self.serviceToken(signedBy: .withdrawn)
        let alsoStale = try Self.serviceToken(signedBy: .withdrawn)
        let person = try Self.personToken(signedBy: .current)
        let setup = Setup(tokens: sameTokenAgain ? [stale] : [stale, alsoStale])
        let error = await #expect(throws: RPCError.self) { try await setup.echo(forPerson: person) }
        #expect(error?.code == .internal)
        #expect(error?.metadata[MetadataKey.refusedToken] == nil)
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 0)
        // The refused token is not kept: the next call signs in again.
        _ = await #expect(throws: RPCError.self) { try await setup.echo(forPerson: person) }
        #expect(setup.signIns.count == 4)
    }

    @Test("a person's token that is refused stays UNAUTHENTICATED (they must sign in again), and the service keeps its own")
    func refusedPersonIsUnauthenticated() async throws {
        let own = try Self.serviceToken(signedBy: .current)
        let expiredPerson = try Self.personToken(signedBy: .withdrawn)
        let setup = Setup(tokens: [own])
        let error = await #expect(throws: RPCError.self) { try await setup.echo(forPerson: expiredPerson) }
        #expect(error?.code == .unauthenticated)
        #expect(setup.signIns.count == 1)
        #expect(setup.service.ran.count == 0)
        // The callee said it was the relayed token; the service does not pass that on (it
        // would be read as speaking of its own caller's token).
        #expect(error?.metadata[MetadataKey.refusedToken] == nil)
        var request = Wholecare_Diagnostics_V1_EchoRequest()
        request.text = "hello"
        let direct = await #expect(throws: RPCError.self) {
            try await setup.bare.echo(request, options: CallOptions(metadata: [
                MetadataKey.authorization: "Bearer " + (try await setup.credentials.token()), MetadataKey.onBehalfOf: expiredPerson]))
        }
        #expect(direct?.code == .unauthenticated)
        #expect(direct?.metadata[MetadataKey.refusedToken] == MetadataKey.onBehalfOf)
    }
}
