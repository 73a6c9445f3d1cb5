import Contracts
import Foundation
import RPC
import TestSupport
import Testing

/// The C client (clients/c, protobuf-c) against a live Swift server: proves the wire
/// format is plain protobuf that a third party can speak.
@Suite("C client interoperability")
struct CInteropTests {
    static var clientPath: String {
        if let path = ProcessInfo.processInfo.environment["WHOLECARE_C_CLIENT"] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent("clients/c/build/wholecare-call").path
    }

    /// Runs the C client. Connecting and the hello get 30 s instead of the client's 5 s
    /// default: on the loaded CI machine the default has run out ("no hello (timed out)",
    /// UNAVAILABLE), and this suite is about the wire format, not connect latency.
    static func run(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let path = clientPath
        let result = try await offThread { try Subprocess.run(URL(fileURLWithPath: path), arguments + ["--connect-timeout", "30000"]) }
        return (result.status, result.stdout, result.stderr)
    }

    @Test("the C client checks health, lists methods and echoes through a Swift server")
    func healthAndEcho() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.clientPath), "build it with `make -C clients/c`")
        let test = try await TestServer.start()
        let port = String(test.port)
        let health = try await Self.run(["127.0.0.1", port, "health"])
        #expect(health.status == 0, "\(health.stderr)")
        #expect(health.stdout == "SERVING server=test protocol=1\n")
        let methods = try await Self.run(["127.0.0.1", port, "methods"])
        #expect(methods.stdout.split(separator: "\n").contains("wholecare.diagnostics.v1.Echo/Echo"), "\(methods.stderr)")
        let echo = try await Self.run(["127.0.0.1", port, "echo", "hello from C — ünïcode"])
        #expect(echo.status == 0, "\(echo.stderr)")
        #expect(echo.stdout == "hello from C — ünïcode\n")
        await test.server.shutdown()
    }

    @Test("the C client's deadline reaches the server and comes back as DEADLINE_EXCEEDED")
    func deadline() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.clientPath))
        let test = try await TestServer.start()
        let result = try await Self.run(["127.0.0.1", String(test.port), "sleep", "60017", "--timeout", "10000"])
        #expect(result.status == Int32(RPCError.Code.deadlineExceeded.rawValue))
        #expect(result.stderr.hasPrefix("DEADLINE_EXCEEDED"))
        try await eventually { EchoService.cancelledDurations.contains(60_017) }
        await test.server.shutdown()
    }

    @Test("an unreachable server is UNAVAILABLE (14)")
    func unreachable() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.clientPath))
        let result = try await Self.run(["127.0.0.1", "1", "health"])
        #expect(result.status == 14)
        #expect(result.stderr.hasPrefix("UNAVAILABLE"))
    }
}
