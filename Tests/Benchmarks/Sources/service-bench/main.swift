import Auth
import Contracts
import Foundation
import GatewayService
import IdentityService
import Logging
import Postgres
import RPC
import WholeCareCrypto

/// service-bench — service-level figures (see docs/BENCHMARKS.md).
///
///   service-bench identity     sign-in latency (OWASP scrypt) and token verification cost
///
/// Reads WHOLECARE_ADMIN_DATABASE_URL (the dev cluster's env file) and works in a
/// throwaway schema it drops afterwards.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func withBenchSchema<T: Sendable>(_ body: (PostgresClient, String) async throws -> T) async throws -> T {
    guard let url = ProcessInfo.processInfo.environment["WHOLECARE_ADMIN_DATABASE_URL"] else {
        print("set WHOLECARE_ADMIN_DATABASE_URL (source .data/dev/env)")
        exit(2)
    }
    let schema = "bench_" + UUID().uuidString.prefix(8).lowercased()
    let admin = PostgresClient(configuration: PostgresConfiguration(connectionString: url, maxConnections: 1))
    try await admin.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
    let db = PostgresClient(configuration: PostgresConfiguration(connectionString: url, maxConnections: 8, searchPath: schema))
    do {
        let result = try await body(db, schema)
        await db.shutdown()
        try await admin.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        await admin.shutdown()
        return result
    } catch {
        await db.shutdown()
        _ = try? await admin.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        throw error
    }
}

func identityBench() async throws {
    // Token verification: the first time a token is seen (signature + claims) and after.
    let key = Ed25519.PrivateKey()
    let issuer = TokenIssuer(keyring: try SigningKeyring(keys: [("bench", key)]))
    let tokens = try (0..<5_000).map { _ in
        try issuer.accessToken(subject: UUID().uuidString.lowercased(), kind: .serviceUser, roles: [], organisation: nil, scopes: []).token
    }
    let publicKey = key.publicKey
    let verifier = TokenVerifier { ["bench": publicKey] }
    verifier.install(keys: ["bench": publicKey])
    // Measured off the main actor (top-level code runs there), as a server handler would call it.
    let (firstSight, cached) = try await Task.detached {
        var start = DispatchTime.now().uptimeNanoseconds
        for token in tokens { _ = try await verifier.verify(token) }
        let first = Double(DispatchTime.now().uptimeNanoseconds - start) / Double(tokens.count) / 1000
        start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<20 { for token in tokens { _ = try await verifier.verify(token) } }
        return (first, Double(DispatchTime.now().uptimeNanoseconds - start) / Double(tokens.count * 20) / 1000)
    }.value

    // Sign-in through the identity service (router, auth interceptor, store, scrypt at
    // OWASP costs) against the real database.
    let (sequential, concurrent, hashThreads) = try await withBenchSchema { db, schema in
        try await Migrator(schema: schema, migrations: try IdentityServiceApp.migrations()).migrate(using: db)
        let hashing = PasswordHashingPool(hasher: PasswordHasher(parameters: .owasp), threads: PasswordHashingPool.defaultThreads)
        let service = IdentityRPCService(store: IdentityStore(db: db), hashing: hashing, passwordPolicy: try PasswordPolicy.bundled(),
                                         issuer: issuer)
        let api = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: InProcessChannel(
            router: IdentityServiceApp.router(service: service, keyring: issuer.keyring))))
        var register = Wholecare_Identity_V1_RegisterRequest()
        register.email = "bench@example.org"
        register.password = "a long enough benchmark phrase"
        register.displayName = "Bench"
        _ = try await api.register(register)
        var signIn = Wholecare_Identity_V1_SignInRequest()
        signIn.email = register.email
        signIn.password = register.password
        let request = signIn
        var latencies: [Double] = []
        for _ in 0..<20 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try await api.signIn(request)
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        // 8 at once: bounded hashing concurrency queues them instead of starving the CPU.
        let t0 = DispatchTime.now().uptimeNanoseconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { _ = try await api.signIn(request) } }
            try await group.waitForAll()
        }
        let burst = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        await hashing.shutdown()
        return (latencies, burst, PasswordHashingPool.defaultThreads)
    }
    print("| measure | value |")
    print("|---|---:|")
    print("| sign-in latency p50 (OWASP scrypt N=2^17, r=8, p=1), sequential | \(String(format: "%.0f", percentile(sequential, 0.5))) ms |")
    print("| sign-in latency p99 (20 sign-ins) | \(String(format: "%.0f", percentile(sequential, 0.99))) ms |")
    print("| 8 concurrent sign-ins, wall time (\(hashThreads) hashing thread(s)) | \(String(format: "%.0f", concurrent)) ms |")
    print("| token verification, first sight of a token (Ed25519 + claims) | \(String(format: "%.1f", firstSight)) µs |")
    print("| token verification, token seen before (cache hit) | \(String(format: "%.2f", cached)) µs |")
}

switch CommandLine.arguments.dropFirst().first {
case "identity": try await identityBench()
case "ledger": try await ledgerBench(seconds: 10)
case "records": try await recordsBench()
case "gateway":
    // As the gateway executable runs (BENCH_NIO_EXECUTOR=0: on Swift's own thread pool). The
    // services share this process, so their tasks run on NIO's loops too; records' and
    // identity's handlers run on their own connections' loops either way. (Only here: the
    // other benchmarks wait for pgbench on Swift's pool.)
    if ProcessInfo.processInfo.environment["BENCH_NIO_EXECUTOR"] != "0" { GatewayServiceApp.runTasksOnEventLoops() }
    try await gatewayBench(seconds: 10)
case "pgclient": try await pgClientBench(seconds: 5)
case "encoding": try await encodingBench()
case "tokens":
    let key = Ed25519.PrivateKey()
    let issuer = TokenIssuer(keyring: try SigningKeyring(keys: [("bench", key)]))
    let tokens = try (0..<20_000).map { _ in
        try issuer.accessToken(subject: UUID().uuidString.lowercased(), kind: .serviceUser, roles: [], organisation: nil, scopes: []).token
    }
    let verifier = TokenVerifier { [:] }
    verifier.install(keys: ["bench": key.publicKey])
    let perCall = try await Task.detached {
        let start = DispatchTime.now().uptimeNanoseconds
        for token in tokens { _ = try await verifier.verify(token) }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / Double(tokens.count) / 1000
    }.value
    print(perCall, "µs per first-sight verification")
default:
    print("usage: service-bench identity|ledger|records|gateway|pgclient|encoding|tokens")
    exit(2)
}
