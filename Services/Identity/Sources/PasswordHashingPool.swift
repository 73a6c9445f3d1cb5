import Foundation
import NIOPosix
import RPC
import Synchronization
import WholeCareCrypto

/// Runs scrypt on a small dedicated pool (by default one thread fewer than the machine
/// has cores, at least one), so a flood of sign-ins queues here instead of starving the
/// event loops and the database threads. Beyond `maxQueued` waiting hashes, callers get
/// RESOURCE_EXHAUSTED at once.
public final class PasswordHashingPool: Sendable {
    public let hasher: PasswordHasher
    private let pool: NIOThreadPool
    private let queued = Atomic<Int>(0)
    private let maxQueued: Int

    public init(hasher: PasswordHasher, threads: Int, maxQueued: Int = 256) {
        self.hasher = hasher
        self.pool = NIOThreadPool(numberOfThreads: max(1, threads))
        self.pool.start()
        self.maxQueued = maxQueued
    }

    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount - 1) }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard queued.wrappingAdd(1, ordering: .relaxed).newValue <= maxQueued else {
            queued.wrappingSubtract(1, ordering: .relaxed)
            throw RPCError(code: .resourceExhausted, message: "too many sign-ins at once; try again shortly", metadata: ["retry-after": "1"])
        }
        defer { queued.wrappingSubtract(1, ordering: .relaxed) }
        return try await pool.runIfActive(body)
    }

    public func hash(_ password: String) async throws -> String {
        let hasher = hasher
        return try await run { try hasher.hash(password) }
    }

    public func verify(_ password: String, against stored: String) async throws -> Bool {
        let hasher = hasher
        return try await run { hasher.verify(password, against: stored) }
    }

    /// The same work as a verification, for unknown accounts.
    public func burn(_ password: String) async throws {
        let hasher = hasher
        try await run { hasher.burnEquivalentWork(password) }
    }

    public func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
