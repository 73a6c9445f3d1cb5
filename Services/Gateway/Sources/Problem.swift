import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import RPC

/// RFC 9457 problem details, the only shape errors take. `type` is stable per kind of
/// problem; no stack traces, SQL or personal data ever appear.
public struct Problem: Error, Sendable {
    public var status: HTTPResponse.Status
    public var type: String
    public var title: String
    public var detail: String
    public var field: String?
    public var headers: HTTPFields = [:]

    public static let base = "https://wholecare.dev/problems/"

    public init(status: HTTPResponse.Status, type: String, title: String, detail: String, field: String? = nil) {
        self.status = status
        self.type = Self.base + type
        self.title = title
        self.detail = detail
        self.field = field
    }

    /// One table maps every RPC status to an HTTP status (docs/gateway.md).
    public static func status(for code: RPCError.Code) -> (HTTPResponse.Status, String) {
        switch code {
        case .ok: return (.ok, "ok")
        case .invalidArgument, .outOfRange: return (.badRequest, "invalid-argument")
        case .unauthenticated: return (.unauthorized, "unauthenticated")
        case .permissionDenied: return (.forbidden, "permission-denied")
        case .notFound: return (.notFound, "not-found")
        case .alreadyExists: return (.conflict, "already-exists")
        case .aborted: return (.conflict, "conflict")
        case .failedPrecondition: return (.conflict, "failed-precondition")
        case .resourceExhausted: return (.tooManyRequests, "too-many-requests")
        case .cancelled: return (.init(code: 499, reasonPhrase: "Client Closed Request"), "cancelled")
        case .deadlineExceeded: return (.gatewayTimeout, "deadline-exceeded")
        case .unimplemented: return (.notImplemented, "not-implemented")
        case .unavailable: return (.serviceUnavailable, "unavailable")
        default: return (.internalServerError, "internal")
        }
    }

    /// What any unexpected failure answers: nothing of the failure itself.
    public static let `internal` = Problem(status: .internalServerError, type: "internal", title: "Internal Server Error",
                                           detail: "something went wrong on our side")

    /// An RPC failure as a problem: the message is the service's (already safe) message,
    /// except for internal errors, which say nothing, and for unavailable services and
    /// expired deadlines, whose messages come from the transport and name internal hosts.
    public init(_ error: RPCError) {
        let (status, type) = Self.status(for: error.code)
        let detail: String
        switch error.code {
        case .unavailable: detail = "a service this request needs is unavailable; try again shortly"
        case .deadlineExceeded: detail = "the request took too long to answer; try again shortly"
        case _ where status == .internalServerError: detail = "something went wrong on our side"
        default: detail = error.message
        }
        self.init(status: status, type: type, title: status.reasonPhrase, detail: detail, field: error.metadata[MetadataKey.field])
        // Every 429 says when to come back (RFC 6585): the service's own figure, or a second.
        if let retry = error.metadata["retry-after"] ?? (status == .tooManyRequests ? "1" : nil) { headers[.retryAfter] = retry }
    }

    public static func badRequest(_ detail: String, field: String? = nil) -> Problem {
        Problem(status: .badRequest, type: "invalid-argument", title: "Bad Request", detail: detail, field: field)
    }

    public func response(requestID: String) -> Response {
        var body: [String: Any] = ["type": type, "title": title, "status": Int(status.code), "detail": detail, "request_id": requestID]
        if let field { body["field"] = field }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
