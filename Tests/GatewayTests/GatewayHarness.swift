import Foundation
import GatewayService
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceTestSupport
import Testing

/// The gateway as a live HTTP server in front of identity, records and ledger running
/// in-process over the real test database.
struct GatewayHarness {
    let suite: SuiteHarness
    let client: any TestClientProtocol
    let routes: [RouteSpec]

    static func with<T: Sendable>(settings: (inout GatewaySettings) -> Void = { _ in },
                                  _ body: @Sendable (GatewayHarness) async throws -> T) async throws -> T {
        try await SuiteHarness.with { suite in
            var gatewaySettings = GatewaySettings(identity: .init(host: "-", port: 1), records: .init(host: "-", port: 1),
                                                  ledger: .init(host: "-", port: 1), allowedOrigins: ["https://portal.example.org"],
                                                  secureCookies: true, maxBodyBytes: 64 * 1024, authAttemptsPerMinute: 1000,
                                                  // A loaded test machine must not turn slow calls into 504s.
                                                  callBudget: .seconds(30))
            settings(&gatewaySettings)
            var logger = Logger(label: "test.gateway")
            logger.logLevel = .warning
            let api = API(settings: gatewaySettings, identity: suite.identityChannel, records: suite.recordsChannel,
                          ledger: suite.ledgerChannel, logger: logger)
            let (router, routes) = try GatewayServiceApp.makeRouter(api: api, logger: logger)
            let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
            return try await app.test(.live) { client in
                try await body(GatewayHarness(suite: suite, client: client, routes: routes))
            }
        }
    }

    struct Reply: Sendable {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func call(_ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: [String: Any]? = nil,
              headers extra: HTTPFields = [:]) async throws -> Reply {
        var headers = extra
        if let token { headers[.authorization] = "Bearer " + token }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: json))
        }
        return try await client.execute(uri: uri, method: method, headers: headers, body: body) { response in
            Reply(status: response.status, headers: response.headers, body: Data(buffer: response.body))
        }
    }

    /// Registers a person through the gateway and returns (token, id).
    func register(_ email: String, name: String = "Pat Morgan", kind: String = "SERVICE_USER") async throws -> (token: String, id: String) {
        let reply = try await call(.post, "/v1/auth/register", json: [
            "email": email, "password": "plausible kettle harvest lantern", "display_name": name, "kind": kind,
        ])
        #expect(reply.status == .created, "\(reply.text)")
        let account = reply.json["account"] as? [String: Any] ?? [:]
        return (reply.json["access_token"] as? String ?? "", account["id"] as? String ?? "")
    }
}

extension Data {
    init(buffer: ByteBuffer) {
        self = Data(buffer.readableBytesView)
    }
}
