import SwiftProtobuf

/// Identifies one method: `wholecare.<service>.v1.<Service>/<Method>`, its message types,
/// and whether repeating it is safe (proto `idempotency_level`), which allows retries.
public struct MethodDescriptor<Input: SwiftProtobuf.Message & Sendable, Output: SwiftProtobuf.Message & Sendable>: Sendable {
    public let service: String
    public let method: String
    public let fullName: String
    public let idempotent: Bool

    public init(service: String, method: String, idempotent: Bool) {
        self.service = service
        self.method = method
        self.fullName = service + "/" + method
        self.idempotent = idempotent
    }
}

/// Something that serves one RPC service: generated `ServiceProtocol`s adopt it.
public protocol RPCService: Sendable {
    var serviceName: String { get }
    func register(into router: inout RPCRouter)
}
