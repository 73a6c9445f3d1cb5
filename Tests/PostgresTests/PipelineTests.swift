import Foundation
import Logging
@testable import Postgres
import TestSupport
import Testing

@Suite("Pipelines (several statements in one round trip)")
struct PipelineTests {
    @Test("results come back in order, with their binds, also when a statement returns no rows, and again on later runs")
    func resultsInOrder() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int PRIMARY KEY, name text)")
            try await db.query("INSERT INTO t SELECT n, 'name ' || n FROM generate_series(1, 5) n")
            for round in 1...3 {
                let (pid, rows) = try await db.withBlockingConnection { session -> (Int, [PostgresRows]) in
                    let pid = try session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                    let rows = try session.pipeline([
                        "SELECT name FROM t WHERE id = \(2)",
                        "SELECT id FROM t WHERE id > \(round + 1) ORDER BY id",
                        "SELECT id FROM t WHERE name = \("nobody's")",
                        "SELECT count(*) AS n, \("it's \"quoted\"")::text AS echo FROM t",
                    ])
                    return (pid, rows)
                }
                #expect(rows.count == 4)
                #expect(try rows[0].map { try $0.decode("name", as: String.self) } == ["name 2"])
                #expect(try rows[1].map { try $0.decode("id", as: Int.self) } == Array((round + 2)...5))
                #expect(rows[2].isEmpty)
                #expect(try rows[3][0].decode("n", as: Int.self) == 5)
                #expect(try rows[3][0].decode("echo", as: String.self) == "it's \"quoted\"")
                // The connection is back in normal mode, serving single statements.
                #expect(try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) == pid)
            }
            #expect(try await db.withBlockingConnection { try $0.pipeline([]) }.isEmpty)
        }
    }

    @Test("a failing statement stops the rest, keeps nothing the list wrote, and leaves the connection usable")
    func failureStopsTheRest() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int PRIMARY KEY)")
            try await db.query("INSERT INTO t VALUES (1)")
            let error = await #expect(throws: PostgresError.self) {
                try await db.withBlockingConnection { session in
                    try session.pipeline([
                        "INSERT INTO t VALUES (\(10))",
                        "INSERT INTO t VALUES (\(1))",  // duplicate key
                        "INSERT INTO t VALUES (\(11))",
                    ])
                }
            }
            #expect(error?.sqlState == "23505")
            #expect(error?.description.contains("(1)") == false, "no values in the description")
            // Neither the insert before the failure nor the one after it is kept.
            #expect(try await db.query("SELECT id FROM t ORDER BY id").map { try $0.decode("id", as: Int.self) } == [1])
            // The same (only) connection works normally, also for another pipeline.
            let rows = try await db.withBlockingConnection { session in
                try session.pipeline(["INSERT INTO t VALUES (\(12)) RETURNING id", "SELECT count(*) AS n FROM t"])
            }
            #expect(try rows[0][0].decode("id", as: Int.self) == 12)
            #expect(try rows[1][0].decode("n", as: Int.self) == 2, "each statement sees the ones before it")
        }
    }

    @Test("inside a transaction a pipeline's writes commit or roll back with it")
    func insideATransaction() async throws {
        struct Boom: Error {}
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int PRIMARY KEY)")
            try await db.withBlockingTransaction { session in
                _ = try session.pipeline(["INSERT INTO t VALUES (\(1))", "INSERT INTO t VALUES (\(2))"])
                try session.query("INSERT INTO t VALUES (\(3))")
            }
            await #expect(throws: Boom.self) {
                try await db.withBlockingTransaction { session in
                    _ = try session.pipeline(["INSERT INTO t VALUES (\(4))", "INSERT INTO t VALUES (\(5))"])
                    throw Boom()
                }
            }
            #expect(try await db.query("SELECT id FROM t ORDER BY id").map { try $0.decode("id", as: Int.self) } == [1, 2, 3])
        }
    }

    @Test("new statements that fill the statement cache still all run; more than it can hold are refused clearly")
    func statementCacheOverflow() async throws {
        try await withOneConnection(statementCacheLimit: 3) { db in
            let rows = try await db.withBlockingConnection { session -> [PostgresRows] in
                // Two statements cached; then three new ones (one of them twice): preparing
                // them one by one would overflow the cache half way and forget the first
                // before it is sent.
                _ = try session.pipeline(["SELECT \(1) + 0 AS v", "SELECT \(2) - 0 AS v"])
                return try session.pipeline([100, 200, 300, 100].map { n in PostgresQuery(unsafeSQL: "SELECT \(n) AS v") })
            }
            #expect(try rows.map { try $0[0].decode("v", as: Int.self) } == [100, 200, 300, 100])
            let tooMany = await #expect(throws: PostgresError.self) {
                try await db.withBlockingConnection { session in
                    try session.pipeline((1...4).map { n in PostgresQuery(unsafeSQL: "SELECT \(n) * 7 AS v") })
                }
            }
            #expect(tooMany?.description.contains("statement cache") == true)
            #expect(try await db.query("SELECT 5 AS v")[0].decode("v", as: Int.self) == 5, "the connection still works")
        }
    }
}

extension ColumnLayoutTests {
    @Test("a statement whose result type a schema change altered fails once, then is prepared again with the new columns, on every path")
    func invalidatedStatement() async throws {
        try await withOneConnection(statementCacheLimit: 8) { db in
            let table = try await ColumnLayoutTests.oneRowTable(db)
            let select = PostgresQuery(unsafeSQL: "SELECT * FROM \(table)")
            typealias Path = (name: String, run: @Sendable (PostgresClient, PostgresQuery) async throws -> PostgresRows)
            let paths: [Path] = [
                ("query", { db, query in try await db.query(query) }),
                ("blocking", { db, query in try await db.withBlockingConnection { try $0.query(query) } }),
                ("pipeline", { db, query in try await db.withConnection { try await $0.pipeline([query]) }[0] }),
                ("blocking pipeline", { db, query in try await db.withBlockingConnection { try $0.pipeline([query]) }[0] }),
            ]
            for (round, path) in paths.enumerated() {
                #expect(try await path.run(db, select).columns.count == 2, "\(path.name)")
                try await db.query(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) RENAME COLUMN \(round == 0 ? "b" : "c\(round - 1)") TO c\(round)"))
                let error = await #expect(throws: PostgresError.self, "\(path.name)") { try await path.run(db, select) }
                #expect(error?.sqlState == "0A000")
                let again = try await path.run(db, select)
                #expect(again.columns == ["a", "c\(round)"], "\(path.name)")
                #expect(try again[0].decode("c\(round)", as: String.self) == "one", "\(path.name)")
            }
        }
    }
}

/// A client of one connection with a small statement cache, shut down after `body`.
func withOneConnection(statementCacheLimit: Int, _ body: (PostgresClient) async throws -> Void) async throws {
    let db = PostgresClient(
        configuration: PostgresConfiguration(connectionString: try TestDatabase.adminURL(), maxConnections: 1,
                                             statementCacheLimit: statementCacheLimit),
        logger: Logger(label: "tests.postgres"))
    do {
        try await body(db)
    } catch {
        await db.shutdown()
        throw error
    }
    await db.shutdown()
}

@Suite("Column names kept per prepared statement")
struct ColumnLayoutTests {
    /// A temporary table `(a int, b text)` holding `(1, 'one')`; returns its name.
    static func oneRowTable(_ db: PostgresClient) async throws -> String {
        let table = "t_\(UUID().uuidString.prefix(8).lowercased())"
        try await db.query(PostgresQuery(unsafeSQL: "CREATE TEMP TABLE \(table) (a int, b text)"))
        try await db.query(PostgresQuery(unsafeSQL: "INSERT INTO \(table) VALUES (1, 'one')"))
        return table
    }

    @Test("each result names its own columns: in pipelines, alone, on both paths, and across a full statement cache")
    func layouts() async throws {
        try await withOneConnection(statementCacheLimit: 3) { db in
            let table = try await ColumnLayoutTests.oneRowTable(db)
            let statements: [(PostgresQuery, [String])] = [
                ("SELECT \(1) AS first, \(2) AS second", ["first", "second"]),
                ("SELECT \(3) AS second, \(4) AS first, \(5) AS third", ["second", "first", "third"]),
                ("SELECT \(6) AS only", ["only"]),
                (PostgresQuery(unsafeSQL: "SELECT * FROM \(table)"), ["a", "b"]),
            ]
            // Four statements through a cache of three, several times, in pipelines and alone,
            // on the non-blocking path and the blocking one.
            for round in 0..<3 {
                let order = round.isMultiple(of: 2) ? [0, 1, 2] : [2, 1, 0]
                let piped = try await db.withConnection { try await $0.pipeline(order.map { statements[$0].0 }) }
                #expect(piped.map(\.columns) == order.map { statements[$0].1 }, "round \(round)")
                for (query, columns) in statements {
                    #expect(try await db.query(query).columns == columns, "round \(round)")
                    #expect(try await db.withBlockingConnection { try $0.query(query) }.columns == columns, "round \(round)")
                }
                let blockingPiped = try await db.withBlockingConnection { try $0.pipeline([statements[3].0, statements[0].0]) }
                #expect(blockingPiped.map(\.columns) == [["a", "b"], ["first", "second"]])
            }
            // Columns are found by name in kept layouts too.
            #expect(try await db.query(statements[3].0)[0].decode("b", as: String.self) == "one")
            #expect(try await db.query(statements[1].0)[0].decode("third", as: Int.self) == 5)
        }
    }
}

@Suite("Statements sent without blocking a thread", .timeLimit(.minutes(1)))
struct NonBlockingTests {
    @Test("a pipeline, large results and a large statement go through; a failure keeps nothing; the connection then serves blocking calls")
    func nonBlockingRoundTrips() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int PRIMARY KEY, body text)")
            let pid = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
            // A pipeline on the async session: results in order, binds included.
            let rows = try await db.withConnection { session in
                try await session.pipeline([
                    "INSERT INTO t SELECT n, repeat('x', 100) FROM generate_series(1, \(30_000)) n",
                    "SELECT count(*) AS n FROM t WHERE id > \(29_990)",
                    "SELECT \("it's")::text AS echo",
                ])
            }
            #expect(rows.count == 3)
            #expect(rows[0].affectedRows == 30_000)
            #expect(try rows[1][0].decode("n", as: Int.self) == 10)
            #expect(try rows[2][0].decode("echo", as: String.self) == "it's")
            // A result of several megabytes arrives over many reads.
            let all = try await db.query("SELECT id, body FROM t ORDER BY id")
            #expect(all.count == 30_000)
            #expect(try all[29_999].decode("id", as: Int.self) == 30_000)
            // A statement larger than the socket's buffers is sent over several writes.
            let big = String(repeating: "y", count: 4 << 20)
            let echoed = try await db.query("SELECT length(\(big)::text) AS n")
            #expect(try echoed[0].decode("n", as: Int.self) == big.count)
            // A failing statement in a pipeline stops the rest and keeps nothing.
            let error = await #expect(throws: PostgresError.self) {
                try await db.withConnection { session in
                    try await session.pipeline(["INSERT INTO t VALUES (\(40_000), 'new')", "INSERT INTO t VALUES (\(1), 'dup')"])
                }
            }
            #expect(error?.sqlState == "23505")
            #expect(try await db.query("SELECT count(*) AS n FROM t WHERE id = \(40_000)")[0].decode("n", as: Int.self) == 0)
            // The only connection is still the same one, and serves blocking calls as well.
            let (blockingPID, count) = try await db.withBlockingTransaction { session in
                (try session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self),
                 try session.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self))
            }
            #expect(blockingPID == pid)
            #expect(count == 30_000)
            #expect(try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) == pid)
        }
    }

    @Test("a server error keeps the connection; a statement in flight when the backend is terminated fails as a lost connection, which is replaced")
    func errorsAndLostConnections() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 2) { db, _ in
            try await db.withConnection { session in
                let pid = try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                let error = await #expect(throws: PostgresError.self) { try await session.query("SELECT 1 / \(0) AS x") }
                #expect(error?.sqlState == "22012")
                // A script that fails part-way reports the failure; the session goes on.
                await #expect(throws: PostgresError.self) { try await session.run(unsafeSQL: "SELECT 1; SELECT nonsense; SELECT 2") }
                #expect(try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) == pid)
            }
            // A statement waiting on the server when its backend is terminated.
            let (pids, announce) = AsyncStream<Int>.makeStream()
            let sleeper = Task {
                try await db.withConnection { session in
                    announce.yield(try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self))
                    return try await session.query("SELECT pg_sleep(20)")
                }
            }
            var waiting = pids.makeAsyncIterator()
            let sleeping = try #require(await waiting.next())
            // Terminated only once the server is running its sleep.
            #expect(try await runningStatement(on: sleeping, like: "SELECT pg_sleep(20)%", seenBy: db, within: .seconds(15)),
                    "the sleep was never seen running")
            let terminated = try await db.query("SELECT pg_terminate_backend(\(sleeping)::int, 10000) AS t")[0].decode("t", as: Bool.self)
            #expect(terminated)
            let error = await #expect(throws: PostgresError.self) { try await sleeper.value }
            #expect(error?.kind == .connectionLost || error?.sqlState == "57P01", "\(String(describing: error))")
            // Both connections serve again; the terminated one was replaced.
            let after = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await db.withConnection { session in
                            try await session.query("SELECT pg_sleep(0.2)")
                            return try await session.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                        }
                    }
                }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(after.count == 2)
            #expect(!after.contains(sleeping))
        }
    }

    @Test("COPY is refused with a clear error and its connection replaced, on both paths")
    func copyRefused() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int)")
            var pid = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
            let attempts: [@Sendable (PostgresClient) async throws -> Void] = [
                { try await $0.withConnection { try await $0.run(unsafeSQL: "COPY t TO STDOUT") } },
                { _ = try await $0.query("COPY t FROM STDIN") },
                { _ = try await $0.withBlockingConnection { try $0.query("COPY t TO STDOUT") } },
                { _ = try await $0.withBlockingConnection { try $0.query("COPY t FROM STDIN") } },
            ]
            for attempt in attempts {
                let error = await #expect(throws: PostgresError.self) { try await attempt(db) }
                #expect(error?.description.contains("COPY is not supported") == true)
                #expect(error?.kind != .connectionLost, "not reported as retryable")
                let next = try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                #expect(next != pid)
                pid = next
            }
        }
    }
}

@Suite("Statements whose task is cancelled", .timeLimit(.minutes(1)))
struct CancelledStatementTests {
    /// The connection's server process, to show the same connection is still in use.
    func backend(_ db: PostgresClient) async throws -> Int {
        try await db.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
    }

    @Test("a statement, a transaction and a pipeline still running just after their task is cancelled stop in the database; nothing is kept and the connection serves the next caller")
    func cancelledStatementsStop() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int)")
            let pid = try await backend(db)
            let started = ContinuousClock.now
            let runs: [@Sendable () async throws -> Void] = [
                { _ = try await db.query("SELECT pg_sleep(30)") },
                {
                    _ = try await db.withTransaction { session in
                        try await session.query("INSERT INTO t VALUES (\(1))")
                        try await session.query("SELECT pg_sleep(30)")
                    }
                },
                {
                    _ = try await db.withConnection { session in
                        try await session.pipeline(["INSERT INTO t VALUES (\(2))", "SELECT pg_sleep(30)", "INSERT INTO t VALUES (\(3))"])
                    }
                },
            ]
            // Each is cancelled while its sleep runs in the server (seen from a session of its own).
            let watcher = TestDatabase.client(url: try TestDatabase.adminURL(), maxConnections: 1)
            do {
                for run in runs {
                    let task = Task { try await run() }
                    #expect(try await runningStatement(on: pid, like: "SELECT pg_sleep(30)%", seenBy: watcher, within: .seconds(6)),
                            "the sleep was never seen running")
                    task.cancel()
                    await #expect(throws: CancellationError.self) { try await task.value }
                }
            } catch {
                await watcher.shutdown()
                throw error
            }
            await watcher.shutdown()
            #expect(ContinuousClock.now - started < .seconds(25), "stopped long before one 30 s sleep would have ended")
            #expect(try await db.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self) == 0)
            #expect(try await backend(db) == pid, "the same connection, still usable")
            let running = try await db.query("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
            #expect(try running[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("shielded statements of a cancelled task run to their end, also when they must wait for a connection")
    func shieldedStatementsFinish() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int)")
            // The only connection is busy when the task, already cancelled, asks for one.
            let (taken, took) = AsyncStream.makeStream(of: Void.self)
            let holder = Task {
                defer { took.finish() }
                return try await db.withConnection { session in
                    took.yield()
                    return try await session.query("SELECT pg_sleep(0.4)")
                }
            }
            var holding = taken.makeAsyncIterator()
            _ = await holding.next()
            let task = Task {
                while !Task.isCancelled { await Task.yield() }
                try await StatementCancellation.shielded {
                    // Longer than the grace period after the cancellation.
                    try await db.query("SELECT pg_sleep(0.6)")
                    _ = try await db.withTransaction { session in try await session.query("INSERT INTO t VALUES (\(1))") }
                }
            }
            task.cancel()
            try await task.value
            _ = try await holder.value
            #expect(try await db.query("SELECT id FROM t").map { try $0.decode("id", as: Int.self) } == [1])
        }
    }

    @Test("a shielded transaction of a cancelled task is still tried again after a serialization failure")
    func shieldedTransactionsRetry() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            try await db.query("CREATE TABLE t (id int)")
            let task = Task {
                while !Task.isCancelled { await Task.yield() }
                return try await StatementCancellation.shielded {
                    var attempts = 0
                    try await db.withTransaction { session in
                        attempts += 1
                        if attempts == 1 {
                            try await session.run(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$")
                        }
                        try await session.query("INSERT INTO t VALUES (\(attempts))")
                    }
                    return attempts
                }
            }
            task.cancel()
            #expect(try await task.value == 2)
            #expect(try await db.query("SELECT id FROM t").map { try $0.decode("id", as: Int.self) } == [2])
        }
    }

    @Test("a cancellation that lands as the statement ends never stops the next caller's statement on that connection")
    func lateCancellations() async throws {
        try await TestDatabase.withFreshSchema(maxConnections: 1) { db, _ in
            let pid = try await backend(db)
            var stopped = 0
            for round in 0..<30 {
                // Sleeps of 0.19 to 0.39 s, cancelled at once: the cancel request (after the
                // grace period) lands just before or just after some of them end.
                let victim = Task { try await db.query("SELECT pg_sleep(\(0.19 + Double(round % 5) * 0.05))") }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...20)))
                victim.cancel()
                do { _ = try await victim.value } catch is CancellationError { stopped += 1 }
                // Not cancelled: must always succeed, on the same connection.
                try await db.query("SELECT pg_sleep(0.02)")
                #expect(try await backend(db) == pid)
            }
            #expect(stopped > 0, "some statements were stopped")
        }
    }
}

@Suite("Cancel requests")
struct CancelRequestTests {
    @Test("a request goes only to the statement it was made for: not after that statement ended, not to the next one")
    func requestsFollowGenerations() async throws {
        let connection = try PostgresConnection(conninfo: try TestDatabase.adminURL(), applicationName: "cancel-test", connectTimeout: 5,
                                                statementCacheLimit: 10, id: 1)
        let canceller = try #require(connection.canceller)
        // Cancelled, then ended and followed by another statement before the grace period.
        let first = canceller.begin()
        canceller.cancel(first)
        let ended = canceller.end()
        #expect(!ended.sent && !ended.sending)
        let second = canceller.begin()
        try await Task.sleep(for: .milliseconds(600))
        #expect(canceller.requestsSent == 0)
        // Cancelled and still running after the grace period: sent (to an idle backend,
        // which ignores it), and again while it runs on.
        canceller.cancel(second)
        // Each request opens a connection: seconds on a loaded machine.
        _ = try await waitUntil(within: .seconds(30), every: .milliseconds(50)) { canceller.requestsSent >= 2 }
        let end = canceller.end()
        #expect(end.sent && canceller.requestsSent >= 2)
        connection.close()
    }

    @Test("a statement that ends while its cancel request is still being sent waits for it, so the request cannot stop the next statement")
    func slowRequestIsWaitedFor() async throws {
        let connection = try PostgresConnection(conninfo: try TestDatabase.adminURL(), applicationName: "cancel-test", connectTimeout: 5,
                                                statementCacheLimit: 10, id: 1)
        defer { connection.close() }
        let canceller = try #require(connection.canceller)
        // The statement waits for a lock that another session holds, so it is still running
        // when the request starts (200 ms after the cancellation, or later on a loaded
        // machine). The request takes 400 ms to go out; the lock is released as soon as it
        // has started, so the statement ends before the request arrives.
        let holder = try PostgresConnection(conninfo: try TestDatabase.adminURL(), applicationName: "cancel-test-holder", connectTimeout: 5,
                                            statementCacheLimit: 10, id: 2)
        defer { holder.close() }
        let key = Int.random(in: 1...Int(Int32.max))
        _ = try await holder.executeAsync("SELECT pg_advisory_lock(\(key))")
        canceller.delaySending(by: 0.4)
        let victim = Task { try await connection.executeAsync("SELECT pg_advisory_lock(\(key))") }
        victim.cancel()
        #expect(try await waitUntil(within: .seconds(30), every: .milliseconds(10)) { canceller.requestsSent >= 1 })
        _ = try await holder.executeAsync("SELECT pg_advisory_unlock(\(key))")
        // Usually it ends (taking the lock) before the request arrives; on a loaded machine
        // the request may stop it instead. Either way, no request is left on its way afterwards.
        _ = try? await victim.value
        // Had the connection moved on at once, the request would land in this statement.
        let next = try await connection.executeAsync("SELECT pg_sleep(0.5)")
        #expect(next.count == 1)
    }
}

/// Whether backend `pid` is seen running a statement whose text is `like` (a LIKE pattern)
/// within `limit`, asked through `db` (which must have a connection free).
func runningStatement(on pid: Int, like pattern: String, seenBy db: PostgresClient, within limit: Duration) async throws -> Bool {
    try await waitUntil(within: limit) {
        try await db.query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = \(pid)::int AND state = 'active' AND query LIKE \(pattern)"
        )[0].decode("n", as: Int.self) > 0
    }
}
