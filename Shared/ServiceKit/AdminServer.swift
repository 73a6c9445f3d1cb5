import Foundation
import Hummingbird
import Logging
import Prometheus

/// Readiness: a named check that passes or fails. Failing checks name themselves in the
/// `/readyz` body, never with error details.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable () async -> Bool

    public init(name: String, check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }
}

/// The per-service admin HTTP listener (RPC port + 1000 by convention):
/// `/healthz` (the process is up), `/readyz` (its dependencies answer) and `/metrics`
/// (Prometheus text format from swift-metrics).
public enum AdminServer {
    public static func make(
        service: String, host: String, port: Int, checks: [ReadinessCheck],
        registry: PrometheusCollectorRegistry, logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\",\"service\":\"\(service)\"}\n")))
        }
        router.get("/readyz") { _, _ in
            var failed: [String] = []
            for check in checks where !(await check.check()) { failed.append(check.name) }
            let body = failed.isEmpty
                ? "{\"status\":\"ready\",\"service\":\"\(service)\"}\n"
                : "{\"status\":\"not ready\",\"service\":\"\(service)\",\"failing\":[\(failed.map { "\"\($0)\"" }.joined(separator: ","))]}\n"
            return Response(status: failed.isEmpty ? .ok : .serviceUnavailable,
                            headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        var adminLogger = logger
        adminLogger[metadataKey: "component"] = "admin-http"
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "wholecare-\(service)-admin"),
            logger: adminLogger)
    }
}
