import Auth
import Foundation
import HTTPTypes
import Hummingbird
import WholeCareCrypto

/// How a request proves who it is: a bearer token (API clients), or the session cookies
/// a browser holds, which also need the CSRF token on anything that changes state.
struct Credentials {
    static let accessCookie = "wc_access"
    static let refreshCookie = "wc_refresh"
    static let csrfCookie = "wc_csrf"

    /// The verified caller, or a 401 problem.
    static func caller(_ request: Request, verifier: TokenVerifier) async throws -> Principal {
        let token: String
        if let header = request.headers[.authorization] {
            guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
                throw Problem(status: .unauthorized, type: "unauthenticated", title: "Unauthorized",
                              detail: "use 'Authorization: Bearer <access token>'")
            }
            token = String(header.dropFirst(7))
        } else if let cookie = request.cookies[accessCookie]?.value, !cookie.isEmpty {
            if ![.get, .head, .options].contains(request.method) { try requireCSRFToken(request) }
            token = cookie
        } else {
            throw Problem(status: .unauthorized, type: "unauthenticated", title: "Unauthorized", detail: "sign in first")
        }
        do {
            return try await verifier.verify(token)
        } catch is TokenRejection {
            throw Problem(status: .unauthorized, type: "unauthenticated", title: "Unauthorized",
                          detail: "the access token is invalid or expired; refresh it or sign in again")
        }
    }

    /// Double submit: a request that a browser's cookies authenticate and that changes
    /// something must repeat the CSRF cookie (which no other site can read) in the
    /// `X-CSRF-Token` header; else a 403 problem.
    static func requireCSRFToken(_ request: Request) throws {
        guard let header = request.headers[.xCSRFToken], let expected = request.cookies[csrfCookie]?.value,
              !expected.isEmpty, constantTimeEquals(Array(header.utf8), Array(expected.utf8)) else {
            throw Problem(status: .forbidden, type: "csrf", title: "Forbidden",
                          detail: "state-changing requests from a browser session need the X-CSRF-Token header")
        }
    }

    /// Session cookies for a browser sign-in: HttpOnly, SameSite=Strict, Secure when configured.
    static func sessionCookies(access: String, accessSeconds: Int, refresh: String, refreshSeconds: Int, secure: Bool) -> [Cookie] {
        let csrf = SecureRandom.token(byteCount: 24)
        return [
            Cookie(name: accessCookie, value: access, maxAge: accessSeconds, path: "/", secure: secure, httpOnly: true, sameSite: .strict),
            Cookie(name: refreshCookie, value: refresh, maxAge: refreshSeconds, path: "/v1/auth", secure: secure, httpOnly: true, sameSite: .strict),
            Cookie(name: csrfCookie, value: csrf, maxAge: refreshSeconds, path: "/", secure: secure, httpOnly: false, sameSite: .strict),
        ]
    }

    static func clearedCookies(secure: Bool) -> [Cookie] {
        [
            Cookie(name: accessCookie, value: "", maxAge: 0, path: "/", secure: secure, httpOnly: true, sameSite: .strict),
            Cookie(name: refreshCookie, value: "", maxAge: 0, path: "/v1/auth", secure: secure, httpOnly: true, sameSite: .strict),
            Cookie(name: csrfCookie, value: "", maxAge: 0, path: "/", secure: secure, httpOnly: false, sameSite: .strict),
        ]
    }
}
