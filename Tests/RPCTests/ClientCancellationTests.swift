import Foundation
import Logging
import NIOCore
import NIOEmbedded
import RPC
@testable import RPCTransport
import Testing

/// Starts and cancels of different calls reach a connection's loop in any order. A caller
/// that gives up before its call has started must get CANCELLED at once and its request
/// must never be sent, even when a later call started first.
@Suite("Client cancellation")
@MainActor
struct ClientCancellationTests {
    private func connectedHandler() throws -> (EmbeddedChannel, ClientConnectionHandler) {
        let channel = EmbeddedChannel()
        let handler = ClientConnectionHandler(
            configuration: RPCClientConfiguration(host: "127.0.0.1", port: 1), logger: Logger(label: "test.cancel"))
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, handler)
    }

    /// The call ids of the requests and cancels written so far.
    private func written(_ channel: EmbeddedChannel) throws -> (requests: [UInt64], cancels: [UInt64]) {
        var requests: [UInt64] = []
        var cancels: [UInt64] = []
        channel.embeddedEventLoop.run() // the flushes the handler has scheduled
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while let length = buffer.readInteger(as: UInt32.self), let body = buffer.readSlice(length: Int(length)) {
                let frame = try Wholecare_Rpc_V1_Frame(frameBuffer: body)
                switch frame.kind {
                case .request: requests.append(frame.callID)
                case .cancel: cancels.append(frame.callID)
                default: break
                }
            }
        }
        return (requests, cancels)
    }

    private func request() -> ClientRequest {
        ClientRequest(method: "test.v1.Echo/Say", metadata: [:], timeout: nil, payload: Data([1, 2, 3]))
    }

    /// Starts call `id` on the handler, as a connection's loop would, in a task of its own.
    private func start(
        _ handler: ClientConnectionHandler, id: UInt64, cancellation: CallCancellation = CallCancellation()
    ) async -> Task<RawResponse, any Error> {
        let request = request()
        let task = Task { @MainActor in
            try await withCheckedThrowingContinuation { continuation in
                handler.start(id: id, request: request, cancellation: cancellation, continuation: continuation)
            }
        }
        await Task.yield()
        return task
    }

    @Test("a cancel that reaches the loop after a later call started, but before its own start, still cancels its call")
    func cancelBeforeStartAfterLaterCall() async throws {
        let (channel, handler) = try connectedHandler()
        // Call 2 starts first and stays pending.
        let second = await start(handler, id: 2)
        // Call 1's caller gives up: its task sets the flag, then its cancel reaches the loop
        // before its start does.
        let first = CallCancellation()
        first.cancel()
        handler.cancel(id: 1)
        let firstCall = await start(handler, id: 1, cancellation: first)
        var frames = try written(channel)
        #expect(frames.requests == [2], "only the call that was not cancelled is sent")
        if frames.requests.contains(1) { handler.cancel(id: 1) } // so that a failing test ends
        do {
            _ = try await firstCall.value
            Issue.record("call 1 succeeded after its caller had cancelled it")
        } catch let error as RPCError {
            #expect(error.code == .cancelled)
        }

        // Call 2 is still live; cancelling it ends it and tells the server.
        handler.cancel(id: 2)
        await #expect(throws: RPCError.self) { _ = try await second.value }
        frames = try written(channel)
        #expect(frames.cancels == [2])
        _ = try? channel.finish()
    }

    @Test("a cancel for a call that has already been answered sends nothing")
    func cancelAfterEnd() async throws {
        let (channel, handler) = try connectedHandler()
        let call = await start(handler, id: 1)
        // The server answers call 1.
        var response = Wholecare_Rpc_V1_Response()
        response.payload = Data([9])
        var frame = Wholecare_Rpc_V1_Frame()
        frame.callID = 1
        frame.response = response
        var buffer = try FrameWriter.write(frame, allocator: channel.allocator)
        buffer.moveReaderIndex(forwardBy: 4)
        try channel.writeInbound(buffer)
        #expect(try await call.value.payload == Data([9]))
        // Its cancel arrives late: nothing is sent and nothing is kept.
        handler.cancel(id: 1)
        #expect(try written(channel).cancels.isEmpty)
        _ = try? channel.finish()
    }
}
