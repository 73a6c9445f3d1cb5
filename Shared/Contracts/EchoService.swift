import Foundation
import RPC

/// `wholecare.diagnostics.v1.Echo`, for interoperability tests and benchmarks only.
public struct EchoService: Wholecare_Diagnostics_V1_Echo.ServiceProtocol {
    public init() {}

    public func echo(request: Wholecare_Diagnostics_V1_EchoRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_EchoResponse {
        var response = Wholecare_Diagnostics_V1_EchoResponse()
        response.text = request.text
        response.data = request.data
        return response
    }

    public func sleep(request: Wholecare_Diagnostics_V1_SleepRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_SleepResponse {
        var response = Wholecare_Diagnostics_V1_SleepResponse()
        EchoService.sleepsStarted.increment()
        EchoService.startedDurations.insert(request.milliseconds)
        EchoService.running.enter(request.milliseconds)
        defer { EchoService.running.leave(request.milliseconds) }
        do {
            try await Task.sleep(for: .milliseconds(Int(request.milliseconds)))
        } catch {
            EchoService.cancellations.increment()
            EchoService.cancelledDurations.insert(request.milliseconds)
            response.cancelled = true
            throw error
        }
        return response
    }

    public func fail(request: Wholecare_Diagnostics_V1_FailRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_FailResponse {
        throw RPCError(code: RPCError.Code(rawValue: Int(request.status)), message: request.message)
    }

    /// How many Sleep calls were interrupted by cancellation (for tests that check a
    /// client's cancel or a deadline reached the server).
    public static let cancellations = Counter()
    /// How many Sleep calls have started (so tests can wait until one is in flight).
    public static let sleepsStarted = Counter()

    /// The durations of Sleep calls that have started, so a test can wait for its own call
    /// (by asking for a duration no other test uses) while other tests run in parallel.
    public static let startedDurations = DurationSet()
    /// The durations of Sleep calls that were cancelled (by a cancel frame or a deadline).
    public static let cancelledDurations = DurationSet()

    /// How many Sleep calls of each duration run at once, and the most there have been.
    public static let running = RunningByDuration()

    public final class RunningByDuration: @unchecked Sendable {
        private let lock = NSLock()
        private var now: [UInt32: Int] = [:]
        private var most: [UInt32: Int] = [:]
        public func enter(_ value: UInt32) {
            lock.withLock {
                now[value, default: 0] += 1
                most[value] = max(most[value] ?? 0, now[value]!)
            }
        }
        public func leave(_ value: UInt32) { lock.withLock { now[value, default: 0] -= 1 } }
        public func peak(_ value: UInt32) -> Int { lock.withLock { most[value] ?? 0 } }
    }

    public final class DurationSet: @unchecked Sendable {
        private let lock = NSLock()
        private var values: Set<UInt32> = []
        public func insert(_ value: UInt32) { _ = lock.withLock { values.insert(value) } }
        public func contains(_ value: UInt32) -> Bool { lock.withLock { values.contains(value) } }
    }

    public final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        public func increment() { lock.withLock { value += 1 } }
        public var count: Int { lock.withLock { value } }
    }
}
