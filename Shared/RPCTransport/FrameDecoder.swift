import NIOCore

/// Splits the byte stream into frames: a 4-byte big-endian length, then that many bytes.
///
/// The declared length is checked against the limit as soon as the four length bytes are
/// visible, before any of the body is buffered, so a peer cannot make the server hold
/// more than `maxFrameSize` bytes per connection. A frame must also arrive in full within
/// `arrivalBudget` of its first byte: a peer trickling a frame one byte at a time is
/// dropped when its next byte shows the budget has passed (a peer that goes silent
/// mid-frame is dropped by the idle timeout).
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameSize: Int
    public let arrivalBudget: TimeAmount
    private var partialSince: NIODeadline?

    public init(maxFrameSize: Int, arrivalBudget: TimeAmount = .seconds(10)) {
        self.maxFrameSize = maxFrameSize
        self.arrivalBudget = arrivalBudget
    }

    public enum Failure: Error, Equatable {
        /// The declared length exceeds the limit.
        case frameTooLarge(declared: UInt32, limit: Int)
        /// A frame took longer than the arrival budget.
        case frameTooSlow
        /// The stream ended inside a frame.
        case truncatedFrame(buffered: Int)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            try notePartial(buffer)
            return nil
        }
        guard length <= maxFrameSize else {
            throw Failure.frameTooLarge(declared: length, limit: maxFrameSize)
        }
        guard buffer.readableBytes >= 4 + Int(length) else {
            try notePartial(buffer)
            return nil
        }
        buffer.moveReaderIndex(forwardBy: 4)
        partialSince = nil
        return buffer.readSlice(length: Int(length))
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if buffer.readableBytes > 0 { throw Failure.truncatedFrame(buffered: buffer.readableBytes) }
        return nil
    }

    private mutating func notePartial(_ buffer: ByteBuffer) throws {
        guard buffer.readableBytes > 0 else {
            partialSince = nil
            return
        }
        let now = NIODeadline.now()
        if let since = partialSince {
            if now - since > arrivalBudget { throw Failure.frameTooSlow }
        } else {
            partialSince = now
        }
    }
}

/// Writes frames with their length prefix.
enum FrameWriter {
    static func write(_ frame: Wholecare_Rpc_V1_Frame, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let encoded: ByteBufferBytes = try frame.serializedBytes()
        var buffer = encoded.buffer
        let length = buffer.readableBytes
        buffer.moveReaderIndex(to: 0)
        buffer.setInteger(UInt32(length), at: 0)
        return buffer
    }
}
