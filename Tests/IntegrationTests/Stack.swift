import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import ServiceKit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The suite's real executables (from `WHOLECARE_BIN_DIR`, built by `make test`) running
/// as separate processes on free loopback ports against the test cluster's service
/// schemas, configured the way `wholecare up` configures them: each with its own app role,
/// its own service credentials and the addresses of the services it calls. Each test
/// starts its own stack and stops it; every process's output goes to a log file whose
/// tail is attached to a failing test.
final class Stack: @unchecked Sendable {
    struct Ports: Sendable {
        let rpc: Int
        let admin: Int
    }

    let binDirectory: String
    let logDirectory: URL
    let ports: [String: Ports]
    let environment: [String: String]
    private let lock = NSLock()
    private var processes: [String: Process] = [:]

    var gatewayPort: Int { ports["gateway"]!.rpc }

    /// Starts every executable in catalog order (each waits for the ones before it), runs
    /// `body`, then stops them in reverse order.
    static func with<T: Sendable>(accessFactsTTL: String = "2s", _ body: (Stack) async throws -> T) async throws -> T {
        try await Migration.once()
        let stack = try Stack(accessFactsTTL: accessFactsTTL)
        do {
            for service in ServiceCatalog.all { try await stack.start(service.name) }
            let result = try await body(stack)
            let statuses = try await offThread { stack.stopAll() }
            // SIGTERM is the operator's stop: every service drains and exits cleanly.
            for (name, status) in statuses {
                #expect(status == 0, "\(name) exited with status \(status) on SIGTERM\n\(stack.logTail(name))")
            }
            if statuses.allSatisfy({ $0.1 == 0 }) { try? FileManager.default.removeItem(at: stack.logDirectory) }
            return result
        } catch {
            _ = try? await offThread { stack.stopAll() }
            for service in ServiceCatalog.all { Issue.record("\(service.name) log:\n\(stack.logTail(service.name))") }
            throw error
        }
    }

    private init(accessFactsTTL: String) throws {
        binDirectory = try TestDatabase.binDirectory()
        logDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("wholecare-integration-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        var ports: [String: Ports] = [:]
        var taken: Set<Int> = []
        for service in ServiceCatalog.all {
            ports[service.name] = Ports(rpc: try FreePort.pick(avoiding: &taken), admin: try FreePort.pick(avoiding: &taken))
        }
        self.ports = ports
        var env = ProcessInfo.processInfo.environment
        for service in ServiceCatalog.all {
            let prefix = service.name.uppercased()
            env["\(prefix)_RPC_PORT"] = String(ports[service.name]!.rpc)
            env["\(prefix)_ADMIN_PORT"] = String(ports[service.name]!.admin)
            env["\(prefix)_ADDRESS"] = "127.0.0.1:\(ports[service.name]!.rpc)"
        }
        env["ACCESS_FACTS_TTL"] = accessFactsTTL
        env["GATEWAY_SECURE_COOKIES"] = "false"
        env["GATEWAY_AUTH_ATTEMPTS_PER_MINUTE"] = "1000"
        env["GATEWAY_CALL_BUDGET"] = "30s"  // a loaded test machine must not turn slow calls into 504s
        env["LOG_FORMAT"] = "json"
        env["LOG_LEVEL"] = "info"
        env["DATABASE_POOL_SIZE"] = "4"
        env.removeValue(forKey: "DATABASE_URL")
        environment = env
    }

    /// Starts (or restarts) one executable and waits until its `/readyz` answers 200.
    func start(_ name: String, timeout: Duration = .seconds(60)) async throws {
        let prefix = name.uppercased()
        var env = environment
        if ServiceCatalog.named(name)?.schema != nil { env["DATABASE_URL"] = env["\(prefix)_DATABASE_URL"] }
        if let secret = env["\(prefix)_SERVICE_CLIENT_SECRET"] { env["SERVICE_CLIENT_SECRET"] = secret }
        let logURL = logDirectory.appendingPathComponent("\(name).log")
        if !FileManager.default.fileExists(atPath: logURL.path) { _ = FileManager.default.createFile(atPath: logURL.path, contents: nil) }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDirectory).appendingPathComponent(name)
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        lock.withLock { processes[name] = process }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw StackError("\(name) exited with status \(process.terminationStatus) before it was ready")
            }
            if await (try? HTTP.status(port: ports[name]!.admin, path: "/readyz")) == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw StackError("\(name) was not ready within \(timeout)")
    }

    /// Sends a signal to one executable (SIGKILL: it dies with no chance to clean up).
    func signal(_ name: String, _ signal: Int32) async throws {
        guard let process = lock.withLock({ processes[name] }) else { return }
        kill(process.processIdentifier, signal)
        if signal == SIGKILL { try await offThread { process.waitUntilExit() } }
    }

    /// SIGTERM, last started first, then SIGKILL after 15 s; returns each exit status.
    @discardableResult
    func stopAll() -> [(String, Int32)] {
        var statuses: [(String, Int32)] = []
        for service in ServiceCatalog.all.reversed() {
            guard let process = lock.withLock({ processes.removeValue(forKey: service.name) }), process.isRunning else { continue }
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(15)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                statuses.append((service.name, -9))
            } else {
                statuses.append((service.name, process.terminationStatus))
            }
        }
        return statuses
    }

    func logTail(_ name: String, lines: Int = 30) -> String {
        let url = logDirectory.appendingPathComponent("\(name).log")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: logDirectory.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    // MARK: - Talking to it

    /// One HTTP request to the gateway on a fresh connection.
    func call(_ method: HTTPRequest.Method, _ path: String, token: String? = nil, json: [String: Any]? = nil,
              headers extra: HTTPFields = [:]) async throws -> HTTP.Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer " + token }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: json))
        }
        return try await HTTP.request(port: gatewayPort, method: method, path: path, headers: headers, body: body)
    }

    /// A platform administrator made with `wholecare create-admin`, signed in through the gateway.
    func administrator() async throws -> String {
        let email = "admin-\(UUID().uuidString.prefix(8).lowercased())@example.org"
        let password = "granite orchard lantern seventeen"
        let created = try await BuiltTool.run("wholecare", ["create-admin", "--email", email], environment: ["WHOLECARE_ADMIN_PASSWORD": password])
        guard created.status == 0 else { throw StackError("create-admin failed: \(created.output)") }
        return try await signIn(email, password)
    }

    func signIn(_ email: String, _ password: String) async throws -> String {
        let reply = try await call(.post, "/v1/auth/sign-in", json: ["email": email, "password": password])
        guard reply.status == .ok, let token = reply.json["access_token"] as? String else {
            throw StackError("sign-in failed: \(reply.status)")
        }
        return token
    }

    /// Registers a service user through the gateway; returns (token, id).
    func register(_ name: String) async throws -> (token: String, id: String) {
        let email = "\(name.lowercased())-\(UUID().uuidString.prefix(8).lowercased())@example.org"
        let reply = try await call(.post, "/v1/auth/register", json: [
            "email": email, "password": "plausible kettle harvest lantern", "display_name": name,
        ])
        guard reply.status == .created, let token = reply.json["access_token"] as? String,
              let id = (reply.json["account"] as? [String: Any])?["id"] as? String else {
            throw StackError("registration failed: \(reply.status) \(reply.text)")
        }
        return (token, id)
    }

    /// Runs the C client (`clients/c`, built by `make test`) against a service, with 30 s
    /// to connect (its 5 s default can run out on a loaded machine).
    func cClient(_ service: String, _ arguments: [String], environment extra: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        let ports = ports
        return try await offThread { try Self.runCClient(port: ports[service]!.rpc, arguments, environment: extra) }
    }

    private static func runCClient(port: Int, _ arguments: [String], environment extra: [String: String]) throws -> (status: Int32, output: String) {
        let result = try Subprocess.run(Self.repositoryRoot.appendingPathComponent("clients/c/build/wholecare-call"),
                                        ["127.0.0.1", String(port)] + arguments + ["--connect-timeout", "30000"],
                                        environment: ["PATH": "/usr/bin:/bin"].merging(extra) { _, new in new })
        return (result.status, result.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

struct StackError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `wholecare migrate` on the test cluster's service schemas, once per test process.
enum Migration {
    private actor Once {
        var done = false
        func run() async throws {
            guard !done else { return }
            let result = try await BuiltTool.run("wholecare", ["migrate"])
            guard result.status == 0 else { throw StackError("wholecare migrate failed:\n\(result.output)") }
            done = true
        }
    }

    private static let runner = Once()
    static func once() async throws { try await runner.run() }
}

/// A port nobody listens on, from below the kernel's ephemeral range so that servers
/// other tests bind to port 0 cannot be handed it in the meantime.
enum FreePort {
    static func pick(avoiding taken: inout Set<Int>) throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000...29_999)
            guard !taken.contains(port), isFree(port) else { continue }
            taken.insert(port)
            return port
        }
        throw StackError("no free port found")
    }

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// A small HTTP/1.1 client (HummingbirdTesting's, over a real socket), one connection per request.
enum HTTP {
    struct Reply: Sendable {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func request(port: Int, method: HTTPRequest.Method, path: String, headers: HTTPFields = [:], body: ByteBuffer? = nil,
                        timeout: Duration = .seconds(30)) async throws -> Reply {
        try await TestClient.withClient(host: "127.0.0.1", port: port, configuration: .init(timeout: timeout)) { client in
            let response = try await client.execute(TestClient.Request(path, method: method, headers: headers, body: body))
            return Reply(status: response.status, headers: response.headers,
                         body: response.body.map { Data($0.readableBytesView) } ?? Data())
        }
    }

    static func status(port: Int, path: String) async throws -> Int {
        try await request(port: port, method: .get, path: path, timeout: .seconds(2)).status.code
    }
}
