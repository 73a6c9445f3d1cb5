import Foundation
import Hummingbird
import Logging
import NIOCore

/// Per-request state: the request id and the client's address.
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID: String = ""
    public let remoteAddress: String
    public var maxUploadSize: Int { 1 << 20 }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
