import Foundation
import Logging
import NIOCore
import RPC

/// One server-side connection: checks the hello, starts a task per request (at most
/// `maxConcurrentCallsPerConnection` at once; the rest wait in arrival order), routes
/// cancels and pings, writes responses (coalescing flushes), applies backpressure, and
/// drains on shutdown. Lives on its channel's event loop.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let router: RPCRouter
    private let configuration: RPCServerConfiguration
    private var logger: Logger
    private let peer: String

    private var context: ChannelHandlerContext?
    private var executor: EventLoopExecutor?
    private var helloReceived = false
    private var helloTimer: Scheduled<Void>?
    /// A running call: its task, and the timer that answers DEADLINE_EXCEEDED and cancels
    /// the task if the deadline passes first.
    private struct RunningCall {
        /// Tells this call from a later one that reuses its id.
        let number: UInt64
        let task: Task<Void, Never>
        let deadlineTimer: Scheduled<Void>?

        func cancel() {
            task.cancel()
            deadlineTimer?.cancel()
        }
    }
    private var calls: [UInt64: RunningCall] = [:]
    private var callNumbers: UInt64 = 0
    /// Calls already answered or given up (their deadline passed, the client sent Cancel)
    /// whose handlers, cancelled, have not finished yet, by number: they still count
    /// against the connection's limit, and a drain waits for them.
    private var unfinished: Set<UInt64> = []
    /// Calls running or still finishing.
    private var inFlight: Int { calls.count + unfinished.count }
    /// Requests that arrived while the connection already ran its limit of calls (one
    /// socket read cycle can carry many frames); started in arrival order as calls
    /// finish. Reading stops while any wait, so the queue holds at most what one read
    /// cycle delivered (`maxMessagesPerRead` reads). A cancelled waiting call leaves
    /// `waitingIDs` at once and is skipped when its turn comes (the number tells a
    /// cancelled entry from a later call that reuses its id).
    private var waiting = CircularBuffer<(id: UInt64, number: UInt64, request: Wholecare_Rpc_V1_Request, arrival: ContinuousClock.Instant)>()
    private var waitingIDs: [UInt64: UInt64] = [:]
    private var arrivals: UInt64 = 0
    private var highestCallID: UInt64 = 0
    private var draining = false
    private var closing = false
    private var readPending = false
    private var inReadCycle = false
    private var flushScheduled = false
    private var unflushed = false
    private var unflushedCount = 0
    static let flushBatch = 16

    init(router: RPCRouter, configuration: RPCServerConfiguration, logger: Logger, peer: String) {
        self.router = router
        self.configuration = configuration
        self.logger = logger
        self.peer = peer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if configuration.runHandlersOnEventLoop { executor = EventLoopExecutor(eventLoop: context.eventLoop) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        helloTimer = context.eventLoop.scheduleTask(in: configuration.helloTimeout) {
            let handler = loopBoundSelf.value
            if !handler.helloReceived { handler.fail(.deadlineExceeded, "no hello received in time") }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloTimer?.cancel()
        for call in calls.values { call.cancel() }
        calls.removeAll()
        unfinished.removeAll()
        waiting.removeAll()
        waitingIDs.removeAll()
        context.fireChannelInactive()
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        inReadCycle = true
        let buffer = unwrapInboundIn(data)
        let frame: Wholecare_Rpc_V1_Frame
        do {
            frame = try Wholecare_Rpc_V1_Frame(frameBuffer: buffer)
        } catch {
            fail(.invalidArgument, "malformed frame: not a valid wholecare.rpc.v1.Frame")
            return
        }
        guard helloReceived else {
            guard case .hello(let hello) = frame.kind else {
                fail(.failedPrecondition, "the first frame must be a hello")
                return
            }
            guard hello.version == RPCProtocol.version else {
                fail(.unimplemented, "protocol version \(hello.version) is not supported; this server speaks \(RPCProtocol.version)")
                return
            }
            helloReceived = true
            helloTimer?.cancel()
            var reply = Wholecare_Rpc_V1_Hello()
            reply.version = RPCProtocol.version
            reply.agent = "wholecare-swift/\(configuration.serverName)"
            reply.maxFrameSize = UInt32(configuration.maxFrameSize)
            reply.maxConcurrentCalls = UInt32(configuration.maxConcurrentCallsPerConnection)
            var out = Wholecare_Rpc_V1_Frame()
            out.hello = reply
            write(out)
            return
        }
        switch frame.kind {
        case .request(let request):
            receiveCall(id: frame.callID, request: request)
        case .cancel:
            if let call = calls[frame.callID] {
                abandon(frame.callID, call)
                startWaitingCalls()
                resumeReadingIfPossible()
                closeIfDrained()
            } else if waitingIDs.removeValue(forKey: frame.callID) != nil {
                resumeReadingIfPossible()
                closeIfDrained()
            }
        case .ping(let ping):
            var pong = Wholecare_Rpc_V1_Pong()
            pong.opaque = ping.opaque
            var out = Wholecare_Rpc_V1_Frame()
            out.pong = pong
            write(out)
        case .pong:
            break
        case .goaway:
            // The client is leaving: finish what is in flight, then close.
            draining = true
            closeIfDrained()
        case .hello:
            fail(.invalidArgument, "hello sent twice")
        case .response:
            fail(.invalidArgument, "clients do not send responses")
        case nil:
            if frame.isFromNewerProtocol {
                // A frame kind from a later protocol version: answer calls, ignore the rest.
                if frame.callID != 0 { respond(id: frame.callID, .failure(RPCError(code: .unimplemented, message: "unknown frame kind"))) }
            } else {
                fail(.invalidArgument, "empty frame")
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadCycle = false
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure: while the connection has as many calls as it may run, or the
        // client is not reading what it is sent (the socket's send buffer is full), do not
        // ask the socket for more; TCP flow control then slows the client down. Else a
        // client that never reads could make the server keep its replies (to pings, too)
        // without limit.
        if mayRead {
            context.read()
        } else {
            readPending = true
        }
    }

    private var mayRead: Bool {
        !closing && inFlight + waitingIDs.count < configuration.maxConcurrentCallsPerConnection && (context?.channel.isWritable ?? true)
    }

    private func resumeReadingIfPossible() {
        guard readPending, mayRead, let context else { return }
        readPending = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible()
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Calls

    /// A request frame: refused, started, or (at the concurrency limit) queued. Its
    /// deadline runs from arrival, so time spent waiting counts against it.
    private func receiveCall(id: UInt64, request: Wholecare_Rpc_V1_Request) {
        guard id != 0 else {
            fail(.invalidArgument, "call id 0 is reserved for connection frames")
            return
        }
        guard calls[id] == nil, waitingIDs[id] == nil else {
            fail(.invalidArgument, "call id \(id) is already in flight on this connection")
            return
        }
        if draining {
            respond(id: id, .failure(RPCError(code: .unavailable, message: "the server is shutting down; retry on another connection")))
            return
        }
        // Refused before it is kept (queued) or made into `Metadata`.
        guard request.metadata.count <= RPCProtocol.maxMetadataEntries,
              request.metadata.reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count }) <= RPCProtocol.maxMetadataBytes else {
            respond(id: id, .failure(RPCError(code: .invalidArgument, message:
                "too much metadata: at most \(RPCProtocol.maxMetadataEntries) entries and \(RPCProtocol.maxMetadataBytes) bytes")))
            return
        }
        highestCallID = max(highestCallID, id)
        if inFlight < configuration.maxConcurrentCallsPerConnection && waitingIDs.isEmpty {
            startCall(id: id, request: request, arrival: .now)
        } else {
            arrivals += 1
            waiting.append((id, arrivals, request, .now))
            waitingIDs[id] = arrivals
        }
    }

    private func startWaitingCalls() {
        while inFlight < configuration.maxConcurrentCallsPerConnection, let next = waiting.popFirst() {
            // Skipped if it was cancelled while waiting.
            guard waitingIDs[next.id] == next.number else { continue }
            waitingIDs.removeValue(forKey: next.id)
            // Its caller has stopped waiting already: answer without starting it.
            if next.request.timeoutMicros != 0,
               next.arrival + .microseconds(Int64(clamping: next.request.timeoutMicros)) <= .now {
                respond(id: next.id, .failure(RPCError(code: .deadlineExceeded, message: "the deadline passed before the call started")))
                continue
            }
            startCall(id: next.id, request: next.request, arrival: next.arrival)
        }
        if waitingIDs.isEmpty { waiting.removeAll(keepingCapacity: true) }
    }

    private func startCall(id: UInt64, request: Wholecare_Rpc_V1_Request, arrival: ContinuousClock.Instant) {
        guard let context else { return }
        let deadline = request.timeoutMicros == 0 ? nil : arrival + .microseconds(Int64(clamping: request.timeoutMicros))
        var metadata = Metadata(entries: request.metadata)
        // A trace id is logged and passed on: one that is not a plain short id is dropped.
        if let trace = metadata[MetadataKey.traceID], !MetadataKey.isValidTraceID(trace) { metadata.remove(MetadataKey.traceID) }
        // The context adds method and trace id to the logger only when something logs.
        let serverContext = ServerContext(
            method: request.method, metadata: metadata, deadline: deadline, peer: peer, logger: logger)
        let raw = RawRequest(method: request.method, metadata: metadata, payload: request.payload)
        let router = router
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        callNumbers += 1
        let number = callNumbers
        // The deadline is enforced here, by a timer on this loop (see `deadlinePassed`).
        let body: @Sendable () async -> Void = {
            let result = await router.handle(raw, context: serverContext, enforcingDeadline: false)
            if eventLoop.inEventLoop {
                loopBound.value.finish(id: id, number: number, result: result)
            } else {
                eventLoop.execute { loopBound.value.finish(id: id, number: number, result: result) }
            }
        }
        let task = executor.map { Task(executorPreference: $0, operation: body) } ?? Task(operation: body)
        var timer: Scheduled<Void>?
        if let deadline {
            // At most a year away: a longer timeout_micros is answered DEADLINE_EXCEEDED
            // after a year (and cannot overflow the timer's arithmetic).
            let left = min(max(.zero, deadline - .now), .seconds(365 * 86_400)).components
            let amount = TimeAmount.nanoseconds(left.seconds * 1_000_000_000 + left.attoseconds / 1_000_000_000)
            timer = eventLoop.scheduleTask(in: amount) { loopBound.value.deadlinePassed(id: id, number: number) }
        }
        // The task runs later (never inside this call), so it always finds itself here.
        calls[id] = RunningCall(number: number, task: task, deadlineTimer: timer)
    }

    /// Gives up on a running call: its task is cancelled and it counts as unfinished
    /// until the task ends.
    private func abandon(_ id: UInt64, _ call: RunningCall) {
        calls.removeValue(forKey: id)
        call.cancel()
        unfinished.insert(call.number)
    }

    /// The caller stops waiting at its deadline: it gets DEADLINE_EXCEEDED now and the
    /// handler's task is cancelled (its result, if it still comes, is dropped).
    private func deadlinePassed(id: UInt64, number: UInt64) {
        guard let call = calls[id], call.number == number else { return }
        abandon(id, call)
        respond(id: id, .failure(RPCError(code: .deadlineExceeded, message: "deadline exceeded")))
        callEnded()
    }

    private func finish(id: UInt64, number: UInt64, result: Result<RawResponse, RPCError>) {
        if unfinished.remove(number) != nil {
            // Answered or given up already: the result is dropped, the slot is free.
            startWaitingCalls()
            resumeReadingIfPossible()
            closeIfDrained()
            return
        }
        guard let call = calls[id], call.number == number else { return }
        calls.removeValue(forKey: id)
        call.deadlineTimer?.cancel()
        respond(id: id, result)
        callEnded()
    }

    private func callEnded() {
        startWaitingCalls()
        // Nothing else is running on this connection: there is nothing to batch with, so
        // send now rather than a loop tick later (this is most of a lone call's latency).
        if calls.isEmpty { flushIfNeeded() }
        resumeReadingIfPossible()
        closeIfDrained()
    }

    private func respond(id: UInt64, _ result: Result<RawResponse, RPCError>) {
        var response = Wholecare_Rpc_V1_Response()
        switch result {
        case .success(let raw):
            response.status = 0
            response.payload = raw.payload
            if !raw.metadata.isEmpty { response.metadata = raw.metadata.wireEntries }
        case .failure(let error):
            response.status = UInt32(error.code.rawValue)
            response.message = error.message
            if !error.metadata.isEmpty { response.metadata = error.metadata.wireEntries }
        }
        var frame = Wholecare_Rpc_V1_Frame()
        frame.callID = id
        frame.response = response
        write(frame)
    }

    // MARK: - Writing

    private func write(_ frame: Wholecare_Rpc_V1_Frame) {
        guard let context, !closing else { return }
        do {
            let buffer = try FrameWriter.write(frame, allocator: context.channel.allocator)
            context.write(wrapOutboundOut(buffer), promise: nil)
            unflushed = true
            unflushedCount += 1
        } catch {
            logger.error("could not encode a frame")
            return
        }
        // Flush in small batches so the client can start on the first responses while
        // the rest are still being produced (pipelining), but never a syscall per frame.
        if unflushedCount >= Self.flushBatch {
            flushIfNeeded()
            return
        }
        if inReadCycle { return } // channelReadComplete flushes.
        // Responses finishing outside a read cycle are coalesced: one flush per loop tick.
        if !flushScheduled {
            flushScheduled = true
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let handler = loopBound.value
                handler.flushScheduled = false
                handler.flushIfNeeded()
            }
        }
    }

    private func flushIfNeeded() {
        guard unflushed, let context else { return }
        unflushed = false
        unflushedCount = 0
        context.flush()
    }

    // MARK: - Errors, idleness, shutdown

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case FrameDecoder.Failure.frameTooLarge(let declared, let limit):
            fail(.resourceExhausted, "frame of \(declared) bytes exceeds the limit of \(limit) bytes")
        case FrameDecoder.Failure.frameTooSlow:
            fail(.deadlineExceeded, "a frame took too long to arrive")
        case FrameDecoder.Failure.truncatedFrame:
            context.close(promise: nil)
        case let error as ByteToMessageDecoderError where "\(error)".contains("PayloadTooLarge"):
            fail(.resourceExhausted, "frame exceeds the size limit")
        default:
            logger.info("closing connection after an error", metadata: ["error": "\(type(of: error))"])
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if inFlight == 0 && waitingIDs.isEmpty {
                sendGoAway(.ok, "idle timeout")
                closing = true
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Sends GOAWAY (status and reason) and closes the connection.
    private func fail(_ code: RPCError.Code, _ reason: String) {
        guard let context, !closing else { return }
        logger.info("closing connection", metadata: ["status": "\(code)", "reason": "\(reason)"])
        sendGoAway(code, reason)
        closing = true
        for call in calls.values { call.cancel() }
        calls.removeAll()
        unfinished.removeAll()
        waiting.removeAll()
        waitingIDs.removeAll()
        closeAfterWrites(context)
    }

    private func sendGoAway(_ code: RPCError.Code, _ reason: String) {
        guard let context else { return }
        var goaway = Wholecare_Rpc_V1_GoAway()
        goaway.lastCallID = highestCallID
        goaway.status = UInt32(code.rawValue)
        goaway.reason = reason
        var frame = Wholecare_Rpc_V1_Frame()
        frame.goaway = goaway
        if let buffer = try? FrameWriter.write(frame, allocator: context.channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }

    /// Graceful shutdown: tell the client which calls will still be answered, finish
    /// them, then close.
    func beginDrain() {
        guard !draining, !closing else { return }
        draining = true
        sendGoAway(.ok, "server shutting down")
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard draining, inFlight == 0, waitingIDs.isEmpty, let context, !closing else { return }
        closing = true
        flushIfNeeded()
        closeAfterWrites(context)
    }

    /// Closes once everything written so far has reached the socket (NIO drops writes
    /// still pending when a channel closes: the last replies, a GOAWAY), or after `grace`
    /// if the client does not read them (`closeGrace`).
    private func closeAfterWrites(_ context: ChannelHandlerContext) {
        let grace = configuration.closeGrace
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        let channel = context.channel
        let timer = context.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
        written.futureResult.whenComplete { _ in
            timer.cancel()
            channel.close(promise: nil)
        }
    }
}
