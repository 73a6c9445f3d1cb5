import Contracts
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Logging
import NIOCore
import NIOPosix
import RPC
import RPCTransport

enum ServerKind: String, CaseIterable {
    case wholecare, grpc, nio
}

enum BenchServers {
    static func serve(kind: ServerKind, port: Int) async throws {
        switch kind {
        case .wholecare:
            var router = RPC.RPCRouter()
            router.register(EchoService())
            var logger = Logger(label: "bench")
            logger.logLevel = .warning
            let server = RPCServer(configuration: RPCServerConfiguration(port: port, serverName: "bench"), router: router, logger: logger)
            try await server.start()
            ready()
            try await Task.sleep(for: .seconds(1_000_000))
        case .grpc:
            let server = GRPCServer(
                transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext),
                services: [GRPCEchoService()])
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                _ = try await server.listeningAddress
                ready()
            }
        case .nio:
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: 1 << 20)))
                        try channel.pipeline.syncOperations.addHandler(NIOEchoHandler())
                    }
                }
                .bind(host: "127.0.0.1", port: port).get()
            ready()
            try await channel.closeFuture.get()
        }
    }

    static func ready() {
        FileHandle.standardOutput.write(Data("ready\n".utf8))
    }
}

/// The floor: echo each length-prefixed frame back, flushing once per read cycle.
final class NIOEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        var out = context.channel.allocator.buffer(capacity: frame.readableBytes + 4)
        out.writeInteger(UInt32(frame.readableBytes))
        out.writeImmutableBuffer(frame)
        context.write(wrapOutboundOut(out), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// The same Echo method on grpc-swift-2, without code generation.
struct GRPCEchoService: RegistrableRPCService {
    static let descriptor = GRPCCore.MethodDescriptor(fullyQualifiedService: "wholecare.diagnostics.v1.Echo", method: "Echo")

    func registerMethods<Transport: ServerTransport>(with router: inout GRPCCore.RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Self.descriptor,
            deserializer: ProtobufDeserializer<Wholecare_Diagnostics_V1_EchoRequest>(),
            serializer: ProtobufSerializer<Wholecare_Diagnostics_V1_EchoResponse>()
        ) { request, context in
            let single = try await ServerRequest(stream: request)
            var response = Wholecare_Diagnostics_V1_EchoResponse()
            response.text = single.message.text
            response.data = single.message.data
            return StreamingServerResponse(single: ServerResponse(message: response))
        }
    }
}
