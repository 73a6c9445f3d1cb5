import Contracts
import Foundation
import Logging
import RPC
import RPCTransport
import TestSupport
import Testing

@Suite("Calls over TCP")
struct CallTests {
    @Test("echo round-trips text and bytes; Health reports serving and lists methods")
    func echoAndHealth() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client()
        var request = echoRequest("héllo wörld")
        request.data = Data((0..<255).map { UInt8($0) })
        let response = try await client.echo(request)
        #expect(response.text == "héllo wörld")
        #expect(response.data == request.data)

        let health = Wholecare_Health_V1_Health.Client(client.client)
        let check = try await health.check(Wholecare_Health_V1_CheckRequest())
        #expect(check.status == .serving)
        #expect(check.server == "test")
        var unknown = Wholecare_Health_V1_CheckRequest()
        unknown.service = "wholecare.nothing.v1.Nothing"
        #expect(try await health.check(unknown).status == .serviceUnknown)
        let methods = try await health.listMethods(Wholecare_Health_V1_ListMethodsRequest()).methods
        #expect(methods.contains("wholecare.diagnostics.v1.Echo/Echo"))
        #expect(methods.contains("wholecare.health.v1.Health/Check"))
        #expect(methods.contains("wholecare.health.v1.Health/ListMethods"))
        await transport.close()
        await test.server.shutdown()
    }

    @Test("a handler's status code and message reach the client unchanged", arguments: RPCError.Code.all.dropFirst())
    func statusCodesRoundTrip(code: RPCError.Code) async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client(retryPolicy: .none)
        var request = Wholecare_Diagnostics_V1_FailRequest()
        request.status = UInt32(code.rawValue)
        request.message = "because \(code.name)"
        let error = await #expect(throws: RPCError.self) { try await client.fail(request) }
        #expect(error?.code == code)
        #expect(error?.message == "because \(code.name)")
        await transport.close()
        await test.server.shutdown()
    }

    /// Refuses every Echo call as an authentication step would, saying which token.
    struct RefusingInterceptor: ServerInterceptor {
        func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
            guard request.method.hasSuffix("/Echo") else { return try await next(request, context) }
            throw RPCError(code: .unauthenticated, message: "the token is invalid or expired",
                           metadata: [MetadataKey.refusedToken: MetadataKey.authorization, MetadataKey.field: "token"])
        }
    }

    @Test("an error's metadata (which token was refused, the field at fault) reaches the client over the wire")
    func errorMetadataRoundTrip() async throws {
        let test = try await TestServer.start(interceptors: [RefusingInterceptor()])
        let (client, transport) = test.client(retryPolicy: .none)
        let error = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("hello")) }
        #expect(error?.code == .unauthenticated)
        #expect(error?.metadata[MetadataKey.refusedToken] == MetadataKey.authorization)
        #expect(error?.metadata[MetadataKey.field] == "token")
        await transport.close()
        await test.server.shutdown()
    }

    @Test("10,000 concurrent calls on one connection all complete")
    func tenThousandConcurrent() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client(connections: 1)
        let count = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<10_000 {
                group.addTask { try await client.echo(echoRequest("call \(i)")).text == "call \(i)" }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(count == 10_000)
        await transport.close()
        await test.server.shutdown()
    }

    @Test("a pool of connections uses every one of them, not only the first that came up")
    func poolSpreadsCalls() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client(connections: 3)
        // Calls one at a time: each finds the first connection up and the others not yet.
        for i in 0..<60 { _ = try await client.echo(echoRequest("call \(i)")) }
        // Connecting can take seconds while the suite loads the machine: poll to a deadline.
        try await eventually {
            _ = try await client.echo(echoRequest("again"))
            return test.server.openConnections == 3
        }
        await transport.close()
        await test.server.shutdown()
    }

    @Test("with a small per-connection limit, excess calls wait (backpressure) and all complete")
    func backpressure() async throws {
        let test = try await TestServer.start { $0.maxConcurrentCallsPerConnection = 4 }
        let (client, transport) = test.client(connections: 1)
        var request = Wholecare_Diagnostics_V1_SleepRequest()
        request.milliseconds = 21  // a duration no other test uses, so the peak below is this test's
        let sleep = request
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<40 { group.addTask { _ = try await client.sleep(sleep) } }
            try await group.waitForAll()
        }
        // Never more than 4 at once on the server, however many one read brought in, so
        // 40 calls of 21 ms cannot finish in under 10 rounds.
        #expect((1...4).contains(EchoService.running.peak(21)), "peak \(EchoService.running.peak(21))")
        #expect(ContinuousClock.now - started >= .milliseconds(200))
        await transport.close()
        await test.server.shutdown()
    }

    @Test("a deadline that passes cancels the server-side work and the client gets DEADLINE_EXCEEDED")
    func deadlineCancelsServerWork() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client()
        _ = try await client.echo(echoRequest("connect first"))  // the deadline covers the call, not the hello
        var sleep = Wholecare_Diagnostics_V1_SleepRequest()
        sleep.milliseconds = 60_011  // a duration no other test uses: we look for this call's cancellation
        let started = ContinuousClock.now
        let error = await #expect(throws: RPCError.self) {
            // 10 s, so that even a machine too busy to start the call for seconds starts it
            // before its deadline (a call already late is refused without running).
            _ = try await client.sleep(sleep, options: CallOptions(timeout: .seconds(10)))
        }
        #expect(error?.code == .deadlineExceeded)
        // The caller was not kept waiting for the server's minute-long sleep.
        #expect(ContinuousClock.now - started < .seconds(30))
        try await eventually { EchoService.cancelledDurations.contains(60_011) }
        await transport.close()
        await test.server.shutdown()
    }

    /// Cancels the current task, then makes the call.
    static func sleepCancelledFirst(_ client: Wholecare_Diagnostics_V1_Echo.Client,
                                    _ sleep: Wholecare_Diagnostics_V1_SleepRequest) async throws -> Wholecare_Diagnostics_V1_SleepResponse {
        withUnsafeCurrentTask { task in task?.cancel() }
        return try await client.sleep(sleep)
    }

    @Test("a task cancelled before its call is made gets CANCELLED at once, and the server never runs the call")
    func cancelledBeforeCall() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client()
        _ = try await client.echo(echoRequest("warm"))  // connected, so only the cancellation can stop the call
        var sleep = Wholecare_Diagnostics_V1_SleepRequest()
        sleep.milliseconds = 10_009  // a duration no other test uses
        let call = Task { try await Self.sleepCancelledFirst(client, sleep) }
        let error = await #expect(throws: RPCError.self) { try await call.value }
        #expect(error?.code == .cancelled)
        // A later call on the same connection goes through, and the cancelled one never started.
        #expect(try await client.echo(echoRequest("after")).text == "after")
        #expect(!EchoService.startedDurations.contains(10_009))
        await transport.close()
        await test.server.shutdown()
    }

    @Test("cancelling the client's task reaches the server")
    func clientCancelReachesServer() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client()
        var sleep = Wholecare_Diagnostics_V1_SleepRequest()
        sleep.milliseconds = 10_007  // a duration no other test uses
        let call = Task { try await client.sleep(sleep) }
        try await eventually { EchoService.startedDurations.contains(10_007) }  // the server is running it
        call.cancel()
        let result = await call.result
        guard case .failure(let error as RPCError) = result else {
            Issue.record("expected a cancelled call, got \(result)")
            return
        }
        #expect(error.code == .cancelled)
        try await eventually { EchoService.cancelledDurations.contains(10_007) }
        await transport.close()
        await test.server.shutdown()
    }

    @Test("graceful shutdown lets in-flight calls finish, then refuses new ones")
    func gracefulDrain() async throws {
        let test = try await TestServer.start()
        let (client, transport) = test.client(retryPolicy: .none)
        _ = try await client.echo(echoRequest("connect first"))
        var sleep = Wholecare_Diagnostics_V1_SleepRequest()
        sleep.milliseconds = 517  // a duration no other test uses, so we wait for this very call
        let inFlight = Task { try await client.sleep(sleep) }
        try await eventually { EchoService.startedDurations.contains(517) }  // the server is running it
        await test.server.shutdown()
        // The call that was running completed normally.
        let response = try await inFlight.value
        #expect(response.cancelled == false)
        // Nothing listens any more: new calls fail fast with UNAVAILABLE.
        let error = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("late")) }
        #expect(error?.code == .unavailable)
        await transport.close()
    }

    @Test("the client reconnects after the server restarts on the same port")
    func reconnectAfterRestart() async throws {
        let first = try await TestServer.start()
        let port = first.port
        let (client, transport) = first.client(retryPolicy: .none) {
            $0.initialBackoff = .milliseconds(10)
            $0.maxBackoff = .milliseconds(50)
        }
        #expect(try await client.echo(echoRequest("one")).text == "one")
        await first.server.shutdown()
        let down = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("down")) }
        #expect(down?.code == .unavailable)
        let second = try await TestServer.start { $0.port = port }
        try await eventually(timeout: .seconds(20)) {
            (try? await client.echo(echoRequest("two")).text) == "two"
        }
        await transport.close()
        await second.server.shutdown()
    }

    @Test("UNAVAILABLE is retried for idempotent methods only")
    func retriesOnlyIdempotent() async throws {
        let attempts = AttemptLog()
        let channel = FlakyChannel(failures: 2, attempts: attempts)
        let client = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(
            channel: channel, retryPolicy: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(1))))
        // Echo is idempotent: two UNAVAILABLE failures, then success on the third attempt.
        #expect(try await client.echo(echoRequest("x")).text == "x")
        #expect(attempts.count == 3)
        // Fail is not idempotent: one attempt only.
        attempts.reset()
        channel.reset(failures: 2)
        let error = await #expect(throws: RPCError.self) { try await client.fail(Wholecare_Diagnostics_V1_FailRequest()) }
        #expect(error?.code == .unavailable)
        #expect(attempts.count == 1)
    }

    @Test("the retry budget stops retries when failures persist")
    func retryBudget() async throws {
        let attempts = AttemptLog()
        let channel = FlakyChannel(failures: .max, attempts: attempts)
        let client = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(
            channel: channel, retryPolicy: RetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(1), maxTokens: 10)))
        for _ in 0..<20 {
            _ = try? await client.echo(echoRequest("x"))
        }
        // Without a budget 20 calls × 5 attempts = 100. The budget allows only a few
        // retries in total once the bucket drains below half.
        #expect(attempts.count < 30, "attempts: \(attempts.count)")
        #expect(attempts.count >= 20)
    }

    @Test("a service forwards its remaining time to the calls it makes")
    func deadlinePropagates() async throws {
        // Server B sleeps; server A calls B with no timeout of its own.
        let b = try await TestServer.start()
        let (bClient, bTransport) = b.client()
        struct Forwarder: Wholecare_Diagnostics_V1_Echo.ServiceProtocol {
            let downstream: Wholecare_Diagnostics_V1_Echo.Client
            func echo(request: Wholecare_Diagnostics_V1_EchoRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_EchoResponse {
                var sleep = Wholecare_Diagnostics_V1_SleepRequest()
                sleep.milliseconds = 60_013  // a duration no other test uses
                _ = try await downstream.sleep(sleep)  // inherits the caller's deadline
                return Wholecare_Diagnostics_V1_EchoResponse()
            }
            func sleep(request: Wholecare_Diagnostics_V1_SleepRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_SleepResponse { .init() }
            func fail(request: Wholecare_Diagnostics_V1_FailRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_FailResponse { .init() }
        }
        var router = RPCRouter()
        router.register(Forwarder(downstream: bClient))
        let a = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: InProcessChannel(router: router)))
        _ = try await bClient.echo(echoRequest("connect first"))  // the deadline covers the calls, not B's hello
        let started = ContinuousClock.now
        let error = await #expect(throws: RPCError.self) {
            _ = try await a.echo(echoRequest("x"), options: CallOptions(timeout: .seconds(10)))  // see deadlineCancelsServerWork
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(ContinuousClock.now - started < .seconds(30))  // not the downstream minute
        // B's sleep was cancelled too, because the deadline travelled with the call.
        try await eventually { EchoService.cancelledDurations.contains(60_013) }
        await bTransport.close()
        await b.server.shutdown()
    }
}

/// Polls until a condition holds (or fails the test after the timeout).
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
    if try await !waitUntil(within: timeout, until: condition) { Issue.record("condition not met within \(timeout)") }
}

final class AttemptLog: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func record() { lock.withLock { value += 1 } }
    func reset() { lock.withLock { value = 0 } }
    var count: Int { lock.withLock { value } }
}

/// Fails the first N calls with UNAVAILABLE, then serves Echo in-process.
final class FlakyChannel: RPCChannel, @unchecked Sendable {
    private let lock = NSLock()
    private var remainingFailures: Int
    let attempts: AttemptLog
    let inner: InProcessChannel

    init(failures: Int, attempts: AttemptLog) {
        remainingFailures = failures
        self.attempts = attempts
        var router = RPCRouter()
        router.register(EchoService())
        inner = InProcessChannel(router: router)
    }

    func reset(failures: Int) { lock.withLock { remainingFailures = failures } }

    func unary(_ request: ClientRequest) async throws -> RawResponse {
        attempts.record()
        let fail = lock.withLock { () -> Bool in
            guard remainingFailures > 0 else { return false }
            remainingFailures -= 1
            return true
        }
        if fail { throw RPCError(code: .unavailable, message: "flaky") }
        return try await inner.unary(request)
    }
}
