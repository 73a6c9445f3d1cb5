import Contracts
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import NIOCore
import NIOPosix
import RPC
import RPCTransport
import Synchronization

struct LoadResult {
    var calls: Int
    var seconds: Double
    var latenciesNanos: [UInt64]

    var callsPerSecond: Double { Double(calls) / seconds }
    func percentile(_ p: Double) -> Double {
        guard !latenciesNanos.isEmpty else { return .nan }
        let sorted = latenciesNanos.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.down)))
        return Double(sorted[index]) / 1000  // microseconds
    }
}

/// A ~100-byte request: a 96-character text field serializes to 98 bytes.
let benchText = String(repeating: "w", count: 96)

enum AsyncLoad {
    /// Runs `inflight` concurrent loops of `call` for `seconds`, timing every call.
    static func run(inflight: Int, seconds: Double, executor: (any TaskExecutor)? = nil,
                    call: @escaping @Sendable () async throws -> Void) async throws -> LoadResult {
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(seconds * 1000))
        let perTask = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<inflight {
                group.addTask(executorPreference: executor) {
                    var latencies: [UInt64] = []
                    latencies.reserveCapacity(200_000)
                    while ContinuousClock.now < deadline {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        try await call()
                        latencies.append(DispatchTime.now().uptimeNanoseconds - t0)
                    }
                    return latencies
                }
            }
            return try await group.reduce(into: [[UInt64]]()) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - start
        let all = perTask.flatMap { $0 }
        return LoadResult(calls: all.count, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                          latenciesNanos: all)
    }
}

enum WholeCareLoad {
    static func make(port: Int) -> (call: @Sendable () async throws -> Void, close: @Sendable () async -> Void, executor: any TaskExecutor) {
        let transport = RPCClientTransport(configuration: RPCClientConfiguration(host: "127.0.0.1", port: port, connections: 1))
        let client = Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: transport))
        var request = Wholecare_Diagnostics_V1_EchoRequest()
        request.text = benchText
        let fixed = request
        return ({ _ = try await client.echo(fixed) }, { await transport.close() }, transport.preferredExecutor)
    }
}

enum GRPCLoad {
    static func run(port: Int, inflight: Int, seconds: Double) async throws -> LoadResult {
        let client = GRPCClient(transport: try .http2NIOPosix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext))
        return try await withThrowingTaskGroup(of: LoadResult?.self) { group in
            group.addTask { try await client.runConnections(); return nil }
            var request = Wholecare_Diagnostics_V1_EchoRequest()
            request.text = benchText
            let fixed = request
            let call: @Sendable () async throws -> Void = {
                _ = try await client.unary(
                    request: GRPCCore.ClientRequest(message: fixed), descriptor: GRPCEchoService.descriptor,
                    serializer: ProtobufSerializer<Wholecare_Diagnostics_V1_EchoRequest>(),
                    deserializer: ProtobufDeserializer<Wholecare_Diagnostics_V1_EchoResponse>(),
                    options: .defaults) { try $0.message }
            }
            // Warm the connection before timing.
            for _ in 0..<200 { try await call() }
            let result = try await AsyncLoad.run(inflight: inflight, seconds: seconds, call: call)
            client.beginGracefulShutdown()
            var final: LoadResult?
            for try await value in group where value != nil { final = value }
            return final ?? result
        }
    }
}

/// The floor: a NIO handler keeps N length-prefixed 100-byte frames in flight and
/// sends the next one from inside channelRead, with no async hop at all.
enum NIOFloorLoad {
    final class Driver: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let inflight: Int
        let deadline: NIODeadline
        let done: EventLoopPromise<LoadResult>
        var sentAt: [UInt64] = []
        var head = 0
        var latencies: [UInt64] = []
        var started = NIODeadline.now()
        var outstanding = 0
        let payload = ByteBuffer(repeating: 0x77, count: 100)

        init(inflight: Int, seconds: Double, done: EventLoopPromise<LoadResult>) {
            self.inflight = inflight
            self.deadline = .now() + .milliseconds(Int64(seconds * 1000))
            self.done = done
            latencies.reserveCapacity(4_000_000)
        }

        func channelActive(context: ChannelHandlerContext) {
            started = .now()
            for _ in 0..<inflight { send(context) }
            context.flush()
        }

        func send(_ context: ChannelHandlerContext) {
            var out = context.channel.allocator.buffer(capacity: 104)
            out.writeInteger(UInt32(100))
            out.writeImmutableBuffer(payload)
            sentAt.append(DispatchTime.now().uptimeNanoseconds)
            outstanding += 1
            context.write(wrapOutboundOut(out), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            latencies.append(DispatchTime.now().uptimeNanoseconds - sentAt[head])
            head += 1
            outstanding -= 1
            if NIODeadline.now() < deadline { send(context) }
            if outstanding == 0 {
                let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
                done.succeed(LoadResult(calls: latencies.count, seconds: elapsed, latenciesNanos: latencies))
                context.close(promise: nil)
            }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
    }

    static func run(port: Int, inflight: Int, seconds: Double) async throws -> LoadResult {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = loop.makePromise(of: LoadResult.self)
        _ = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: 1 << 20)))
                    try channel.pipeline.syncOperations.addHandler(Driver(inflight: inflight, seconds: seconds, done: promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return try await promise.futureResult.get()
    }
}
