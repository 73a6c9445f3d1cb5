import Foundation
import NIOCore
import NIOTestUtils
import RPCTransport
import Testing

@Suite("Frame decoder")
struct FrameDecoderTests {
    static func framed(_ bodies: [[UInt8]]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for body in bodies {
            buffer.writeInteger(UInt32(body.count))
            buffer.writeBytes(body)
        }
        return buffer
    }

    @Test("frames decode the same whether bytes arrive one at a time or in one batch")
    func byteAtATimeAndBatched() throws {
        let bodies: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300), [0xff]]
        let expected = bodies.map { ByteBuffer(bytes: $0) }
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [(Self.framed(bodies), expected)],
            decoderFactory: { FrameDecoder(maxFrameSize: 1024) })
    }

    @Test("a declared length over the limit is refused before the body arrives", arguments: [UInt32(1025), UInt32.max])
    func oversizeRefusedEarly(declared: UInt32) {
        var decoder = FrameDecoder(maxFrameSize: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(declared)  // only the header: no body bytes at all
        #expect(throws: FrameDecoder.Failure.frameTooLarge(declared: declared, limit: 1024)) {
            _ = try decoder.decode(buffer: &buffer)
        }
    }

    @Test("a frame exactly at the limit is accepted")
    func atLimit() throws {
        var decoder = FrameDecoder(maxFrameSize: 16)
        var buffer = Self.framed([Array(repeating: 1, count: 16)])
        #expect(try decoder.decode(buffer: &buffer)?.readableBytes == 16)
    }

    @Test("a stream ending inside a frame is reported as truncated")
    func truncated() throws {
        var decoder = FrameDecoder(maxFrameSize: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(10))
        buffer.writeBytes([1, 2, 3])
        #expect(try decoder.decode(buffer: &buffer) == nil)
        #expect(throws: FrameDecoder.Failure.truncatedFrame(buffered: 7)) {
            _ = try decoder.decodeLast(buffer: &buffer, seenEOF: true)
        }
    }

    @Test("a frame is refused when a later partial read shows its budget passed, not when its rest arrives in one read")
    func arrivalBudget() throws {
        let whole = Self.framed([Array(repeating: 5, count: 40)])
        // Trickled: 10 bytes, then more (still partial) once the budget has passed.
        var trickled = FrameDecoder(maxFrameSize: 1024, arrivalBudget: .milliseconds(50))
        var buffer = whole.getSlice(at: 0, length: 10)!
        #expect(try trickled.decode(buffer: &buffer) == nil)
        usleep(120_000)
        buffer.writeImmutableBuffer(whole.getSlice(at: 10, length: 5)!)
        #expect(throws: FrameDecoder.Failure.frameTooSlow) { _ = try trickled.decode(buffer: &buffer) }

        // The rest in one read after the same pause is served: the server may itself have
        // stopped reading (backpressure at the per-connection call limit), and a frame
        // already complete in the socket is not the peer's delay.
        var paused = FrameDecoder(maxFrameSize: 1024, arrivalBudget: .milliseconds(50))
        var parts = whole.getSlice(at: 0, length: 10)!
        #expect(try paused.decode(buffer: &parts) == nil)
        usleep(120_000)
        parts.writeImmutableBuffer(whole.getSlice(at: 10, length: whole.readableBytes - 10)!)
        #expect(try paused.decode(buffer: &parts)?.readableBytes == 40)
    }
}
