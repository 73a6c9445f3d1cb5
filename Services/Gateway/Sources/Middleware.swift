import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC

/// Request id in and out, access logging without personal data, security headers, CORS,
/// and every error turned into problem+json. One middleware, so that even errors raised
/// by routing (404, 405, body too large) get the same treatment.
struct GatewayMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let settings: GatewaySettings
    let logger: Logger
    let methods: MethodTable

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var context = context
        let incoming = request.headers[.xRequestID] ?? ""
        context.requestID = MetadataKey.isValidTraceID(incoming) ? incoming : UUID.random().lowercasedString
        let started = ContinuousClock.now
        let origin = request.headers[.origin]
        var response: Response
        if request.method == .options, origin != nil {
            response = preflight(request, origin: origin!)
        } else {
            do {
                response = try await next(request, context)
            } catch let problem as Problem {
                response = problem.response(requestID: context.requestID)
            } catch let error as RPCError {
                response = Problem(error).response(requestID: context.requestID)
            } catch let error as HTTPError {
                // The router found no route: if the path is known, the method is the problem.
                if error.status == .notFound, let allow = methods.allowed(request.uri.path) {
                    if request.method == .options {
                        response = Response(status: .noContent, headers: [.allow: allow])
                    } else {
                        var problem = Problem(status: .methodNotAllowed, type: "method-not-allowed", title: "Method Not Allowed",
                                              detail: "this resource answers \(allow)")
                        problem.headers[.allow] = allow
                        response = problem.response(requestID: context.requestID)
                    }
                } else {
                    response = Self.problem(for: error).response(requestID: context.requestID)
                }
            } catch {
                logger.error("unhandled error", metadata: ["request_id": "\(context.requestID)", "error": "\(type(of: error))"])
                response = Problem.internal.response(requestID: context.requestID)
            }
        }
        response.headers[.xRequestID] = context.requestID
        Self.addSecurityHeaders(&response.headers)
        if let origin, settings.allowedOrigins.contains(origin) {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.accessControlAllowCredentials] = "true"
            response.headers[.vary] = "Origin"
            response.headers[.accessControlExposeHeaders] = "X-Request-Id, Retry-After, X-CSRF-Token"
        }
        let elapsed = ContinuousClock.now - started
        // The path without its query string (which may carry identifiers); no bodies.
        logger.info("http", metadata: [
            "request_id": "\(context.requestID)", "method": "\(request.method)", "path": "\(request.uri.path)",
            "status": "\(response.status.code)",
            "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
        ])
        return response
    }

    func preflight(_ request: Request, origin: String) -> Response {
        guard settings.allowedOrigins.contains(origin) else {
            return Response(status: .forbidden)
        }
        var headers: HTTPFields = [:]
        headers[.accessControlAllowMethods] = "GET, POST, PUT, DELETE"
        headers[.accessControlAllowHeaders] = "Authorization, Content-Type, Idempotency-Key, X-CSRF-Token, X-Request-Id, X-Session"
        headers[.accessControlMaxAge] = "600"
        return Response(status: .noContent, headers: headers)
    }

    static func addSecurityHeaders(_ headers: inout HTTPFields) {
        headers[.contentSecurityPolicy] = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.referrerPolicy] = "no-referrer"
        headers[.xFrameOptions] = "DENY"
        headers[.cacheControl] = headers[.cacheControl] ?? "no-store"
        headers[.strictTransportSecurity] = "max-age=31536000"
    }

    static func problem(for error: HTTPError) -> Problem {
        switch error.status {
        case .notFound: return Problem(status: .notFound, type: "not-found", title: "Not Found", detail: "no such resource")
        case .methodNotAllowed:
            return Problem(status: .methodNotAllowed, type: "method-not-allowed", title: "Method Not Allowed",
                           detail: "this resource does not support that method")
        case .contentTooLarge:
            return Problem(status: .contentTooLarge, type: "body-too-large", title: "Content Too Large", detail: "the request body is too large")
        default:
            return Problem(status: error.status, type: "http-\(error.status.code)", title: error.status.reasonPhrase,
                           detail: error.status.reasonPhrase)
        }
    }
}

/// Which methods each documented path answers, for 405 responses with `Allow`.
struct MethodTable: Sendable {
    private let entries: [(segments: [Substring?], allow: String)]

    init(specs: [RouteSpec]) {
        var byPath: [String: Set<String>] = [:]
        for spec in specs { byPath[spec.path, default: []].insert(spec.method) }
        entries = byPath.map { path, methods in
            let segments = path.split(separator: "/").map { $0.hasPrefix(":") ? nil : $0 }
            let allow = (methods.contains("GET") ? methods.union(["HEAD"]) : methods).union(["OPTIONS"]).sorted().joined(separator: ", ")
            return (segments, allow)
        }
    }

    /// The Allow header for a path some route answers, or nil if no route has this path.
    func allowed(_ path: String) -> String? {
        let parts = path.split(separator: "/")
        return entries.first { entry in
            entry.segments.count == parts.count && zip(entry.segments, parts).allSatisfy { $0 == nil || $0 == $1 }
        }?.allow
    }
}

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
    static let xCSRFToken = HTTPField.Name("X-CSRF-Token")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let xContentTypeOptions = HTTPField.Name("X-Content-Type-Options")!
}
