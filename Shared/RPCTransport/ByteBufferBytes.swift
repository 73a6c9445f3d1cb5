import Foundation
import NIOCore
import SwiftProtobuf

/// Lets swift-protobuf parse straight out of a NIO buffer, without copying the frame.
struct ByteBufferBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }

    /// swift-protobuf calls this with the exact encoded size before serializing. Four
    /// extra bytes in front leave room for the frame's length prefix, so a frame is
    /// encoded straight into the buffer that goes to the socket.
    init(repeating: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: count + 4)
        buffer.writeRepeatingByte(0, count: 4)
        buffer.writeRepeatingByte(repeating, count: count)
        buffer.moveReaderIndex(forwardBy: 4)
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        buffer = ByteBuffer(bytes: Array(sequence))
    }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

extension Wholecare_Rpc_V1_Frame {
    init(frameBuffer: ByteBuffer) throws {
        try self.init(serializedBytes: ByteBufferBytes(frameBuffer))
    }

    /// A frame whose kind is not set: either empty (a protocol error) or a kind added in a
    /// later protocol version (carried as unknown fields).
    var isFromNewerProtocol: Bool { kind == nil && !unknownFields.data.isEmpty }
}

extension Metadata {
    init(entries: [Wholecare_Rpc_V1_MetadataEntry]) {
        self.init(entries.map { ($0.key, $0.value) })
    }

    var wireEntries: [Wholecare_Rpc_V1_MetadataEntry] {
        map { entry in
            var wire = Wholecare_Rpc_V1_MetadataEntry()
            wire.key = entry.key
            wire.value = entry.value
            return wire
        }
    }
}

import RPC
