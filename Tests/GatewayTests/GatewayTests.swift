import Contracts
import Foundation
import GatewayService
import HTTPTypes
import Hummingbird
import RPC
import ServiceTestSupport
import Testing

@Suite("Gateway")
struct GatewayTests {
    @Test("every route is in the OpenAPI document with its operation id, and every documented operation has a route")
    func openAPIMatchesRoutes() async throws {
        try await GatewayHarness.with { h in
            let document = try JSONSerialization.jsonObject(with: try GatewayServiceApp.openAPIDocument()) as! [String: Any]
            let paths = document["paths"] as! [String: [String: Any]]
            var documented: Set<String> = []
            for (path, operations) in paths {
                for (method, operation) in operations {
                    documented.insert("\(method.uppercased()) \(path) \((operation as! [String: Any])["operationId"] as! String)")
                }
            }
            let served = Set(h.routes.map { "\($0.method) \($0.openAPIPath) \($0.operationID)" })
            #expect(served.subtracting(documented).isEmpty, "undocumented routes: \(served.subtracting(documented).sorted())")
            #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
            let reply = try await h.call(.get, "/openapi.json")
            #expect(reply.status == .ok)
            #expect(reply.json["openapi"] as? String == "3.1.0")
        }
    }

    @Test("register, sign in, who am I, refresh and sign out over HTTP; problems are RFC 9457 with a request id")
    func authRoundTrip() async throws {
        try await GatewayHarness.with { h in
            let (token, _) = try await h.register("pat@example.org")
            let me = try await h.call(.get, "/v1/me", token: token)
            #expect(me.status == .ok)
            #expect(me.json["display_name"] as? String == "Pat Morgan")
            #expect(me.json["email"] as? String == "pat@example.org")
            #expect(me.headers[HTTPField.Name("X-Request-Id")!] != nil)
            let signIn = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "pat@example.org", "password": "plausible kettle harvest lantern"])
            #expect(signIn.status == .ok)
            let refresh = signIn.json["refresh_token"] as! String
            let refreshed = try await h.call(.post, "/v1/auth/refresh", json: ["refresh_token": refresh])
            #expect(refreshed.status == .ok)
            let signOut = try await h.call(.post, "/v1/auth/sign-out", token: refreshed.json["access_token"] as? String,
                                           json: ["refresh_token": refreshed.json["refresh_token"] as! String])
            #expect(signOut.status == .noContent)
            let wrong = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "pat@example.org", "password": "not the right one"],
                                         headers: [HTTPField.Name("X-Request-Id")!: "trace-123"])
            #expect(wrong.status == .unauthorized)
            #expect(wrong.headers[.contentType] == "application/problem+json")
            #expect(wrong.json["type"] as? String == "https://wholecare.dev/problems/unauthenticated")
            #expect(wrong.json["status"] as? Int == 401)
            #expect(wrong.json["request_id"] as? String == "trace-123")
            let anonymous = try await h.call(.get, "/v1/me")
            #expect(anonymous.status == .unauthorized)
            let invalid = try await h.call(.post, "/v1/auth/register", json: ["email": "x@example.org", "password": "short", "display_name": "X"])
            #expect(invalid.status == .badRequest)
            #expect(invalid.json["field"] as? String == "password")
            let unknownField = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "a@b.co", "password": "x", "admin": true])
            #expect(unknownField.status == .badRequest)
            #expect(unknownField.json["field"] as? String == "admin")
        }
    }

    @Test("a person adds to and reads their record; the FHIR export is application/fhir+json; professionals are logged")
    func record() async throws {
        try await GatewayHarness.with { h in
            let (token, id) = try await h.register("pat@example.org")
            let added = try await h.call(.post, "/v1/me/record/entries", token: token, json: [
                "kind": "OBSERVATION", "effective_start": "2026-11-20", "text": "Morning weight",
                "observation": ["value": ["value": 72.5, "unit": "kg"]],
            ])
            #expect(added.status == .created, "\(added.text)")
            #expect((added.json["source"] as? [String: Any])?["display"] as? String == "Added by you")
            let list = try await h.call(.get, "/v1/me/record/entries?kind=observation&page_size=10", token: token)
            #expect(list.status == .ok)
            #expect((list.json["entries"] as? [[String: Any]])?.count == 1)
            let summary = try await h.call(.get, "/v1/me/record", token: token)
            #expect(summary.status == .ok)
            #expect(summary.json["person_id"] as? String == id)
            let fhir = try await h.call(.get, "/v1/me/record/fhir", token: token)
            #expect(fhir.status == .ok)
            #expect(fhir.headers[.contentType] == "application/fhir+json")
            #expect(fhir.json["resourceType"] as? String == "Bundle")
            let bad = try await h.call(.post, "/v1/me/record/entries", token: token, json: ["kind": "NOTE", "effective_start": "2099-01-01", "text": "x"])
            #expect(bad.status == .badRequest)
            #expect(bad.json["field"] as? String == "entry.effective_start")
            let someoneElse = try await h.register("eve@example.org", name: "Eve")
            let forbidden = try await h.call(.get, "/v1/people/\(id)/record", token: someoneElse.token)
            #expect(forbidden.status == .forbidden)
            let log = try await h.call(.get, "/v1/me/record/access-log", token: token)
            #expect((log.json["entries"] as? [[String: Any]])?.first?["allowed"] == nil)  // false is omitted in proto JSON
            #expect((log.json["entries"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test("budgets: a coordinator opens and funds a budget with an Idempotency-Key; the person reads it and its CSV statement")
    func budgets() async throws {
        try await GatewayHarness.with { h in
            let admin = try await h.suite.identity.admin()
            let council = try await h.suite.identity.organisation("Northshire Council", admin: admin)
            let coordinator = try await h.suite.identity.professional("cc@northshire.test", org: council, roles: ["care_coordinator"], admin: admin)
            let (token, id) = try await h.register("pat@example.org")
            let assigned = try await h.call(.post, "/v1/admin/care-relationships", token: admin,
                                            json: ["person_id": id, "professional_id": coordinator.id, "role": "CARE_COORDINATOR"])
            #expect(assigned.status == .created, "\(assigned.text)")
            let created = try await h.call(.post, "/v1/people/\(id)/budgets", token: coordinator.token,
                                           json: ["funder_organisation_id": council, "name": "Personal budget 2026/27"])
            #expect(created.status == .created, "\(created.text)")
            let budget = created.json["id"] as! String
            let noKey = try await h.call(.post, "/v1/budgets/\(budget)/allocations", token: coordinator.token, json: ["amount_pence": 500_000])
            #expect(noKey.status == .badRequest)
            #expect(noKey.json["field"] as? String == "Idempotency-Key")
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "alloc-1"]
            let first = try await h.call(.post, "/v1/budgets/\(budget)/allocations", token: coordinator.token, json: ["amount_pence": 500_000], headers: key)
            let again = try await h.call(.post, "/v1/budgets/\(budget)/allocations", token: coordinator.token, json: ["amount_pence": 500_000], headers: key)
            #expect(first.status == .created)
            #expect(again.json["id"] as? String == first.json["id"] as? String)
            let other = try await h.call(.post, "/v1/budgets/\(budget)/allocations", token: coordinator.token, json: ["amount_pence": 1], headers: key)
            #expect(other.status == .conflict)
            let mine = try await h.call(.get, "/v1/me/budgets", token: token)
            let budgets = mine.json["budgets"] as? [[String: Any]] ?? []
            #expect(budgets.first?["available_pence"] as? Int == 500_000)
            let csv = try await h.call(.get, "/v1/budgets/\(budget)/statement?format=csv", token: token)
            #expect(csv.status == .ok)
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(csv.text.hasPrefix("date,kind,description"))
            let byPerson = try await h.call(.post, "/v1/budgets/\(budget)/allocations", token: token, json: ["amount_pence": 1],
                                            headers: [HTTPField.Name("Idempotency-Key")!: "sneaky"])
            #expect(byPerson.status == .forbidden)
        }
    }

    @Test("browser sessions: cookies are HttpOnly, Secure and SameSite=Strict; changes need the CSRF token")
    func cookiesAndCSRF() async throws {
        try await GatewayHarness.with { h in
            _ = try await h.register("pat@example.org")
            let signIn = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "pat@example.org", "password": "plausible kettle harvest lantern"],
                                          headers: [HTTPField.Name("X-Session")!: "cookie"])
            let cookies = signIn.headers[values: .setCookie]
            let access = try #require(cookies.first { $0.hasPrefix("wc_access=") })
            #expect(access.contains("HttpOnly"))
            #expect(access.contains("Secure"))
            #expect(access.contains("SameSite=Strict"))
            // The refresh cookie lives exactly as long as identity says the refresh token does.
            let refreshSeconds = try #require(signIn.json["refresh_expires_in_seconds"] as? Int)
            #expect(refreshSeconds == 30 * 86_400)
            let refreshCookie = try #require(cookies.first { $0.hasPrefix("wc_refresh=") })
            #expect(refreshCookie.contains("Max-Age=\(refreshSeconds)"), "\(refreshCookie)")
            let csrfCookie = try #require(cookies.first { $0.hasPrefix("wc_csrf=") })
            #expect(!csrfCookie.contains("HttpOnly"))
            func value(_ cookie: String) -> String { String(cookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1]) }
            let cookieHeader = "wc_access=\(value(access)); wc_csrf=\(value(csrfCookie))"
            // The same token in a header, for a front end on another origin of the site.
            #expect(signIn.headers[HTTPField.Name("X-CSRF-Token")!] == value(csrfCookie))
            let read = try await h.call(.get, "/v1/me", headers: [.cookie: cookieHeader])
            #expect(read.status == .ok)
            let entry: [String: Any] = ["kind": "NOTE", "effective_start": "2026-11-20", "text": "From the portal"]
            let noToken = try await h.call(.post, "/v1/me/record/entries", json: entry, headers: [.cookie: cookieHeader])
            #expect(noToken.status == .forbidden)
            #expect(noToken.json["type"] as? String == "https://wholecare.dev/problems/csrf")
            let withToken = try await h.call(.post, "/v1/me/record/entries", json: entry,
                                              headers: [.cookie: cookieHeader, HTTPField.Name("X-CSRF-Token")!: value(csrfCookie)])
            #expect(withToken.status == .created)
        }
    }

    @Test("a browser's refresh from its cookie needs the CSRF token and replaces the cookies; sign-out clears them even when refused, and works with the refresh cookie alone once the access cookie has lapsed")
    func cookieRefreshAndSignOut() async throws {
        try await GatewayHarness.with { h in
            _ = try await h.register("pat@example.org")
            _ = try await h.register("sam@example.org", name: "Sam Lee")
            let other = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "sam@example.org", "password": "plausible kettle harvest lantern"])
            let signIn = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "pat@example.org", "password": "plausible kettle harvest lantern"],
                                          headers: [HTTPField.Name("X-Session")!: "cookie"])
            func cookie(_ reply: GatewayHarness.Reply, _ name: String) -> String? {
                reply.headers[values: .setCookie].first { $0.hasPrefix(name + "=") }
                    .map { String($0.split(separator: ";")[0].split(separator: "=", maxSplits: 1).last ?? "") }
            }
            let refresh = try #require(cookie(signIn, "wc_refresh")), csrf = try #require(cookie(signIn, "wc_csrf"))
            let access = try #require(cookie(signIn, "wc_access"))
            // Without the CSRF token another page of the site could spend the session's token.
            let forged = try await h.call(.post, "/v1/auth/refresh", headers: [.cookie: "wc_refresh=\(refresh); wc_csrf=\(csrf)"])
            #expect(forged.status == .forbidden)
            #expect(forged.json["type"] as? String == "https://wholecare.dev/problems/csrf")
            let refreshed = try await h.call(.post, "/v1/auth/refresh", headers: [.cookie: "wc_refresh=\(refresh); wc_csrf=\(csrf)",
                                                                                HTTPField.Name("X-CSRF-Token")!: csrf])
            #expect(refreshed.status == .ok)
            // The spent token's successor is in the cookie, though X-Session was not sent.
            let next = try #require(cookie(refreshed, "wc_refresh"))
            #expect(next != refresh && next == refreshed.json["refresh_token"] as? String)
            // Signing out with another session's refresh token is refused, and the browser's
            // cookies are cleared all the same.
            let newCSRF = try #require(cookie(refreshed, "wc_csrf")), newAccess = try #require(cookie(refreshed, "wc_access"))
            #expect(newAccess != access)
            let otherRefresh = try #require(other.json["refresh_token"] as? String)
            let refused = try await h.call(.post, "/v1/auth/sign-out", json: ["refresh_token": otherRefresh],
                                           headers: [.cookie: "wc_access=\(newAccess); wc_csrf=\(newCSRF)", HTTPField.Name("X-CSRF-Token")!: newCSRF])
            #expect(refused.status == .forbidden)
            let cleared = refused.headers[values: .setCookie]
            #expect(["wc_access", "wc_refresh", "wc_csrf"].allSatisfy { name in cleared.contains { $0.hasPrefix(name + "=;") && $0.contains("Max-Age=0") } },
                    "\(cleared)")

            // Later the access cookie has lapsed (its Max-Age is the access token's life); the
            // refresh cookie alone ends the session, with the CSRF token as for a refresh.
            let lapsed: HTTPFields = [.cookie: "wc_refresh=\(next); wc_csrf=\(newCSRF)"]
            let forgedOut = try await h.call(.post, "/v1/auth/sign-out", headers: lapsed)
            #expect(forgedOut.status == .forbidden)
            var withCSRF = lapsed
            withCSRF[HTTPField.Name("X-CSRF-Token")!] = newCSRF
            let signedOut = try await h.call(.post, "/v1/auth/sign-out", headers: withCSRF)
            #expect(signedOut.status == .noContent)
            #expect(signedOut.headers[values: .setCookie].contains { $0.hasPrefix("wc_refresh=;") && $0.contains("Max-Age=0") })
            let afterwards = try await h.call(.post, "/v1/auth/refresh", json: ["refresh_token": next])
            #expect(afterwards.status == .unauthorized, "the session's refresh token still works after sign-out")
            // With no credential at all there is nothing to sign out.
            #expect(try await h.call(.post, "/v1/auth/sign-out").status == .unauthorized)
        }
    }

    @Test("sign-in is rate limited per client and per account, with Retry-After")
    func rateLimit() async throws {
        try await GatewayHarness.with(settings: { $0.authAttemptsPerMinute = 3 }) { h in
            var statuses: [HTTPResponse.Status] = []
            var retryAfter: String?
            for _ in 0..<5 {
                let reply = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "nobody@example.org", "password": "whatever it is"])
                statuses.append(reply.status)
                retryAfter = retryAfter ?? reply.headers[.retryAfter]
            }
            #expect(statuses == [.unauthorized, .unauthorized, .unauthorized, .tooManyRequests, .tooManyRequests])
            #expect(Int(retryAfter ?? "") ?? 0 > 0)
        }
    }

    @Test("behind a trusted proxy the limit is per forwarded client; from anyone else X-Forwarded-For is ignored")
    func rateLimitBehindProxy() async throws {
        @Sendable func attempts(_ h: GatewayHarness, _ forwardedFor: [String]) async throws -> [HTTPResponse.Status] {
            var statuses: [HTTPResponse.Status] = []
            for address in forwardedFor {
                // A new account each time: only the per-address limit can apply.
                let reply = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "\(UUID().uuidString.prefix(8))@example.org", "password": "whatever it is"],
                                             headers: [HTTPField.Name("X-Forwarded-For")!: address])
                statuses.append(reply.status)
            }
            return statuses
        }
        try await GatewayHarness.with(settings: { $0.authAttemptsPerMinute = 2; $0.trustedProxies = [AddressRange("127.0.0.0/8")!] }) { h in
            // The client is the right-most untrusted hop; what it wrote further left is not believed.
            let first = try await attempts(h, ["203.0.113.7", "198.51.100.1, 203.0.113.7:5123", "198.51.100.2, 203.0.113.7, 127.0.0.1"])
            #expect(first == [.unauthorized, .unauthorized, .tooManyRequests])
            let other = try await attempts(h, ["203.0.113.8"])
            #expect(other == [.unauthorized], "another client behind the same proxy is not limited")
            // An IPv6 client is counted by its /64, whichever address in it it picks.
            let sixes = try await attempts(h, ["2001:db8:1:2::1", "[2001:db8:1:2::abcd]:443", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1"])
            #expect(sixes == [.unauthorized, .unauthorized, .tooManyRequests, .unauthorized])
        }
        try await GatewayHarness.with(settings: { $0.authAttemptsPerMinute = 2 }) { h in
            let spoofed = try await attempts(h, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
            #expect(spoofed == [.unauthorized, .unauthorized, .tooManyRequests], "an untrusted peer cannot pick its own address")
        }
    }

    @Test("trusted proxy ranges match IPv4, IPv6 and IPv4-mapped addresses by prefix")
    func addressRanges() {
        let v4 = AddressRange("10.1.0.0/16")!
        #expect(v4.contains("10.1.200.3") && !v4.contains("10.2.0.1") && v4.contains("::ffff:10.1.0.9"))
        let v6 = AddressRange("2001:db8::/32")!
        #expect(v6.contains("2001:db8:1::5") && !v6.contains("2001:db9::1") && !v6.contains("10.1.0.1"))
        #expect(AddressRange("192.0.2.7")!.contains("192.0.2.7") && !AddressRange("192.0.2.7")!.contains("192.0.2.8"))
        #expect(AddressRange("10.0.0.0/33") == nil && AddressRange("not an address") == nil && AddressRange("10.0.0.0/x") == nil)
        #expect(!v4.contains("unknown"))
        #expect(AddressRange("::ffff:10.1.0.0/112")!.contains("10.1.7.7") && AddressRange("::ffff:10.1.0.0/90") == nil)
        #expect(API.hostPart("203.0.113.7:4711") == "203.0.113.7" && API.hostPart("[2001:db8::1]:443") == "2001:db8::1")
        #expect(API.hostPart("2001:db8::1") == "2001:db8::1" && API.hostPart("203.0.113.7") == "203.0.113.7")
        #expect(API.rateLimitKey("2001:db8:1:2:3:4:5:6") == "2001:0db8:0001:0002::/64" && API.rateLimitKey("2001:db8:1:2::9") == API.rateLimitKey("2001:db8:1:2:3:4:5:6"))
        #expect(API.rateLimitKey("203.0.113.7") == "203.0.113.7" && API.rateLimitKey("::ffff:203.0.113.7") == "203.0.113.7")
        #expect(API.rateLimitKey("unknown") == "unknown")
    }

    @Test("security headers, CORS only for configured origins, unknown routes and oversized bodies")
    func headersAndLimits() async throws {
        try await GatewayHarness.with { h in
            let reply = try await h.call(.get, "/healthz", headers: [.origin: "https://portal.example.org"])
            #expect(reply.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
            #expect(reply.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            #expect(reply.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
            #expect(reply.headers[HTTPField.Name("X-Frame-Options")!] == "DENY")
            #expect(reply.headers[.accessControlAllowOrigin] == "https://portal.example.org")
            let foreign = try await h.call(.get, "/healthz", headers: [.origin: "https://evil.example"])
            #expect(foreign.headers[.accessControlAllowOrigin] == nil)
            let preflight = try await h.call(.options, "/v1/me", headers: [.origin: "https://evil.example", .accessControlRequestMethod: "GET"])
            #expect(preflight.status == .forbidden)
            // A portal on a listed origin may ask for a cookie session (X-Session) and send the CSRF token.
            let portal = try await h.call(.options, "/v1/auth/sign-in", headers: [
                .origin: "https://portal.example.org", .accessControlRequestMethod: "POST",
                .accessControlRequestHeaders: "content-type, x-session",
            ])
            #expect(portal.status == .noContent)
            let allowed = Set((portal.headers[.accessControlAllowHeaders] ?? "").lowercased().split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(allowed.isSuperset(of: ["content-type", "x-session", "x-csrf-token", "idempotency-key"]), "\(allowed)")
            #expect(portal.headers[.accessControlAllowCredentials] == "true")
            let missing = try await h.call(.get, "/v1/nowhere")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.contentType] == "application/problem+json")
            let big = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "a@b.co", "password": String(repeating: "x", count: 70_000)])
            #expect(big.status == .contentTooLarge)
        }
    }

    @Test("the status mapping table", arguments: [
        (RPCError.Code.invalidArgument, 400), (.outOfRange, 400), (.unauthenticated, 401), (.permissionDenied, 403), (.notFound, 404),
        (.alreadyExists, 409), (.aborted, 409), (.failedPrecondition, 409), (.resourceExhausted, 429), (.cancelled, 499),
        (.unimplemented, 501), (.internal, 500), (.unknown, 500), (.dataLoss, 500), (.unavailable, 503), (.deadlineExceeded, 504),
    ])
    func statusMapping(code: RPCError.Code, http: Int) {
        #expect(Int(Problem.status(for: code).0.code) == http)
        let problem = Problem(RPCError(code: code, message: "SELECT secret FROM people"))
        if http == 500 { #expect(problem.detail == "something went wrong on our side") }
        // Every 429 says when to come back, even when the service gave no figure.
        #expect((problem.headers[.retryAfter] != nil) == (http == 429))
    }
}
