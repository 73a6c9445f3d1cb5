import Foundation
import Postgres

/// `make bench-pgclient`: the Postgres client alone. 64 tasks run `SELECT 1` on a pool of
/// 8 connections for `seconds`, first through a session's `query` (sent without blocking
/// a thread, awaited with epoll), then through `withBlockingConnection` (a hop to a pool
/// thread that blocks in libpq, the only path before), next to pgbench running the same
/// statement (prepared) from 8 connections: the server's and libpq's own limit.
func pgClientBench(seconds: Int) async throws {
    guard let url = ProcessInfo.processInfo.environment["WHOLECARE_ADMIN_DATABASE_URL"] else {
        print("set WHOLECARE_ADMIN_DATABASE_URL (source .data/dev/env)")
        exit(2)
    }
    let db = PostgresClient(configuration: PostgresConfiguration(connectionString: url, maxConnections: 8))
    func run(_ statement: @escaping @Sendable (PostgresClient) async throws -> Void) async throws -> Double {
        try await Task.detached {
            let start = DispatchTime.now().uptimeNanoseconds
            let deadline = start + UInt64(seconds) * 1_000_000_000
            let count = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        var n = 0
                        while DispatchTime.now().uptimeNanoseconds < deadline {
                            try await statement(db)
                            n += 1
                        }
                        return n
                    }
                }
                return try await group.reduce(0, +)
            }
            return Double(count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }.value
    }
    _ = try await run { _ = try await $0.query("SELECT 1 AS one") }  // warm-up: connections, prepared statements
    let awaited = try await run { _ = try await $0.query("SELECT 1 AS one") }
    let blocking = try await run { _ = try await $0.withBlockingConnection { try $0.query("SELECT 1 AS one") } }
    await db.shutdown()
    let script = FileManager.default.temporaryDirectory.appendingPathComponent("select1-\(UUID().uuidString).sql").path
    try "SELECT 1 AS one;\n".write(toFile: script, atomically: true, encoding: .utf8)
    defer { unlink(script) }
    let reference = try pgbenchScript(adminURL: url, script: script, clients: 8, seconds: seconds)
    print("| `SELECT 1`, \(seconds) s each, 8 connections | statements/s |")
    print("|---|---:|")
    print("| session `query` from 64 tasks (sent without blocking, awaited with epoll) | \(Int(awaited)) |")
    print("| `withBlockingConnection` from 64 tasks (a hop to a pool thread blocking in libpq) | \(Int(blocking)) |")
    print("| pgbench -M prepared, 8 clients | \(Int(reference.rate)) |")
}
