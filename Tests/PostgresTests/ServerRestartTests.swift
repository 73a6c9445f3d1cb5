import Foundation
import Postgres
import TestSupport
import Testing

/// Restarts a PostgreSQL server under a live pool. It uses a private cluster of its own
/// (started with the `wholecare` CLI) so the restart cannot disturb other tests.
@Suite("Server restart", .serialized)
struct ServerRestartTests {
    @Test("the pool recovers after the server restarts; an in-flight query fails retryably")
    func poolRecoversAfterRestart() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("wc-restart-\(getpid())").path
        // Below the kernel's ephemeral range (32768 up), where other tests' connections and
        // port-0 listeners could already hold it, and clear of the integration stacks' ports.
        let port = String(30_000 + Int(getpid() % 2_000))
        let common = ["--data-dir", dataDir, "--cluster", "restart", "--port", port]
        defer { _ = try? BuiltTool.runBlocking("wholecare", ["db", "stop", "--remove"] + common) }
        let start = try await BuiltTool.run("wholecare", ["db", "start", "--fresh"] + common, environment: ["DATABASE_URL": ""])
        try #require(start.status == 0, "cluster start failed: \(start.output)")
        let env = try String(contentsOfFile: dataDir + "/restart/env", encoding: .utf8)
        let adminURL = try #require(env.split(separator: "\n").first { $0.hasPrefix("WHOLECARE_ADMIN_DATABASE_URL=") }?
            .dropFirst("WHOLECARE_ADMIN_DATABASE_URL=".count))
        let db = TestDatabase.client(url: String(adminURL), maxConnections: 2)
        #expect(try await db.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)

        // A long query is in flight when the server goes down.
        let inFlight = Task { try await db.query("SELECT pg_sleep(30)") }
        // Wait until the server is running it (the pool's second connection asks).
        let deadline = ContinuousClock.now + .seconds(30)
        var running = false
        while !running, ContinuousClock.now < deadline {
            let active = try await db.query("""
                SELECT count(*) AS n FROM pg_stat_activity
                WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30)%'
                """)[0].decode("n", as: Int.self)
            running = active > 0
            if !running { try await Task.sleep(for: .milliseconds(50)) }
        }
        try #require(running, "the long query did not start within 30 s")
        let stop = try await BuiltTool.run("wholecare", ["db", "stop"] + common)
        try #require(stop.status == 0, "\(stop.output)")
        let restart = try await BuiltTool.run("wholecare", ["db", "start"] + common, environment: ["DATABASE_URL": ""])
        try #require(restart.status == 0, "\(restart.output)")

        let result = await inFlight.result
        guard case .failure(let error) = result, let pgError = error as? PostgresError else {
            Issue.record("the in-flight query should have failed, got \(result)")
            return
        }
        #expect(pgError.isRetryable, "expected a retryable error, got \(pgError)")
        // The next calls succeed on fresh connections, with no intervention.
        for _ in 0..<3 {
            #expect(try await db.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        }
        await db.shutdown()
    }
}
