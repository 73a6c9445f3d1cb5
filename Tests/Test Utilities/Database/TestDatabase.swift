import Foundation
import Logging
import Postgres

/// Access to the throwaway PostgreSQL cluster that `make test` starts. Its settings come
/// from the environment (`.data/test/env`, exported by the Makefile).
public enum TestDatabase {
    public struct NotConfigured: Error, CustomStringConvertible {
        public let variable: String
        public var description: String {
            "\(variable) is not set: run the tests with `make test`, which starts the test database"
        }
    }

    public static func environment(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { throw NotConfigured(variable: name) }
        return value
    }

    /// A superuser URL for the test cluster's `wholecare` database.
    public static func adminURL() throws -> String { try environment("WHOLECARE_ADMIN_DATABASE_URL") }

    /// The directory holding the built executables (`swift build --show-bin-path`).
    public static func binDirectory() throws -> String { try environment("WHOLECARE_BIN_DIR") }

    public static func client(url: String, maxConnections: Int = 4, searchPath: String? = nil,
                              acquireTimeout: Duration = .seconds(30), transactionAttempts: Int = 6,
                              lockTimeout: Duration? = nil) -> PostgresClient {
        PostgresClient(
            configuration: PostgresConfiguration(
                connectionString: url, maxConnections: maxConnections, acquireTimeout: acquireTimeout,
                applicationName: "wholecare-tests", transactionAttempts: transactionAttempts, searchPath: searchPath,
                lockTimeout: lockTimeout),
            logger: Logger(label: "tests.postgres"))
    }

    /// Runs `body` with a client whose search path is a brand-new schema, dropped after.
    /// Tests that use it do not depend on each other or on order.
    public static func withFreshSchema<T: Sendable>(
        maxConnections: Int = 4, acquireTimeout: Duration = .seconds(30), transactionAttempts: Int = 6,
        lockTimeout: Duration? = nil,
        _ body: (_ client: PostgresClient, _ schema: String) async throws -> T
    ) async throws -> T {
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let admin = client(url: try adminURL(), maxConnections: 1)
        try await admin.withConnection { try await $0.run(unsafeSQL: "CREATE SCHEMA \(PostgresQuery.quoteIdentifier(schema))") }
        let scoped = client(url: try adminURL(), maxConnections: maxConnections, searchPath: schema,
                            acquireTimeout: acquireTimeout, transactionAttempts: transactionAttempts, lockTimeout: lockTimeout)
        do {
            let result = try await body(scoped, schema)
            await scoped.shutdown()
            try await admin.withConnection { try await $0.run(unsafeSQL: "DROP SCHEMA \(PostgresQuery.quoteIdentifier(schema)) CASCADE") }
            await admin.shutdown()
            return result
        } catch {
            await scoped.shutdown()
            _ = try? await admin.withConnection { try await $0.run(unsafeSQL: "DROP SCHEMA \(PostgresQuery.quoteIdentifier(schema)) CASCADE") }
            await admin.shutdown()
            throw error
        }
    }
}

/// Whether `condition` holds within `limit`: asked at once, then every `interval` until it
/// does or the time is up (then once more). For tests that wait for an event rather than a
/// fixed time, which a loaded machine can overrun.
public func waitUntil(within limit: Duration = .seconds(20), every interval: Duration = .milliseconds(20),
                 until condition: () async throws -> Bool) async throws -> Bool {
    let giveUp = ContinuousClock.now + limit
    while ContinuousClock.now < giveUp {
        if try await condition() { return true }
        try await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Runs blocking work (waiting for a child process) on a thread of its own, so that it
/// never holds one of the cooperative pool's threads (two on a 2-core machine) that the
/// tests running in parallel need.
public func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs a child process to completion: standard output through a pipe, standard error
/// through a file (so a child filling one while the other is drained cannot deadlock).
/// Blocking: async tests call it through `offThread` (or `BuiltTool.run`).
public enum Subprocess {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
        /// Both streams, standard output first.
        public var output: String { stdout + stderr }
    }

    public static func run(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
                           directory: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = directory }
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("wholecare-stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        let out = Pipe(), err = try FileHandle(forWritingTo: errorFile)
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try? err.close()
        let stderr = (try? Data(contentsOf: errorFile)) ?? Data()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// Runs a built executable of this package and returns its output.
public enum BuiltTool {
    /// `run` on a thread of its own, for async tests: waiting for a process must not hold
    /// one of the cooperative pool's threads (two on a 2-core machine) for seconds.
    @discardableResult
    public static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        try await offThread { try runBlocking(name, arguments, environment: environment) }
    }

    @discardableResult
    public static func runBlocking(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        let result = try Subprocess.run(URL(fileURLWithPath: try TestDatabase.binDirectory()).appendingPathComponent(name), arguments,
                                        environment: env)
        return (result.status, result.output)
    }
}
