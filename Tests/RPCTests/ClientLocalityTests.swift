import Contracts
import Foundation
import NIOCore
import NIOPosix
import RPC
import RPCTransport
import Synchronization
import TestSupport
import Testing

@Suite("Client connection locality")
struct ClientLocalityTests {
    /// The address each call arrived from, in order: one per client connection.
    final class PeerLog: ServerInterceptor {
        let peers = Mutex<[String]>([])

        func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
            peers.withLock { $0.append(context.peer) }
            return try await next(request, context)
        }
    }

    /// A server that logs each call's connection, and a two-connection client on a group of its own.
    struct Rig {
        let log: PeerLog
        let test: TestServer
        let group: MultiThreadedEventLoopGroup
        let transport: RPCClientTransport
        let client: Wholecare_Diagnostics_V1_Echo.Client

        static func start(loops: Int) async throws -> Rig {
            let log = PeerLog()
            let test = try await TestServer.start(interceptors: [log])
            let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
            var configuration = RPCClientConfiguration(host: "127.0.0.1", port: test.port, connections: 2)
            configuration.connectTimeout = .seconds(20)
            let transport = RPCClientTransport(configuration: configuration, group: group)
            return Rig(log: log, test: test, group: group, transport: transport,
                       client: Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: transport)))
        }

        func stop() async throws {
            await transport.close()
            await test.server.shutdown()
            try await group.shutdownGracefully()
        }
    }

    @Test("a call made on one of the pool's event loops goes over that loop's connection and resumes there")
    func callsStayOnTheirLoop() async throws {
        let rig = try await Rig.start(loops: 2)
        let (log, group, client) = (rig.log, rig.group, rig.client)
        // From off the pool's loops calls take turns (on a connection that is up, while the
        // other connects), which brings both connections up.
        // Connecting can take seconds while the suite loads the machine: poll to a deadline.
        var warm: [String] = []
        var index = 0
        try #require(try await waitUntil(every: .milliseconds(10)) {
            _ = try await client.echo(echoRequest("warm \(index)"))
            index += 1
            warm = log.peers.withLock { $0 }
            return Set(warm).count == 2
        })

        var loops: [any EventLoop] = []
        for loop in group.makeIterator() { loops.append(loop) }
        #expect(loops.count == 2)
        for loop in loops {
            let stayed = try await Task(executorPreference: EventLoopExecutor(eventLoop: loop)) {
                var stayed = true
                for index in 0..<6 {
                    let reply = try await client.echo(echoRequest("on loop \(index)"))
                    stayed = stayed && reply.text == "on loop \(index)" && loop.inEventLoop
                }
                return stayed
            }.value
            #expect(stayed)
        }
        let onLoops = Array(log.peers.withLock { $0 }.dropFirst(warm.count))
        #expect(onLoops.count == 12)
        // Each loop's six calls came over one connection, and the two loops' over different ones.
        #expect(Set(onLoops.prefix(6)).count == 1)
        #expect(Set(onLoops.suffix(6)).count == 1)
        #expect(onLoops.first != onLoops.last)

        try await rig.stop()
    }

    @Test("with more connections than loops, calls made on a loop still bring up and use every connection")
    func sharedLoopUsesTheWholePool() async throws {
        let rig = try await Rig.start(loops: 1)
        let (log, group, client) = (rig.log, rig.group, rig.client)
        let loop = group.next()
        // Every call is made on the group's one loop, where both connections live: none is
        // that loop's own, so the calls take turns, and the second connection comes up.
        let peers = try await Task(executorPreference: EventLoopExecutor(eventLoop: loop)) {
            var index = 0
            _ = try await waitUntil(every: .milliseconds(10)) {  // connecting can take seconds here
                let reply = try await client.echo(echoRequest("shared \(index)"))
                #expect(reply.text == "shared \(index)")
                index += 1
                return Set(log.peers.withLock { $0 }).count == 2
            }
            return log.peers.withLock { $0 }
        }.value
        #expect(Set(peers).count == 2)

        try await rig.stop()
    }
}
