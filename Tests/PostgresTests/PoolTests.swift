import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Connection pool")
struct PoolTests {
    @Test("an exhausted pool makes callers wait, then time out with a clear error")
    func exhaustionWaitsThenTimesOut() async throws {
        let db = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 1, acquireTimeout: .milliseconds(300))
        // Hold the only connection until the test has seen the timeout (not for a fixed
        // time, which a loaded machine could outlast before the test even asks).
        let holding = PayloadBox(), release = PayloadBox()
        let holder = Task {
            try await db.withConnection { session in
                holding.append("got it")
                while release.count == 0 { try await session.query("SELECT pg_sleep(0.05)") }
            }
        }
        let holdDeadline = ContinuousClock.now + .seconds(30)
        while holding.count == 0 {
            try #require(ContinuousClock.now < holdDeadline, "the holder never got a connection")
            try await Task.sleep(for: .milliseconds(10))
        }
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) { try await db.query("SELECT 1 AS one") }
        let waited = ContinuousClock.now - started
        #expect(error?.kind == .poolTimeout)
        #expect(error?.description.contains("no database connection became free") == true)
        #expect(waited >= .milliseconds(250))
        // Once the holder lets go, the connection serves the next caller.
        release.append("done")
        _ = try await holder.value
        #expect(try await db.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        await db.shutdown()
    }

    @Test("several reads in one hop share one connection and return it, also when one fails")
    func blockingConnection() async throws {
        let db = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 1, acquireTimeout: .seconds(5))
        let (pid, values) = try await db.withBlockingConnection { session -> (Int, [Int]) in
            let pid = try session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
            let values = try (1...3).map { n in try session.query("SELECT \(n) * 10 AS v")[0].decode("v", as: Int.self) }
            #expect(try session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) == pid, "the same connection throughout")
            return (pid, values)
        }
        #expect(values == [10, 20, 30])
        let failed = await #expect(throws: PostgresError.self) {
            try await db.withBlockingConnection { session in try session.query("SELECT 1 / 0 AS v") }
        }
        #expect(failed?.sqlState == "22012")
        // The only connection came back to the pool both times, usable.
        #expect(try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) == pid)
        await db.shutdown()
    }

    @Test("waiters are served in turn when connections are released")
    func waitersServed() async throws {
        let db = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 2, acquireTimeout: .seconds(10))
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<20 {
                group.addTask { try await db.query("SELECT \(i)::int AS v FROM pg_sleep(0.01)")[0].decode("v", as: Int.self) }
            }
            return try await group.reduce(0, +)
        }
        #expect(total == (0..<20).reduce(0, +))
        await db.shutdown()
    }

    @Test("connections killed by the server are replaced transparently")
    func killedConnectionsReplaced() async throws {
        let admin = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 1)
        let db = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 2)
        let pid = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
        // With a timeout, pg_terminate_backend waits (up to 10 s) until the backend has exited.
        let terminated = try await admin.query("SELECT pg_terminate_backend(\(pid)::int, 10000) AS terminated")[0]
            .decode("terminated", as: Bool.self)
        #expect(terminated, "the backend did not exit within 10 s")
        // The idle connection is dead; the pool notices and opens another.
        let newPID = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
        #expect(newPID != pid)
        await db.shutdown()
        await admin.shutdown()
    }

    @Test("a connection handed back with a transaction still open is rolled back before anyone else gets it")
    func openTransactionRolledBack() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int)")
            let pid = try await db.withConnection { session in
                try await session.run(unsafeSQL: "BEGIN")
                try await session.query("INSERT INTO t VALUES (\(1))")
                return try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
            }
            // The same (only) connection, outside that transaction: the insert is gone.
            let (again, rows) = try await db.withConnection { session in
                (try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self),
                 try await session.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self))
            }
            #expect(again == pid)
            #expect(rows == 0)
        }
    }

    @Test("after shutdown the client refuses work with a clear error")
    func shutdownRefuses() async throws {
        let db = TestDatabase.client(url: try TestDatabase.adminURL())
        try await db.query("SELECT 1 AS one")
        await db.shutdown()
        let error = await #expect(throws: PostgresError.self) { try await db.query("SELECT 1 AS one") }
        #expect(error?.kind == .poolClosed)
    }

    @Test("a bad URL fails with connectionFailed and no password in the message")
    func badCredentials() async throws {
        let db = TestDatabase.client(url: "postgresql://nobody:s3cret-pw@127.0.0.1:1/none")
        let error = await #expect(throws: PostgresError.self) { try await db.query("SELECT 1 AS one") }
        #expect(error?.kind == .connectionFailed)
        #expect(error?.description.contains("s3cret-pw") == false)
        await db.shutdown()
    }
}
