import Foundation
import Logging
import NIOCore
import RPC
import Synchronization

/// The client side of one connection: sends the hello, writes requests (one flush per
/// loop tick), matches responses to calls, enforces deadlines, sends cancels, answers and
/// sends keepalive pings. Lives on its channel's event loop.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct PendingCall {
        let continuation: CheckedContinuation<RawResponse, any Error>
        let timer: Scheduled<Void>?
    }

    private let configuration: RPCClientConfiguration
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var calls: [UInt64: PendingCall] = [:]
    private var serverMaxFrameSize: Int = RPCProtocol.defaultMaxFrameSize
    private var goingAway = false
    private var closed = false
    private var flushScheduled = false
    private var unflushedCount = 0
    private var keepaliveTimer: Scheduled<Void>?
    private var pingCounter: UInt64 = 0
    /// Called when the server sends GOAWAY, so the pool stops choosing this connection.
    var onGoAway: (() -> Void)?

    init(configuration: RPCClientConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { sendHello() }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendHello()
        context.fireChannelActive()
    }

    private var helloSent = false
    private func sendHello() {
        guard !helloSent else { return }
        helloSent = true
        var hello = Wholecare_Rpc_V1_Hello()
        hello.version = RPCProtocol.version
        hello.agent = configuration.agent
        hello.maxFrameSize = UInt32(configuration.maxFrameSize)
        var frame = Wholecare_Rpc_V1_Frame()
        frame.hello = hello
        write(frame)
        flushSoon()
    }

    // MARK: - Calls (called on the event loop)

    /// Starts call `id` unless its caller has already given up: `cancellation` is set by the
    /// caller's task before its cancel is sent to this loop, so a cancel that reaches the
    /// loop before its start (starts and cancels of different calls arrive in any order)
    /// is seen here, and nothing is kept for a cancel that finds its call already over.
    func start(
        id: UInt64, request: ClientRequest, cancellation: CallCancellation,
        continuation: CheckedContinuation<RawResponse, any Error>
    ) {
        if cancellation.isCancelled {
            continuation.resume(throwing: RPCError(code: .cancelled, message: "the call was cancelled"))
            return
        }
        guard !closed, !goingAway, let context else {
            continuation.resume(throwing: RPCError(code: .unavailable, message: "the connection is closing; retry"))
            return
        }
        var wire = Wholecare_Rpc_V1_Request()
        wire.method = request.method
        if !request.metadata.isEmpty { wire.metadata = request.metadata.wireEntries }
        wire.payload = request.payload
        var timer: Scheduled<Void>?
        if let timeout = request.timeout {
            let micros = max(1, timeout.components.seconds * 1_000_000 + timeout.components.attoseconds / 1_000_000_000_000)
            wire.timeoutMicros = UInt64(micros)
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: .microseconds(micros)) {
                loopBound.value.expire(id: id)
            }
        }
        var frame = Wholecare_Rpc_V1_Frame()
        frame.callID = id
        frame.request = wire
        let buffer: ByteBuffer
        do {
            buffer = try FrameWriter.write(frame, allocator: context.channel.allocator)
        } catch {
            timer?.cancel()
            continuation.resume(throwing: RPCError(code: .internal, message: "the request could not be encoded"))
            return
        }
        guard buffer.readableBytes - 4 <= serverMaxFrameSize else {
            timer?.cancel()
            continuation.resume(throwing: RPCError(
                code: .resourceExhausted, message: "the request exceeds the server's frame limit of \(serverMaxFrameSize) bytes"))
            return
        }
        calls[id] = PendingCall(continuation: continuation, timer: timer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        unflushedCount += 1
        if unflushedCount >= 16 || calls.count == 1 {
            // Send in small batches so the server can start while we are still writing.
            unflushedCount = 0
            context.flush()
        } else {
            flushSoon()
        }
    }

    func cancel(id: UInt64) {
        // Not started yet (its start will see the caller's `CallCancellation`), or already over.
        guard let call = calls.removeValue(forKey: id) else { return }
        call.timer?.cancel()
        call.continuation.resume(throwing: RPCError(code: .cancelled, message: "the call was cancelled"))
        sendCancel(id: id)
    }

    private func expire(id: UInt64) {
        guard let call = calls.removeValue(forKey: id) else { return }
        call.continuation.resume(throwing: RPCError(code: .deadlineExceeded, message: "deadline exceeded"))
        sendCancel(id: id)
    }

    private func sendCancel(id: UInt64) {
        var frame = Wholecare_Rpc_V1_Frame()
        frame.callID = id
        frame.cancel = Wholecare_Rpc_V1_Cancel()
        write(frame)
        flushSoon()
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        keepaliveTimer?.cancel()
        keepaliveTimer = nil
        let frame: Wholecare_Rpc_V1_Frame
        do {
            frame = try Wholecare_Rpc_V1_Frame(frameBuffer: unwrapInboundIn(data))
        } catch {
            logger.warning("malformed frame from server; closing")
            context.close(promise: nil)
            return
        }
        switch frame.kind {
        case .response(let response):
            guard let call = calls.removeValue(forKey: frame.callID) else { return } // cancelled or expired
            call.timer?.cancel()
            if response.status == 0 {
                call.continuation.resume(returning: RawResponse(payload: response.payload, metadata: Metadata(entries: response.metadata)))
            } else {
                call.continuation.resume(throwing: RPCError(
                    code: RPCError.Code(rawValue: Int(response.status)), message: response.message,
                    metadata: Metadata(entries: response.metadata)))
            }
        case .hello(let hello):
            if hello.maxFrameSize > 0 { serverMaxFrameSize = Int(hello.maxFrameSize) }
        case .ping(let ping):
            var pong = Wholecare_Rpc_V1_Pong()
            pong.opaque = ping.opaque
            var out = Wholecare_Rpc_V1_Frame()
            out.pong = pong
            write(out)
            flushSoon()
        case .pong:
            break
        case .goaway(let goaway):
            goingAway = true
            onGoAway?()
            // Calls the server never started can safely go elsewhere: UNAVAILABLE.
            let status = RPCError.Code(rawValue: Int(goaway.status))
            for id in calls.keys where id > goaway.lastCallID {
                let call = calls.removeValue(forKey: id)!
                call.timer?.cancel()
                call.continuation.resume(throwing: RPCError(
                    code: .unavailable, message: "the server is going away (\(status)); the call was not started"))
            }
            if calls.isEmpty { context.close(promise: nil) }
        case .request, .cancel, nil:
            break
        }
        if goingAway && calls.isEmpty { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        keepaliveTimer?.cancel()
        let pending = calls
        calls.removeAll()
        for call in pending.values {
            call.timer?.cancel()
            call.continuation.resume(throwing: RPCError(code: .unavailable, message: "the connection to the server was lost"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("client connection error", metadata: ["error": "\(type(of: error))"])
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // Keepalive: ping, and close if the server does not answer in time.
        guard keepaliveTimer == nil else { return }
        pingCounter += 1
        var ping = Wholecare_Rpc_V1_Ping()
        ping.opaque = pingCounter
        var frame = Wholecare_Rpc_V1_Frame()
        frame.ping = ping
        write(frame)
        flushSoon()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        keepaliveTimer = context.eventLoop.scheduleTask(in: configuration.keepaliveTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    // MARK: - Writing

    private func write(_ frame: Wholecare_Rpc_V1_Frame) {
        guard let context, let buffer = try? FrameWriter.write(frame, allocator: context.channel.allocator) else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Coalesces flushes: every write in this loop tick goes out in one flush.
    private func flushSoon() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = loopBound.value
            handler.flushScheduled = false
            handler.unflushedCount = 0
            handler.context?.flush()
        }
    }
}

/// Set once by a call's task when it is cancelled, before the cancel is sent to the
/// connection's loop; read by the loop when it starts the call.
final class CallCancellation: Sendable {
    private let flag = Atomic<Bool>(false)
    var isCancelled: Bool { flag.load(ordering: .acquiring) }
    func cancel() { flag.store(true, ordering: .releasing) }
}
