import Auth
import Foundation
import Hummingbird
import Logging
import NIOCore

/// Per-request state: the request id and the client's address.
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String = ""
    /// The caller, once the route has authenticated the request.
    public var caller: Principal?
    public let remoteAddress: String
    public var maxUploadSize: Int { 1 << 20 }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
