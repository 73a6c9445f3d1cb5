import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Transactions and retries")
struct TransactionTests {
    @Test("a failing body rolls back everything it wrote")
    func rollbackOnError() async throws {
        struct Boom: Error {}
        try await TestDatabase.withFreshSchema { db, _ in
            try await db.query("CREATE TABLE t (v int)")
            await #expect(throws: Boom.self) {
                try await db.withTransaction { session in
                    try await session.query("INSERT INTO t VALUES (1)")
                    throw Boom()
                }
            }
            #expect(try await db.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("serialization failures are retried until the transaction commits")
    func serializationFailuresRetried() async throws {
        // Enough attempts that eight colliding writers all get through even on a loaded
        // machine; the bound itself is tested below.
        try await TestDatabase.withFreshSchema(maxConnections: 8, transactionAttempts: 40) { db, _ in
            try await db.query("CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL)")
            try await db.query("INSERT INTO counter VALUES (1, 0)")
            let attempts = AttemptCounter()
            let firstReads = AttemptCounter()
            // Eight concurrent read-modify-write transactions at SERIALIZABLE. Each one's
            // first attempt waits after its read until all eight have read (or 10 s pass,
            // on a machine slow to open connections), so they collide for certain, and
            // every collision must be retried, so no increment is lost.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let mine = AttemptCounter()
                        try await db.withTransaction(isolation: .serializable) { session in
                            attempts.increment()
                            mine.increment()
                            let value = try await session.query("SELECT value FROM counter WHERE id = 1")[0].decode("value", as: Int.self)
                            if mine.value == 1 {
                                firstReads.increment()
                                let giveUp = ContinuousClock.now + .seconds(10)
                                while firstReads.value < 8 && ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(5)) }
                            }
                            try await Task.sleep(for: .milliseconds(20))
                            try await session.query("UPDATE counter SET value = \(value + 1) WHERE id = 1")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await db.query("SELECT value FROM counter WHERE id = 1")[0].decode("value", as: Int.self) == 8)
            #expect(attempts.value > 8, "the conflicts should have forced at least one retry")
        }
    }

    @Test("a bounded retry gives up with a clear error")
    func retriesGiveUp() async throws {
        try await TestDatabase.withFreshSchema(transactionAttempts: 3) { db, _ in
            let attempts = AttemptCounter()
            let error = await #expect(throws: PostgresError.self) {
                try await db.withTransaction { session in
                    attempts.increment()
                    // Raise a genuine serialization_failure every time.
                    try await session.run(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
                }
            }
            #expect(attempts.value == 3)
            #expect(error?.kind == .retriesExhausted)
            #expect(error?.description.contains("3 attempts") == true)
        }
    }
}

final class AttemptCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
