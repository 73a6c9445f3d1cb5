import Auth
import Contracts
import Foundation
import IdentityService
import Postgres
import RPC
import TestSupport
import WholeCareCrypto

/// A controllable clock for throttling and expiry tests: real time plus an offset, or,
/// once frozen, a fixed instant plus an offset (so only `advance` moves it).
public final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var offset: TimeInterval = 0
    private var base: Date?
    public func advance(_ seconds: TimeInterval) { lock.withLock { offset += seconds } }
    /// Stops the clock at the current instant; from then on only `advance` moves it.
    public func freeze() { lock.withLock { if base == nil { base = Date() } } }
    public var now: Date { lock.withLock { (base ?? Date()).addingTimeInterval(offset) } }
}

/// The identity service in-process over a fresh, migrated schema of the real test
/// database: every RPC goes through the router, the auth interceptor and the store.
public struct IdentityHarness: Sendable {
    public let api: Wholecare_Identity_V1_Identity.Client
    /// The in-process channel to identity (for other services' `IdentityLink`s).
    public let channel: InProcessChannel
    public let store: IdentityStore
    public let keyring: SigningKeyring
    public let clock: TestClock
    public let db: PostgresClient

    public static let password = "plausible kettle harvest lantern"

    public static func with<T: Sendable>(_ body: (IdentityHarness) async throws -> T) async throws -> T {
        try await TestDatabase.withFreshSchema(maxConnections: 6) { db, schema in
            try await Migrator(schema: schema, migrations: try IdentityServiceApp.migrations()).migrate(using: db)
            let store = IdentityStore(db: db)
            let keyring = try SigningKeyring(parsing: SigningKeyring.generateEntry(kid: "test-key"))
            let clock = TestClock()
            let hashing = PasswordHashingPool(hasher: PasswordHasher(parameters: .testOnly), threads: 2)
            let service = IdentityRPCService(
                store: store, hashing: hashing, passwordPolicy: try PasswordPolicy.bundled(),
                issuer: TokenIssuer(keyring: keyring), now: { clock.now })
            let router = IdentityServiceApp.router(service: service, keyring: keyring)
            let channel = InProcessChannel(router: router)
            let api = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: channel, retryPolicy: .none))
            let result = try await body(IdentityHarness(api: api, channel: channel, store: store, keyring: keyring, clock: clock, db: db))
            await hashing.shutdown()
            return result
        }
    }

    public static func bearer(_ token: String) -> CallOptions { CallOptions(metadata: ["authorization": "Bearer " + token]) }

    public func register(_ email: String, name: String = "Test Person", kind: Wholecare_Identity_V1_SubjectKind = .serviceUser) async throws -> Wholecare_Identity_V1_SignInResponse {
        var request = Wholecare_Identity_V1_RegisterRequest()
        request.email = email
        request.password = Self.password
        request.displayName = name
        request.kind = kind
        return try await api.register(request)
    }

    public func signIn(_ email: String, password: String = IdentityHarness.password) async throws -> Wholecare_Identity_V1_SignInResponse {
        var request = Wholecare_Identity_V1_SignInRequest()
        request.email = email
        request.password = password
        return try await api.signIn(request)
    }

    /// A platform administrator created directly in the store (as `wholecare create-admin` does).
    public func admin() async throws -> String {
        let hash = try PasswordHasher(parameters: .testOnly).hash(Self.password)
        _ = try await store.createAccount(kind: "administrator", email: "admin@wholecare.test", displayName: "Admin",
                                          passwordHash: hash, roles: ["platform_admin"])
        return try await signIn("admin@wholecare.test").accessToken
    }

    public func organisation(_ name: String, admin token: String, kind: Wholecare_Identity_V1_OrganisationKind = .council) async throws -> String {
        var request = Wholecare_Identity_V1_CreateOrganisationRequest()
        request.name = name
        request.kind = kind
        return try await api.createOrganisation(request, options: Self.bearer(token)).id
    }

    public func professional(_ email: String, org: String, roles: [String], admin token: String) async throws -> (id: String, token: String) {
        var request = Wholecare_Identity_V1_CreateProfessionalRequest()
        request.organisationID = org
        request.email = email
        request.displayName = "Pro " + email
        request.roles = roles
        request.initialPassword = Self.password
        let account = try await api.createProfessional(request, options: Self.bearer(token))
        return (account.id, try await signIn(email).accessToken)
    }
}
