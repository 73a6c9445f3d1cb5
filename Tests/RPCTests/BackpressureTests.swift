import Logging
import NIOCore
import NIOEmbedded
import RPC
@testable import RPCTransport
import Testing

/// A client that sends but never reads what it is sent (a ping flood, say) must not make
/// the server keep its replies without limit: while the connection cannot take more
/// output, the server asks its socket for no more input.
@Suite("Server backpressure")
struct BackpressureTests {
    /// Counts the reads that reach the socket.
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    @Test("while the connection is not writable, the socket is not read; once it is, reading resumes")
    func noReadsWhileUnwritable() throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(ServerConnectionHandler(
            router: RPCRouter(), configuration: RPCServerConfiguration(port: 0, serverName: "test"),
            logger: Logger(label: "test.backpressure"), peer: "test"))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let before = counter.reads
        channel.read()
        #expect(counter.reads == before + 1)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.read()
        channel.read()
        #expect(counter.reads == before + 1, "read while the client was not taking output")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(counter.reads == before + 2, "reading resumes once the client takes output again")
        _ = try? channel.finish()
    }
}
