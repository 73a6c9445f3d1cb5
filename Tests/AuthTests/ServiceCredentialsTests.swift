import Auth
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

    /// Answers with who the call was decided for, and who relayed it; counts the calls it ran.
    struct WhoService: Wholecare_Diagnostics_V1_Echo.ServiceProtocol {
        let ran = Counter()

        func echo(request: Wholecare_Diagnostics_V1_EchoRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_EchoResponse {
            ran.increment()
            let caller = try context.caller()
            var response = Wholecare_Diagnostics_V1_EchoResponse()
            response.text = "\(caller.principal.kind.rawValue) via \(caller.relayedBy?.kind.rawValue ?? "nobody")"
            return response
        }
        func sleep(request: Wholecare_Diagnostics_V1_SleepRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_SleepResponse { .init() }
        func fail(request: Wholecare_Diagnostics_V1_FailRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_FailResponse { .init() }
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
        let service: WhoService
        let signIns: Counter
        let credentials: ServiceCredentials

        init(tokens: [String]) {
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
                return (tokens[min(index, tokens.count - 1)], Date().addingTimeInterval(900))
            }
            self.client = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: InProcessChannel(router: router), interceptors: [credentials]))
            self.service = service
            self.signIns = signIns
            self.credentials = credentials
        }

        func echo(forPerson personToken: String) async throws -> String {
            var request = Wholecare_Diagnostics_V1_EchoRequest()
            request.text = "hello"
            return try await client.echo(request, options: CallOptions(metadata: [MetadataKey.onBehalfOf: personToken])).text
        }
    }

    @Test("a callee that no longer accepts the service's own token gets the call once more with a fresh one, and the person is served")
    func refusedOwnTokenIsRenewed() async throws {
        let stale = try Self.token(kind: "service", key: Self.withdrawnKey, kid: "withdrawn", subject: "svc-records")
        let fresh = try Self.token(kind: "service", key: Self.currentKey, kid: "current", subject: "svc-records")
        let person = try Self.token(kind: "service_user", key: Self.currentKey, kid: "current")
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

    @Test("many calls refused together sign the service in once")
    func refusalsShareOneSignIn() async throws {
        let stale = try Self.token(kind: "service", key: Self.withdrawnKey, kid: "withdrawn", subject: "svc-records")
        let fresh = try Self.token(kind: "service", key: Self.currentKey, kid: "current", subject: "svc-records")
        let person = try Self.token(kind: "service_user", key: Self.currentKey, kid: "current")
        let setup = Setup(tokens: [stale, fresh])
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await setup.echo(forPerson: person) } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(answers == Array(repeating: "service_user via service", count: 20))
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 20)
    }

    @Test("when every token the service gets is refused, the caller is told INTERNAL (this deployment's fault), never UNAUTHENTICATED")
    func refusedAgainIsInternal() async throws {
        let stale = try Self.token(kind: "service", key: Self.withdrawnKey, kid: "withdrawn", subject: "svc-records")
        let person = try Self.token(kind: "service_user", key: Self.currentKey, kid: "current")
        let setup = Setup(tokens: [stale])
        let error = await #expect(throws: RPCError.self) { try await setup.echo(forPerson: person) }
        #expect(error?.code == .internal)
        #expect(setup.signIns.count == 2)
        #expect(setup.service.ran.count == 0)
    }

    @Test("a person's token that is refused stays UNAUTHENTICATED (they must sign in again), and the service keeps its own")
    func refusedPersonIsUnauthenticated() async throws {
        let own = try Self.token(kind: "service", key: Self.currentKey, kid: "current", subject: "svc-records")
        let expiredPerson = try Self.token(kind: "service_user", key: Self.withdrawnKey, kid: "withdrawn")
        let setup = Setup(tokens: [own])
        let error = await #expect(throws: RPCError.self) { try await setup.echo(forPerson: expiredPerson) }
        #expect(error?.code == .unauthenticated)
        #expect(error?.metadata[MetadataKey.refusedToken] == MetadataKey.onBehalfOf)
        #expect(setup.signIns.count == 1)
        #expect(setup.service.ran.count == 0)
    }
}
