import Foundation
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Requests and responses are protobuf messages in their JSON mapping: original
/// (snake_case) field names, 64-bit integers as JSON numbers, enums by name, defaults
/// omitted. Unknown fields in a request are refused. Responses are written by `FastJSON`.
enum ProtoJSON {
    static let encoding: JSONEncodingOptions = {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        options.alwaysPrintInt64sAsNumbers = true
        return options
    }()

    static let decoding: JSONDecodingOptions = {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = false
        options.messageDepthLimit = 20
        return options
    }()

    static func response(_ message: some SwiftProtobuf.Message, status: HTTPResponse.Status = .ok) throws -> Response {
        let bytes = try FastJSON.encode(message)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A response from an upstream reply's bytes, `M` encoded (see `WireJSON`).
    static func response<M: SwiftProtobuf.Message>(payload: Data, as type: M.Type, status: HTTPResponse.Status = .ok) throws -> Response {
        let bytes: [UInt8]
        do {
            bytes = try WireJSON.encode(payload, as: M.self)
        } catch is BinaryDecodingError {
            // As `RPCClient.unary` answers a reply it cannot decode.
            throw RPCError(code: .internal, message: "the response is not a valid \(M.protoMessageName)")
        }
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// Parses the request body; an empty body is an empty message.
    static func body<M: SwiftProtobuf.Message>(_ request: Request, context: GatewayContext, as type: M.Type, limit: Int) async throws -> M {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw Problem(status: .contentTooLarge, type: "body-too-large", title: "Content Too Large",
                          detail: "the request body is larger than \(limit) bytes")
        }
        if buffer.readableBytes == 0 { return M() }
        if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
            throw Problem(status: .unsupportedMediaType, type: "unsupported-media-type", title: "Unsupported Media Type",
                          detail: "send application/json")
        }
        do {
            return try M(jsonUTF8Bytes: Array(buffer.readableBytesView), options: decoding)
        } catch let error as JSONDecodingError {
            throw Problem.badRequest("the body is not a valid \(M.protoMessageName.split(separator: ".").last ?? "request"): \(describe(error))",
                                     field: "body")
        } catch {
            throw Problem.badRequest("the body is not valid JSON", field: "body")
        }
    }

    static func describe(_ error: JSONDecodingError) -> String {
        switch error {
        case .unknownField(let name): return "unknown field \(name.prefix(60))"
        case .malformedNumber, .numberRange: return "a number is malformed or out of range"
        case .unrecognizedEnumValue: return "an enum value is not one of the documented names"
        case .malformedString: return "a string is malformed"
        case .truncated: return "the JSON is truncated"
        case .schemaMismatch: return "a value has the wrong type"
        default: return "the JSON does not match the schema"
        }
    }
}
