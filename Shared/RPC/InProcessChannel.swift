import Logging

/// Delivers calls straight to a router in the same process: the full server path
/// (interceptors, deadlines, error mapping) without sockets. For tests and for wiring
/// services together in one process.
public struct InProcessChannel: RPCChannel {
    public let router: RPCRouter
    public let logger: Logger

    public init(router: RPCRouter, logger: Logger = Logger(label: "wholecare.rpc.in-process")) {
        self.router = router
        self.logger = logger
    }

    public func unary(_ request: ClientRequest) async throws -> RawResponse {
        let deadline = request.timeout.map { ContinuousClock.now + $0 }
        var logger = logger
        logger[metadataKey: "method"] = .string(request.method)
        let context = ServerContext(
            method: request.method, metadata: request.metadata, deadline: deadline, peer: "in-process", logger: logger)
        let result = await ServerContext.$current.withValue(nil) {
            await router.handle(RawRequest(method: request.method, metadata: request.metadata, payload: request.payload), context: context)
        }
        return try result.get()
    }
}
