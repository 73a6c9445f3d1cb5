import NIOCore
import RPC

/// Limits and timings for an `RPCServer`. Every field has a default.
public struct RPCServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port (tests); read it back from `RPCServer.start()`.
    public var port: Int
    /// Name reported by Health/Check.
    public var serverName: String
    /// Largest accepted frame, in bytes after the length prefix (default 4 MiB).
    public var maxFrameSize: Int
    /// Calls run at once per connection; beyond it the server stops reading from that
    /// connection until one finishes (backpressure), so further requests wait in TCP.
    public var maxConcurrentCallsPerConnection: Int
    /// Connections held at once; more are told GOAWAY (RESOURCE_EXHAUSTED) and closed.
    public var maxConnections: Int
    /// Connections held at once from one address (IPv6: one /64), so that one client
    /// cannot take every place; more are refused as above.
    public var maxConnectionsPerAddress: Int
    /// A connection with no traffic and no calls in flight for this long is closed.
    public var idleTimeout: TimeAmount
    /// Time allowed for one frame to arrive once its first byte has.
    public var frameArrivalBudget: TimeAmount
    /// Time allowed for the client's hello after connecting.
    public var helloTimeout: TimeAmount
    /// On shutdown, how long in-flight calls may run before connections are closed.
    public var drainTimeout: TimeAmount
    /// How long a closing connection (drained, or failed) waits for the replies and the
    /// GOAWAY already written to reach its socket, for a client that reads slowly. During
    /// a shutdown the wait is also bounded by `drainTimeout`, after which every connection
    /// is closed.
    public var closeGrace: TimeAmount = .seconds(5)
    /// Run each call's handler task on the connection's event loop (no thread hop per
    /// call). Handlers must then never block; WholeCare's do their blocking work (libpq,
    /// scrypt) on dedicated thread pools.
    public var runHandlersOnEventLoop: Bool

    public init(
        host: String = "127.0.0.1", port: Int, serverName: String = "wholecare",
        maxFrameSize: Int = RPCProtocol.defaultMaxFrameSize, maxConcurrentCallsPerConnection: Int = 1024,
        maxConnections: Int = 4096, maxConnectionsPerAddress: Int = 256, idleTimeout: TimeAmount = .minutes(5), frameArrivalBudget: TimeAmount = .seconds(10),
        helloTimeout: TimeAmount = .seconds(10), drainTimeout: TimeAmount = .seconds(10), runHandlersOnEventLoop: Bool = true
    ) {
        self.runHandlersOnEventLoop = runHandlersOnEventLoop
        self.host = host
        self.port = port
        self.serverName = serverName
        self.maxFrameSize = maxFrameSize
        self.maxConcurrentCallsPerConnection = maxConcurrentCallsPerConnection
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.idleTimeout = idleTimeout
        self.frameArrivalBudget = frameArrivalBudget
        self.helloTimeout = helloTimeout
        self.drainTimeout = drainTimeout
    }
}
