// swift-tools-version:6.1
// The protoc plugin that writes WholeCare's typed RPC stubs (`*.rpc.swift`) from the
// services in proto/. Built and run only by `make proto`; its output is committed.
import PackageDescription

let package = Package(
    name: "WholeCareRPCGenerator",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "protoc-gen-wholecare-rpc",
            dependencies: [.product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
