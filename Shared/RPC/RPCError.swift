/// An RPC failure: a gRPC status code, a message that is safe to show to the caller, and
/// optional metadata. The `cause` stays on this side of the wire (logged, never sent).
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Code
    public var message: String
    public var metadata: Metadata
    public var cause: (any Error & Sendable)?

    public init(code: Code, message: String, metadata: Metadata = [:], cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.metadata = metadata
        self.cause = cause
    }

    public var description: String { "\(code): \(message)" }

    public static func == (lhs: RPCError, rhs: RPCError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.metadata == rhs.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    /// The status codes and numbers of gRPC (`google.rpc.Code`), with the same meanings.
    /// Extensible: the wrapped enum is private, so codes can be added without breaking
    /// exhaustive switches in callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Int, Sendable {
            case ok = 0, cancelled, unknown, invalidArgument, deadlineExceeded, notFound, alreadyExists
            case permissionDenied, resourceExhausted, failedPrecondition, aborted, outOfRange, unimplemented
            case `internal`, unavailable, dataLoss, unauthenticated
        }

        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The wire number (0–16).
        public var rawValue: Int { wrapped.rawValue }

        /// A code from its wire number; numbers outside 0–16 become `unknown`, as gRPC does.
        public init(rawValue: Int) {
            self.wrapped = Wrapped(rawValue: rawValue) ?? .unknown
        }

        public static let ok = Code(.ok)
        public static let cancelled = Code(.cancelled)
        public static let unknown = Code(.unknown)
        public static let invalidArgument = Code(.invalidArgument)
        public static let deadlineExceeded = Code(.deadlineExceeded)
        public static let notFound = Code(.notFound)
        public static let alreadyExists = Code(.alreadyExists)
        public static let permissionDenied = Code(.permissionDenied)
        public static let resourceExhausted = Code(.resourceExhausted)
        public static let failedPrecondition = Code(.failedPrecondition)
        public static let aborted = Code(.aborted)
        public static let outOfRange = Code(.outOfRange)
        public static let unimplemented = Code(.unimplemented)
        public static let `internal` = Code(.internal)
        public static let unavailable = Code(.unavailable)
        public static let dataLoss = Code(.dataLoss)
        public static let unauthenticated = Code(.unauthenticated)

        /// All seventeen codes in wire order.
        public static let all: [Code] = (0...16).map { Code(rawValue: $0) }

        /// The canonical upper-case name (`INVALID_ARGUMENT`).
        public var name: String {
            switch wrapped {
            case .ok: return "OK"
            case .cancelled: return "CANCELLED"
            case .unknown: return "UNKNOWN"
            case .invalidArgument: return "INVALID_ARGUMENT"
            case .deadlineExceeded: return "DEADLINE_EXCEEDED"
            case .notFound: return "NOT_FOUND"
            case .alreadyExists: return "ALREADY_EXISTS"
            case .permissionDenied: return "PERMISSION_DENIED"
            case .resourceExhausted: return "RESOURCE_EXHAUSTED"
            case .failedPrecondition: return "FAILED_PRECONDITION"
            case .aborted: return "ABORTED"
            case .outOfRange: return "OUT_OF_RANGE"
            case .unimplemented: return "UNIMPLEMENTED"
            case .internal: return "INTERNAL"
            case .unavailable: return "UNAVAILABLE"
            case .dataLoss: return "DATA_LOSS"
            case .unauthenticated: return "UNAUTHENTICATED"
            }
        }

        public var description: String { name }
    }
}

/// Domain errors adopt this to choose their RPC status. Anything thrown by a handler that
/// is neither an `RPCError` nor convertible becomes `INTERNAL` with a generic message.
public protocol RPCErrorConvertible: Error {
    var rpcErrorCode: RPCError.Code { get }
    /// Safe to show the caller: never personal data, SQL or stack traces.
    var rpcErrorMessage: String { get }
    var rpcErrorMetadata: Metadata { get }
}

extension RPCErrorConvertible {
    public var rpcErrorMetadata: Metadata { [:] }

    public var rpcError: RPCError {
        RPCError(code: rpcErrorCode, message: rpcErrorMessage, metadata: rpcErrorMetadata)
    }
}

extension RPCError {
    /// `INVALID_ARGUMENT` naming the offending field (in the message and in the
    /// `field` metadata entry, which the gateway maps to problem+json).
    public static func invalidArgument(field: String, _ problem: String) -> RPCError {
        RPCError(code: .invalidArgument, message: "\(field): \(problem)", metadata: [MetadataKey.field: field])
    }
}
