/// `wholecare.health.v1.Health`: served by every RPC server, without authentication.
public struct HealthService: Wholecare_Health_V1_Health.ServiceProtocol {
    public let serverName: String
    public let methods: @Sendable () -> [String]
    public let isServing: @Sendable () -> Bool

    public init(serverName: String, methods: @escaping @Sendable () -> [String], isServing: @escaping @Sendable () -> Bool = { true }) {
        self.serverName = serverName
        self.methods = methods
        self.isServing = isServing
    }

    public func check(request: Wholecare_Health_V1_CheckRequest, context: ServerContext) async throws -> Wholecare_Health_V1_CheckResponse {
        var response = Wholecare_Health_V1_CheckResponse()
        response.server = serverName
        response.protocolVersion = RPCProtocol.version
        if request.service.isEmpty {
            response.status = isServing() ? .serving : .notServing
        } else {
            let known = methods().contains { $0.hasPrefix(request.service + "/") }
            response.status = known ? (isServing() ? .serving : .notServing) : .serviceUnknown
        }
        return response
    }

    public func listMethods(request: Wholecare_Health_V1_ListMethodsRequest, context: ServerContext) async throws -> Wholecare_Health_V1_ListMethodsResponse {
        var response = Wholecare_Health_V1_ListMethodsResponse()
        response.methods = methods()
        return response
    }
}

/// Protocol-wide constants.
public enum RPCProtocol {
    /// The version in the hello frame; see docs/rpc-protocol.md.
    public static let version: UInt32 = 1
    /// The default largest frame, in bytes after the length prefix.
    public static let defaultMaxFrameSize = 4 * 1024 * 1024
    /// The most metadata entries a request may carry, and their most bytes (keys and
    /// values): a token, a trace id and a key are all a call needs. A request with more is
    /// refused (INVALID_ARGUMENT) before anything is made of its metadata.
    public static let maxMetadataEntries = 64
    public static let maxMetadataBytes = 16 * 1024
}
