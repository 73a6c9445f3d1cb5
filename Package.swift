// swift-tools-version:6.1
// WholeCare: a modular microservice suite for people who receive health and social care.
// See docs/architecture.md for the module map (which module may import which).

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

// MARK: - External dependencies (only versions the machine's package mirror holds)

let dependencies: [Package.Dependency] = [
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
]

let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let metrics: Target.Dependency = .product(name: "Metrics", package: "swift-metrics")
let protobuf: Target.Dependency = .product(name: "SwiftProtobuf", package: "swift-protobuf")
let lifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let hummingbird: Target.Dependency = .product(name: "Hummingbird", package: "hummingbird")

// MARK: - Shared modules

var targets: [Target] = [
    .systemLibrary(
        name: "CLibPQ",
        path: "Shared/CLibPQ",
        pkgConfig: "libpq",
        providers: [.apt(["libpq-dev"])]
    ),
    .systemLibrary(
        name: "COpenSSL",
        path: "Shared/COpenSSL",
        pkgConfig: "libcrypto",
        providers: [.apt(["libssl-dev"])]
    ),
    .target(
        name: "UUIDText",
        path: "Shared/UUIDText",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "Postgres",
        dependencies: ["CLibPQ", "UUIDText", nioCore, nioPosix, logging],
        path: "Shared/Postgres",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "WholeCareCrypto",
        dependencies: ["COpenSSL", "UUIDText"],
        path: "Shared/Crypto",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "RPC",
        dependencies: ["UUIDText", protobuf, logging, metrics],
        path: "Shared/RPC",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "RPCTransport",
        dependencies: ["RPC", protobuf, nioCore, nioPosix, logging, lifecycle],
        path: "Shared/RPCTransport",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "Contracts",
        dependencies: ["RPC", protobuf],
        path: "Shared/Contracts",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "Auth",
        dependencies: ["RPC", "RPCTransport", "Contracts", "ServiceKit", "WholeCareCrypto", logging],
        path: "Shared/Auth",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "ServiceKit",
        dependencies: [
            "Postgres", "RPC", "RPCTransport", logging, metrics, lifecycle, hummingbird,
            .product(name: "Prometheus", package: "swift-prometheus"),
        ],
        path: "Shared/ServiceKit",
        swiftSettings: swiftSettings
    ),
]

// MARK: - Services: a library with the logic, and a thin executable that wires it up

struct ServiceSpec {
    let directory: String
    let library: String
    let executable: String
    let dependencies: [Target.Dependency]
    let hasMigrations: Bool
    var resources: [Resource] = []
}

let services: [ServiceSpec] = [
    .init(directory: "Identity", library: "IdentityService", executable: "identity",
          dependencies: ["ServiceKit", "Postgres", "WholeCareCrypto", "RPC", "Contracts", "Auth"], hasMigrations: true,
          resources: [.copy("CommonPasswords.txt")]),
    .init(directory: "Records", library: "RecordsService", executable: "records",
          dependencies: ["ServiceKit", "Postgres", "WholeCareCrypto", "RPC", "Contracts", "Auth", lifecycle, metrics], hasMigrations: true),
    .init(directory: "Ledger", library: "LedgerService", executable: "ledger",
          dependencies: ["ServiceKit", "Postgres", "RPC", "Contracts", "Auth", "WholeCareCrypto", lifecycle], hasMigrations: true),
    .init(directory: "Engagement", library: "EngagementService", executable: "engagement",
          dependencies: ["ServiceKit", "Postgres", "RPC", "Contracts"], hasMigrations: false),
    .init(directory: "Directory", library: "DirectoryService", executable: "directory",
          dependencies: ["ServiceKit", "Postgres", "RPC", "Contracts"], hasMigrations: false),
    .init(directory: "Gateway", library: "GatewayService", executable: "gateway",
          dependencies: ["ServiceKit", hummingbird, "RPC", "RPCTransport", "Contracts", "Auth", "WholeCareCrypto", protobuf, nioCore, nioPosix],
          hasMigrations: false, resources: [.copy("openapi.json")]),
]

for service in services {
    targets.append(.target(
        name: service.library,
        dependencies: service.dependencies,
        path: "Services/\(service.directory)/Sources",
        resources: (service.hasMigrations ? [.copy("Migrations")] : []) + service.resources,
        swiftSettings: swiftSettings
    ))
    targets.append(.executableTarget(
        name: service.executable,
        dependencies: [.byName(name: service.library), "ServiceKit"],
        path: "Services/\(service.directory)/Main",
        swiftSettings: swiftSettings
    ))
}

// The operator CLI: local database, migrations, demo seed, admin tasks.
targets.append(.executableTarget(
    name: "wholecare",
    dependencies: [
        "ServiceKit", "Postgres", "WholeCareCrypto", "RPC", "RPCTransport", "Contracts", "Auth",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
    ] + services.filter(\.hasMigrations).map { .byName(name: $0.library) },
    path: "Services/Operator",
    swiftSettings: swiftSettings
))

// MARK: - Tests

targets += [
    .target(
        name: "TestSupport",
        dependencies: ["Postgres", logging],
        path: "Tests/Test Utilities/Database",
        swiftSettings: swiftSettings
    ),
    .target(
        name: "ServiceTestSupport",
        dependencies: ["TestSupport", "IdentityService", "RecordsService", "LedgerService", "Auth", "Contracts", "RPC", "Postgres",
                       "WholeCareCrypto"],
        path: "Tests/Test Utilities/Services",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "PostgresTests",
        dependencies: ["Postgres", "TestSupport", "IdentityService", "RecordsService", "LedgerService"],
        path: "Tests/PostgresTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "RPCTests",
        dependencies: ["RPC", "RPCTransport", "Contracts", "TestSupport", nioCore, nioPosix,
                       .product(name: "NIOTestUtils", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
        path: "Tests/RPCTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "AuthTests",
        dependencies: ["Auth", "WholeCareCrypto", "RPC", "Contracts"],
        path: "Tests/AuthTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "IdentityTests",
        dependencies: ["IdentityService", "Auth", "Contracts", "RPC", "Postgres", "TestSupport", "ServiceTestSupport", "WholeCareCrypto"],
        path: "Tests/IdentityTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "RecordsTests",
        dependencies: ["RecordsService", "IdentityService", "Auth", "Contracts", "RPC", "Postgres", "TestSupport",
                       "ServiceTestSupport", "WholeCareCrypto"],
        path: "Tests/RecordsTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "LedgerTests",
        dependencies: ["LedgerService", "IdentityService", "Auth", "Contracts", "RPC", "Postgres", "TestSupport",
                       "ServiceTestSupport", "WholeCareCrypto"],
        path: "Tests/LedgerTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "GatewayTests",
        dependencies: ["GatewayService", "ServiceTestSupport", "TestSupport", "Contracts", "RPC", "Auth", hummingbird,
                       .product(name: "HummingbirdTesting", package: "hummingbird")],
        path: "Tests/GatewayTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "IntegrationTests",
        dependencies: ["ServiceKit", "TestSupport", hummingbird, .product(name: "HummingbirdTesting", package: "hummingbird")],
        path: "Tests/IntegrationTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "CryptoTests",
        dependencies: ["WholeCareCrypto"],
        path: "Tests/CryptoTests",
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "ServiceKitTests",
        dependencies: ["ServiceKit", "TestSupport", "RPC"],
        path: "Tests/ServiceKitTests",
        swiftSettings: swiftSettings
    ),
]

let package = Package(
    name: "WholeCare",
    platforms: [.macOS(.v15)],
    products: services.map { .executable(name: $0.executable, targets: [$0.executable]) }
        + [.executable(name: "wholecare", targets: ["wholecare"]),
           // For the benchmark package (Tests/Benchmarks) and other Swift programs.
           .library(name: "WholeCareRPC", targets: ["RPC", "RPCTransport", "Contracts"]),
           .library(name: "WholeCareServices", targets: ["Auth", "Postgres", "WholeCareCrypto", "ServiceKit", "IdentityService",
                                                         "RecordsService", "LedgerService", "GatewayService"])],
    dependencies: dependencies,
    targets: targets
)
