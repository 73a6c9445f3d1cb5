import Foundation
import ServiceKit
import TestSupport
import Testing

/// `compose.yaml` cannot be run here (no Docker engine), so it is kept honest two ways:
/// Compose itself must accept it, and it must describe exactly the services, ports and
/// dependencies of the catalog the local runner (`wholecare up`) starts from.
@Suite("compose.yaml")
struct ComposeTests {
    static let root = Stack.repositoryRoot
    /// Catalog dependencies whose calls have not been written yet.
    static let notCalledYet: Set<String> = ["gateway->engagement", "gateway->directory", "engagement->records"]

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let result = try Subprocess.run(URL(fileURLWithPath: "/usr/bin/env"), [executable] + arguments, directory: root)
        return (result.status, result.stdout, result.stderr)
    }

    /// The file as JSON, parsed by PyYAML (installed with docker-compose by `make deps`).
    static func compose() async throws -> [String: Any] {
        let parsed = try await offThread { try run("python3", ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", "compose.yaml"]) }
        try #require(parsed.status == 0, "\(parsed.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(parsed.output.utf8)) as? [String: Any])
    }

    @Test("docker-compose accepts the file")
    func composeAccepts() async throws {
        let result = try await offThread { try Self.run("docker-compose", ["-f", "compose.yaml", "config", "--quiet"]) }
        #expect(result.status == 0, "docker-compose config: \(result.error)")
    }

    @Test("the services, images, ports and start-up order are the catalog's")
    func matchesCatalog() async throws {
        let services = try #require(try await Self.compose()["services"] as? [String: [String: Any]])
        #expect(Set(services.keys) == Set(ServiceCatalog.all.map(\.name) + ["db", "migrate", "reseal"]))
        // The re-sealing tool is only run on demand, and holds no secret it does not need.
        #expect(services["reseal"]?["profiles"] as? [String] == ["tools"])
        #expect(Set(services["reseal"]?["secrets"] as? [String] ?? []) == ["wc_records_owner_password", "field_encryption_keys"])
        for service in ServiceCatalog.all {
            let entry = try #require(services[service.name], "\(service.name) is missing")
            let prefix = service.name.uppercased()
            let build = entry["build"] as? [String: Any] ?? [:]
            let args = build["args"] as? [String: Any] ?? [:]
            #expect(args["SERVICE"] as? String == service.name, "\(service.name): one image per executable")
            let environment = entry["environment"] as? [String: Any] ?? [:]
            #expect(environment["\(prefix)_RPC_PORT"] as? String == String(service.defaultPort), "\(service.name) port")
            #expect(environment["\(prefix)_ADMIN_PORT"] as? String == String(service.defaultAdminPort), "\(service.name) admin port")
            #expect(args["ADMIN_PORT"] as? String == String(service.defaultAdminPort), "\(service.name): image healthcheck port")
            // It waits for what it calls, finds it by service name, and for the migrations.
            let dependsOn = entry["depends_on"] as? [String: [String: Any]] ?? [:]
            #expect(dependsOn["migrate"]?["condition"] as? String == "service_completed_successfully", "\(service.name)")
            for dependency in service.dependsOn {
                #expect(dependsOn[dependency]?["condition"] as? String == "service_healthy", "\(service.name) waits for \(dependency)")
                let port = try #require(ServiceCatalog.named(dependency)).defaultPort
                // Started after them, but not calling them yet (no address to configure).
                if Self.notCalledYet.contains("\(service.name)->\(dependency)") { continue }
                #expect(environment["\(dependency.uppercased())_ADDRESS"] as? String == "\(dependency):\(port)",
                        "\(service.name) finds \(dependency)")
            }
            #expect(Set(dependsOn.keys) == Set(service.dependsOn + ["migrate"]), "\(service.name) depends on exactly its callees")
            #expect(entry["restart"] as? String == "unless-stopped")
            let healthcheck = entry["healthcheck"] as? [String: Any] ?? [:]
            let test = (healthcheck["test"] as? [String] ?? []).joined(separator: " ")
            #expect(test.contains("127.0.0.1:\(service.defaultAdminPort)/readyz"), "\(service.name) healthcheck: \(test)")
            // Only the gateway is published.
            let published = entry["ports"] as? [Any] ?? []
            #expect(published.isEmpty == (service.name != "gateway"), "\(service.name) ports: \(published)")
        }
        let gatewayPorts = (services["gateway"]?["ports"] as? [Any] ?? []).map { "\($0)" }
        #expect(gatewayPorts.contains { $0.hasSuffix("8080:8080") || $0 == "8080:8080" }, "\(gatewayPorts)")
    }

    @Test("the compose database is bootstrapped exactly as the local one: docker/initdb/bootstrap.sql is `wholecare bootstrap --print-sql`")
    func bootstrapSQLMatches() async throws {
        let printed = try await BuiltTool.run("wholecare", ["bootstrap", "--print-sql"])
        #expect(printed.status == 0)
        let committed = try String(contentsOf: Self.root.appendingPathComponent("docker/initdb/bootstrap.sql"), encoding: .utf8)
        #expect(printed.output == committed, "regenerate it: wholecare bootstrap --print-sql > docker/initdb/bootstrap.sql")
    }

    @Test("secrets are compose secrets: no password, key or database URL is written into the file's environment")
    func secretsStayOut() async throws {
        let compose = try await Self.compose()
        let services = try #require(compose["services"] as? [String: [String: Any]])
        let declared = Set((compose["secrets"] as? [String: Any] ?? [:]).keys)
        #expect(declared.contains("identity_signing_keys") && declared.contains("field_encryption_keys"))
        for (name, entry) in services {
            for (key, value) in entry["environment"] as? [String: Any] ?? [:] {
                let text = "\(value)"
                let secretish = ["PASSWORD", "SECRET", "_KEYS", "DATABASE_URL", "SERVICE_CLIENTS"].contains { key.hasSuffix($0) }
                #expect(!secretish, "\(name): \(key) must come from a secret")
                #expect(!text.contains("postgresql://"), "\(name): \(key) holds a connection string")
            }
            for secret in entry["secrets"] as? [String] ?? [] {
                #expect(declared.contains(secret), "\(name) uses undeclared secret \(secret)")
            }
        }
    }
}
