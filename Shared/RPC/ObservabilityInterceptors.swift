import Logging
import Metrics
import Synchronization

/// Logs one line per call: method, status and duration. Never logs payloads or
/// metadata values (they may hold tokens or personal data).
public struct LoggingServerInterceptor: ServerInterceptor {
    public init() {}

    public func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            context.logger.debug("rpc", metadata: ["status": "OK", "ms": "\(Self.millis(since: started))"])
            return response
        } catch {
            let status = RPCRouter.status(for: error, context: context)
            let level: Logger.Level = status.code == .internal || status.code == .unknown || status.code == .dataLoss ? .error : .info
            context.logger.log(level: level, "rpc", metadata: ["status": "\(status.code)", "ms": "\(Self.millis(since: started))"])
            throw status
        }
    }

    static func millis(since start: ContinuousClock.Instant) -> String {
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return String(Int(ms.rounded()))
    }
}

/// Counts calls by method and status (`rpc_server_requests_total`) and records their
/// duration (`rpc_server_duration_seconds`), for the admin `/metrics` endpoint.
public final class MetricsServerInterceptor: ServerInterceptor {
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    public init() {}

    public func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
        let started = ContinuousClock.now
        var code = RPCError.Code.ok
        defer {
            let elapsed = ContinuousClock.now - started
            counter(method: request.method, status: code.name).increment()
            timer(method: request.method).recordNanoseconds(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        do {
            return try await next(request, context)
        } catch {
            let status = RPCRouter.status(for: error, context: context)
            code = status.code
            throw status
        }
    }

    private func counter(method: String, status: String) -> Counter {
        let key = method + "|" + status
        return counters.withLock { cache in
            if let existing = cache[key] { return existing }
            let created = Counter(label: "rpc_server_requests_total", dimensions: [("method", method), ("status", status)])
            cache[key] = created
            return created
        }
    }

    private func timer(method: String) -> Metrics.Timer {
        timers.withLock { cache in
            if let existing = cache[method] { return existing }
            let created = Metrics.Timer(label: "rpc_server_duration_seconds", dimensions: [("method", method)], preferredDisplayUnit: .seconds)
            cache[method] = created
            return created
        }
    }
}
