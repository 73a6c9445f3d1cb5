import ArgumentParser
import Foundation
import ServiceKit

/// `wholecare bootstrap`: print or apply the per-service schema/role script.
struct BootstrapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract: "Create the per-service schemas and roles on a server (or print the SQL).")

    @Option(help: "Superuser URL of the server (default: $DATABASE_URL).")
    var adminURL: String?
    @Option(help: "Database to create and use.")
    var database: String = "wholecare"
    @Flag(help: "Print the SQL script with psql variables (:'wc_identity_owner_password', …) instead of running it.")
    var printSQL = false

    func run() async throws {
        if printSQL {
            var passwords: [String: String] = [:]
            for role in DatabaseBootstrap.roleNames { passwords[role] = "\u{1}\(role)\u{1}" }
            var script = try DatabaseBootstrap(database: database, passwords: passwords).script()
            for role in DatabaseBootstrap.roleNames {
                script = script.replacingOccurrences(of: "'\u{1}\(role)\u{1}'", with: ":'\(role)_password'")
            }
            print(script, terminator: "")
            return
        }
        guard let url = adminURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"] else {
            throw ValidationError("give --admin-url or set DATABASE_URL to a superuser URL")
        }
        var passwords: [String: String] = [:]
        for role in DatabaseBootstrap.roleNames {
            let variable = role.uppercased() + "_PASSWORD"
            guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
                throw ValidationError("set \(variable) (the password for role \(role))")
            }
            passwords[role] = value
        }
        try await Bootstrapper.run(adminURL: url, database: database, passwords: passwords)
        print("bootstrapped \(ServiceCatalog.withSchemas.count) schemas and \(passwords.count) roles in \(database)")
    }
}
