import Foundation
import Logging
import SwiftProtobuf

/// A request as it reaches a server handler: method, metadata and serialized message.
public struct RawRequest: Sendable {
    public var method: String
    public var metadata: Metadata
    public var payload: Data

    public init(method: String, metadata: Metadata, payload: Data) {
        self.method = method
        self.metadata = metadata
        self.payload = payload
    }
}

/// A successful response: serialized message and metadata.
public struct RawResponse: Sendable {
    public var payload: Data
    public var metadata: Metadata

    public init(payload: Data, metadata: Metadata = [:]) {
        self.payload = payload
        self.metadata = metadata
    }
}

/// Maps method names to handlers, runs interceptors, enforces deadlines, and turns every
/// thrown error into a status the caller may see.
public struct RPCRouter: Sendable {
    public typealias Handler = @Sendable (RawRequest, ServerContext) async throws -> RawResponse

    private var handlers: [String: Handler] = [:]
    /// Handlers wrapped in the interceptors, composed once rather than on every call.
    private var composed: [String: Handler] = [:]
    private var idempotent: Set<String> = []
    public var interceptors: [any ServerInterceptor] = [] {
        didSet { composed = handlers.mapValues { compose($0) } }
    }

    private func compose(_ handler: @escaping Handler) -> Handler {
        var composed: Handler = handler
        for interceptor in interceptors.reversed() {
            let next = composed
            composed = { request, context in try await interceptor.intercept(request, context: context, next: next) }
        }
        return composed
    }

    public init() {}

    /// Registers a typed handler. Decoding failures answer INVALID_ARGUMENT.
    public mutating func register<Input, Output>(
        _ method: MethodDescriptor<Input, Output>,
        _ handler: @escaping @Sendable (Input, ServerContext) async throws -> Output
    ) {
        precondition(handlers[method.fullName] == nil, "\(method.fullName) registered twice")
        if method.idempotent { idempotent.insert(method.fullName) }
        let handler: Handler = { raw, context in
            let output = try await handler(try Self.decode(Input.self, raw), context)
            return RawResponse(payload: try WireEncoder.encode(output))
        }
        handlers[method.fullName] = handler
        composed[method.fullName] = compose(handler)
    }

    /// Replaces a registered method's handler with one that returns its reply already
    /// encoded (a hot reply a service writes with `ProtoWriter`); the reply must be a valid
    /// `Output`, which the service's tests check.
    public mutating func replace<Input, Output>(
        _ method: MethodDescriptor<Input, Output>,
        encoded handler: @escaping @Sendable (Input, ServerContext) async throws -> [UInt8]
    ) {
        precondition(handlers[method.fullName] != nil, "\(method.fullName) is not registered")
        let handler: Handler = { raw, context in
            return RawResponse(payload: Data(try await handler(try Self.decode(Input.self, raw), context)))
        }
        handlers[method.fullName] = handler
        composed[method.fullName] = compose(handler)
    }

    /// A request's message; a malformed one answers INVALID_ARGUMENT.
    private static func decode<Input: SwiftProtobuf.Message>(_ type: Input.Type, _ raw: RawRequest) throws -> Input {
        do {
            return try Input(serializedBytes: raw.payload)
        } catch {
            throw RPCError(code: .invalidArgument, message: "the request is not a valid \(Input.protoMessageName)")
        }
    }

    /// Registers every method of a service.
    public mutating func register(_ service: some RPCService) {
        service.register(into: &self)
    }

    /// Every method served, sorted.
    public var methodNames: [String] { handlers.keys.sorted() }

    public func isIdempotent(_ method: String) -> Bool { idempotent.contains(method) }

    public func hasMethod(_ method: String) -> Bool { handlers[method] != nil }

    /// Runs a call to completion and returns its outcome; never throws. Interceptors run
    /// in order around the handler. With a deadline, the handler's task is cancelled when
    /// it passes and the caller gets DEADLINE_EXCEEDED. A transport that enforces the
    /// deadline itself (the network server cancels the call's task from a timer on its
    /// event loop, which costs less than a second task sleeping beside the handler) passes
    /// `enforcingDeadline: false`; a deadline that has already passed is refused either way.
    public func handle(_ request: RawRequest, context: ServerContext, enforcingDeadline: Bool = true) async -> Result<RawResponse, RPCError> {
        guard let chain = composed[request.method] else {
            return .failure(RPCError(code: .unimplemented, message: "unknown method \(Self.printable(request.method))"))
        }
        if request.metadata[MetadataKey.timeout] != nil {
            return .failure(.invalidArgument(field: "metadata.timeout", "the deadline travels in timeout_micros, not metadata"))
        }
        let run: @Sendable () async -> Result<RawResponse, RPCError> = {
            do {
                let response = try await ServerContext.$current.withValue(context) { try await chain(request, context) }
                return .success(response)
            } catch {
                return .failure(Self.status(for: error, context: context))
            }
        }
        guard let deadline = context.deadline else { return await run() }
        if deadline <= .now {
            return .failure(RPCError(code: .deadlineExceeded, message: "the deadline passed before the call started"))
        }
        guard enforcingDeadline else { return await run() }
        return await withTaskGroup(of: Result<RawResponse, RPCError>?.self) { group in
            group.addTask { await run() }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return Task.isCancelled ? nil : .failure(RPCError(code: .deadlineExceeded, message: "deadline exceeded"))
            }
            var outcome: Result<RawResponse, RPCError>?
            while outcome == nil, let next = await group.next() {
                outcome = next
            }
            group.cancelAll()
            return outcome ?? .failure(RPCError(code: .cancelled, message: "cancelled"))
        }
    }

    /// Maps anything a handler threw to a status that is safe to send.
    public static func status(for error: any Error, context: ServerContext) -> RPCError {
        switch error {
        case let error as RPCError:
            return error
        case let error as any RPCErrorConvertible:
            let status = error.rpcError
            switch status.code {
            case .internal, .unknown:
                context.logger.error("handler failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            case .unavailable, .aborted:
                // A dependency (the database) failed or was busy: worth an operator's eye.
                context.logger.warning("handler failed", metadata: ["error": "\(String(reflecting: type(of: error)))", "status": "\(status.code)"])
            default:
                break
            }
            return status
        case is CancellationError:
            return RPCError(code: .cancelled, message: "the call was cancelled")
        default:
            // The details go to the log on this side only.
            context.logger.error("handler failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            return RPCError(code: .internal, message: "internal error")
        }
    }

    /// Method names come from the network: show at most 200 printable ASCII characters.
    static func printable(_ text: String) -> String {
        let cleaned = text.unicodeScalars.prefix(200).map { $0.isASCII && $0.value >= 32 && $0.value < 127 ? Character($0) : "?" }
        return "\"" + String(cleaned) + "\""
    }
}

/// Wraps every call a server handles: authentication, logging, metrics.
public protocol ServerInterceptor: Sendable {
    func intercept(
        _ request: RawRequest, context: ServerContext, next: RPCRouter.Handler
    ) async throws -> RawResponse
}
