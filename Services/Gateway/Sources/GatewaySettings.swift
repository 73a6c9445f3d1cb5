import Foundation
import ServiceKit

/// The gateway's settings from the environment, validated at start-up.
public struct GatewaySettings: Sendable {
    public struct Upstream: Sendable {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public var identity: Upstream
    public var records: Upstream
    public var ledger: Upstream
    /// Origins allowed to call the API from a browser (CORS). Empty: none.
    public var allowedOrigins: Set<String>
    /// Mark cookies `Secure` (on behind TLS; off only for plain-HTTP local development).
    public var secureCookies: Bool
    /// Largest request body accepted, in bytes.
    public var maxBodyBytes: Int
    /// Sign-in and registration attempts allowed per minute, per client address and per account.
    public var authAttemptsPerMinute: Int
    /// Load balancers and proxies in front of the gateway: from these peers, the client's
    /// address is taken from `X-Forwarded-For`. Empty: the TCP peer is the client.
    public var trustedProxies: [AddressRange]
    /// Time budget of an upstream call made for a request, which becomes its RPC deadline;
    /// exports (FHIR, statements) get three times as much.
    public var callBudget: Duration

    public init(environment: EnvironmentConfiguration) throws {
        func upstream(_ name: String, _ port: Int) throws -> Upstream {
            let text = environment.string("\(name)_ADDRESS", default: "127.0.0.1:\(port)")
            let parts = text.split(separator: ":")
            guard parts.count == 2, let p = Int(parts[1]), (1...65535).contains(p) else {
                throw ConfigurationError(variable: "\(name)_ADDRESS", problem: "must be host:port")
            }
            return Upstream(host: String(parts[0]), port: p)
        }
        identity = try upstream("IDENTITY", ServiceCatalog.identity.defaultPort)
        records = try upstream("RECORDS", ServiceCatalog.records.defaultPort)
        ledger = try upstream("LEDGER", ServiceCatalog.ledger.defaultPort)
        allowedOrigins = Set(environment.string("GATEWAY_ALLOWED_ORIGINS", default: "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        for origin in allowedOrigins where !(origin.hasPrefix("https://") || origin.hasPrefix("http://")) {
            throw ConfigurationError(variable: "GATEWAY_ALLOWED_ORIGINS", problem: "must be origins like https://portal.example.org")
        }
        secureCookies = try environment.bool("GATEWAY_SECURE_COOKIES", default: true)
        maxBodyBytes = try environment.int("GATEWAY_MAX_BODY_BYTES", default: 1 << 20, range: 1024...(64 << 20))
        authAttemptsPerMinute = try environment.int("GATEWAY_AUTH_ATTEMPTS_PER_MINUTE", default: 10, range: 1...10_000)
        trustedProxies = try environment.string("GATEWAY_TRUSTED_PROXIES", default: "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { text in
                guard let range = AddressRange(text) else {
                    throw ConfigurationError(variable: "GATEWAY_TRUSTED_PROXIES", problem: "must be IP addresses or CIDR ranges such as 10.0.0.0/8")
                }
                return range
            }
        callBudget = try environment.duration("GATEWAY_CALL_BUDGET", default: .seconds(5))
        guard callBudget >= .milliseconds(100), callBudget <= .seconds(300) else {
            throw ConfigurationError(variable: "GATEWAY_CALL_BUDGET", problem: "must be between 100ms and 300s")
        }
    }

    public init(identity: Upstream, records: Upstream, ledger: Upstream, allowedOrigins: Set<String> = [], secureCookies: Bool = false,
                maxBodyBytes: Int = 1 << 20, authAttemptsPerMinute: Int = 10, trustedProxies: [AddressRange] = [],
                callBudget: Duration = .seconds(5)) {
        self.identity = identity
        self.records = records
        self.ledger = ledger
        self.allowedOrigins = allowedOrigins
        self.secureCookies = secureCookies
        self.maxBodyBytes = maxBodyBytes
        self.authAttemptsPerMinute = authAttemptsPerMinute
        self.trustedProxies = trustedProxies
        self.callBudget = callBudget
    }
}
