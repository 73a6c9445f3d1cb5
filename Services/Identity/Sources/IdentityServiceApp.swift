import Auth
import Foundation
import Logging
import Postgres
import RPC
import ServiceKit
import WholeCareCrypto

/// Wires the identity service together: database pool, password hashing pool, token
/// issuer, RPC server with authentication, admin listener.
public enum IdentityServiceApp {
    public static let descriptor = ServiceCatalog.identity

    /// Everything identity reads from the environment, validated at start-up.
    public struct Settings: Sendable {
        public var keyring: SigningKeyring
        public var accessTokenLifetime: TimeInterval
        public var refreshTokenLifetime: TimeInterval
        public var hashParameters: PasswordHasher.Parameters
        public var hashThreads: Int
        /// `svc-<name>` client ids and secrets of the WholeCare services.
        public var serviceClients: [(clientID: String, secret: String)]
        /// The service clients that may read the care-relationship change feed.
        public var careTeamFeedClients: Set<String>

        public init(environment: EnvironmentConfiguration) throws {
            do {
                keyring = try SigningKeyring(parsing: try environment.require("IDENTITY_SIGNING_KEYS"))
            } catch let error as ConfigurationError {
                throw error
            } catch {
                throw ConfigurationError(variable: "IDENTITY_SIGNING_KEYS", problem: "must be kid:base64url-seed entries separated by commas")
            }
            let access = try environment.duration("IDENTITY_ACCESS_TOKEN_TTL", default: .seconds(900))
            guard access <= .seconds(900), access >= .seconds(30) else {
                throw ConfigurationError(variable: "IDENTITY_ACCESS_TOKEN_TTL", problem: "must be between 30s and 15m")
            }
            accessTokenLifetime = TimeInterval(access.components.seconds)
            refreshTokenLifetime = TimeInterval(try environment.duration("IDENTITY_REFRESH_TOKEN_TTL", default: .seconds(30 * 86_400)).components.seconds)
            switch environment.string("IDENTITY_PASSWORD_HASH_PROFILE", default: "owasp") {
            case "owasp": hashParameters = .owasp
            case "test": hashParameters = .testOnly
            default: throw ConfigurationError(variable: "IDENTITY_PASSWORD_HASH_PROFILE", problem: "must be owasp or test")
            }
            hashThreads = try environment.int("IDENTITY_HASH_THREADS", default: PasswordHashingPool.defaultThreads, range: 1...64)
            serviceClients = try environment.optionalString("IDENTITY_SERVICE_CLIENTS").map { text in
                try text.split(separator: ",").map { entry in
                    let parts = entry.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2, parts[0].hasPrefix("svc-"), parts[1].count >= 32 else {
                        throw ConfigurationError(variable: "IDENTITY_SERVICE_CLIENTS",
                                                 problem: "must be svc-<name>:<secret of 32+ characters> entries separated by commas")
                    }
                    return (String(parts[0]), String(parts[1]))
                }
            } ?? []
            let feedClients = environment.string("IDENTITY_CARE_TEAM_FEED_CLIENTS", default: "svc-records")
                .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !feedClients.isEmpty, feedClients.allSatisfy({ $0.hasPrefix("svc-") && $0.count > 4 }) else {
                throw ConfigurationError(variable: "IDENTITY_CARE_TEAM_FEED_CLIENTS", problem: "must be svc-<name> client ids separated by commas")
            }
            careTeamFeedClients = Set(feedClients)
        }
    }

    public static func main() async {
        do {
            let runner = try ServiceRunner(name: descriptor.name, defaultRPCPort: descriptor.defaultPort)
            let settings = try Settings(environment: runner.environment)
            if settings.hashParameters != .owasp {
                runner.logger.warning("password hashing uses the cheap TEST profile (IDENTITY_PASSWORD_HASH_PROFILE=test)")
            }
            let client = try runner.makeDatabase()
            let database = DatabaseService(client: client)
            let store = IdentityStore(db: client)
            for service in settings.serviceClients {
                try await store.createClient(
                    clientID: service.clientID, secretHash: Digest.sha256(service.secret), kind: "service",
                    name: String(service.clientID.dropFirst(4)), organisationID: nil)
            }
            let hashing = PasswordHashingPool(hasher: PasswordHasher(parameters: settings.hashParameters), threads: settings.hashThreads)
            let service = IdentityRPCService(
                store: store, hashing: hashing, passwordPolicy: try PasswordPolicy.bundled(),
                issuer: TokenIssuer(keyring: settings.keyring, accessTokenLifetime: settings.accessTokenLifetime,
                                    refreshTokenLifetime: settings.refreshTokenLifetime),
                careTeamFeedClients: settings.careTeamFeedClients)
            let rpc = try runner.makeRPCServer(router: router(service: service, keyring: settings.keyring))
            try await runner.run(services: [database, rpc], checks: [database.readinessCheck])
            await hashing.shutdown()
        } catch {
            ServiceRunner.fail(error, service: descriptor.name)
        }
    }

    /// The router identity serves: its methods behind an authentication interceptor that
    /// verifies tokens with identity's own keys (no network round trip).
    public static func router(service: IdentityRPCService, keyring: SigningKeyring) -> RPCRouter {
        let keys = keyring.publicKeys
        let verifier = TokenVerifier { keys }
        verifier.install(keys: keys)
        var router = RPCRouter()
        router.register(service)
        router.interceptors = [AuthInterceptor(verifier: verifier, publicMethods: IdentityRPCService.publicMethods)]
        return router
    }
}

extension IdentityServiceApp {
    /// The identity schema's migrations, bundled with the service.
    public static func migrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile)
        }
        return try Migration.load(directory: directory)
    }
}
