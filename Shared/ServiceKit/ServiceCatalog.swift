/// The executables of the suite, their schemas and default ports. The local runner, the
/// bootstrap, the compose file check and the docs all read this one list.
public struct ServiceDescriptor: Sendable, Hashable {
    /// Executable and service name (`identity`).
    public let name: String
    /// PostgreSQL schema the service owns, or `nil` (the gateway owns none).
    public let schema: String?
    /// Default RPC port (the gateway's is its HTTP port).
    public let defaultPort: Int
    /// Services this one calls, which must be ready before it is.
    public let dependsOn: [String]

    public var ownerRole: String? { schema.map { "wc_\($0)_owner" } }
    public var appRole: String? { schema.map { "wc_\($0)_app" } }
    public var defaultAdminPort: Int { defaultPort + 1000 }
}

public enum ServiceCatalog {
    public static let identity = ServiceDescriptor(name: "identity", schema: "identity", defaultPort: 7101, dependsOn: [])
    public static let records = ServiceDescriptor(name: "records", schema: "records", defaultPort: 7102, dependsOn: ["identity"])
    public static let ledger = ServiceDescriptor(name: "ledger", schema: "ledger", defaultPort: 7103, dependsOn: ["identity"])
    public static let engagement = ServiceDescriptor(
        name: "engagement", schema: "engagement", defaultPort: 7104, dependsOn: ["identity", "records"])
    public static let directory = ServiceDescriptor(name: "directory", schema: "directory", defaultPort: 7105, dependsOn: ["identity"])
    public static let gateway = ServiceDescriptor(
        name: "gateway", schema: nil, defaultPort: 8080,
        dependsOn: ["identity", "records", "ledger", "engagement", "directory"])

    /// In start-up order: each entry only depends on entries before it.
    public static let all: [ServiceDescriptor] = [identity, records, ledger, engagement, directory, gateway]

    public static var withSchemas: [ServiceDescriptor] { all.filter { $0.schema != nil } }

    public static func named(_ name: String) -> ServiceDescriptor? { all.first { $0.name == name } }
}
