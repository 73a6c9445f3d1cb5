import ArgumentParser
import Foundation
import IdentityService
import Logging
import Postgres
import ServiceKit
import WholeCareCrypto

/// `wholecare create-admin`: the first platform administrator, written straight to the
/// identity schema (there is nobody yet to authorise an RPC).
struct CreateAdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-admin",
        abstract: "Create a platform administrator (reads IDENTITY_DATABASE_URL; the password from WHOLECARE_ADMIN_PASSWORD or stdin).")

    @Option(help: "The administrator's e-mail address.")
    var email: String
    @Option(help: "The name shown for the administrator.")
    var name: String = "Platform administrator"

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let password = ProcessInfo.processInfo.environment["WHOLECARE_ADMIN_PASSWORD"] ?? readLine(strippingNewline: true) ?? ""
        let created = try await Self.create(email: email, name: name, password: password, environment: EnvironmentConfiguration())
        print(created ? "created administrator \(email)" : "an account with this e-mail address already exists")
    }

    /// Returns false if the address is taken (idempotent for seeding).
    static func create(email: String, name: String, password: String, environment: EnvironmentConfiguration) async throws -> Bool {
        if let problem = try PasswordPolicy.bundled().problem(with: password, email: email) {
            throw ValidationError("the password \(problem.message)")
        }
        let client = PostgresClient(configuration: PostgresConfiguration(
            connectionString: try environment.databaseURL("IDENTITY_DATABASE_URL"), maxConnections: 1, applicationName: "wholecare-cli"))
        // Shut the client down before returning, never in a detached task: a shutdown still
        // running on its threads while the process exits crashed it ("double free") after
        // the administrator had been created.
        do {
            let created = try await createAccount(email: email, name: name, password: password, environment: environment, client: client)
            await client.shutdown()
            return created
        } catch {
            await client.shutdown()
            throw error
        }
    }

    private static func createAccount(email: String, name: String, password: String, environment: EnvironmentConfiguration,
                                      client: PostgresClient) async throws -> Bool {
        let store = IdentityStore(db: client)
        if try await store.account(email: email) != nil { return false }
        let parameters: PasswordHasher.Parameters = environment.string("IDENTITY_PASSWORD_HASH_PROFILE", default: "owasp") == "test" ? .testOnly : .owasp
        let hash = try PasswordHasher(parameters: parameters).hash(password)
        return try await store.createAccount(
            kind: "administrator", email: email.lowercased(), displayName: name, passwordHash: hash, roles: ["platform_admin"]) != nil
    }
}
