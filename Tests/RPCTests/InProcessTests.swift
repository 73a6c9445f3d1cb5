import Contracts
import Foundation
import Logging
import RPC
import Testing

@Suite("Router and in-process transport")
struct InProcessTests {
    struct DomainError: RPCErrorConvertible {
        var rpcErrorCode: RPCError.Code { .failedPrecondition }
        var rpcErrorMessage: String { "the budget would go overdrawn" }
    }

    struct Leaky: Error, CustomStringConvertible {
        var description: String { "SELECT * FROM people WHERE nhs = '943 476 5919'" }
    }

    struct Service: Wholecare_Diagnostics_V1_Echo.ServiceProtocol {
        func echo(request: Wholecare_Diagnostics_V1_EchoRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_EchoResponse {
            switch request.text {
            case "domain": throw DomainError()
            case "leak": throw Leaky()
            default:
                var response = Wholecare_Diagnostics_V1_EchoResponse()
                response.text = context.metadata["x-who"] ?? ""
                return response
            }
        }
        func sleep(request: Wholecare_Diagnostics_V1_SleepRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_SleepResponse { .init() }
        func fail(request: Wholecare_Diagnostics_V1_FailRequest, context: ServerContext) async throws -> Wholecare_Diagnostics_V1_FailResponse { .init() }
    }

    static func client(interceptors: [any ServerInterceptor] = []) -> Wholecare_Diagnostics_V1_Echo.Client {
        var router = RPCRouter()
        router.register(Service())
        router.interceptors = interceptors
        return Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: InProcessChannel(router: router)))
    }

    @Test("domain errors keep their status; unknown errors become a generic INTERNAL")
    func errorMapping() async throws {
        let client = Self.client()
        let domain = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("domain")) }
        #expect(domain?.code == .failedPrecondition)
        #expect(domain?.message == "the budget would go overdrawn")
        let leak = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("leak")) }
        #expect(leak?.code == .internal)
        #expect(leak?.message == "internal error")
    }

    @Test("metadata keys are case-insensitive")
    func metadataCaseInsensitive() async throws {
        let client = Self.client()
        let response = try await client.echo(echoRequest("x"), options: CallOptions(metadata: ["X-Who": "coordinator"]))
        #expect(response.text == "coordinator")
        var metadata: Metadata = ["Authorization": "Bearer t"]
        #expect(metadata["AUTHORIZATION"] == "Bearer t")
        metadata["authorization"] = nil
        #expect(metadata.isEmpty)
        #expect(!Metadata([("Trace-ID", "abc")]).description.contains("abc"))
    }

    @Test("server interceptors run in order around the handler and can refuse a call")
    func interceptors() async throws {
        struct Gate: ServerInterceptor {
            func intercept(_ request: RawRequest, context: ServerContext, next: RPCRouter.Handler) async throws -> RawResponse {
                guard request.metadata[MetadataKey.authorization] != nil else {
                    throw RPCError(code: .unauthenticated, message: "missing credentials")
                }
                return try await next(request, context)
            }
        }
        let client = Self.client(interceptors: [Gate()])
        let refused = await #expect(throws: RPCError.self) { try await client.echo(echoRequest("x")) }
        #expect(refused?.code == .unauthenticated)
        _ = try await client.echo(echoRequest("x"), options: CallOptions(metadata: ["authorization": "Bearer t"]))
    }

    @Test("the seventeen status codes keep gRPC's numbers and names")
    func statusCodes() {
        let names = RPCError.Code.all.map(\.name)
        #expect(names == ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                          "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                          "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"])
        #expect(RPCError.Code(rawValue: 42) == .unknown)
        #expect(RPCError.Code.unauthenticated.rawValue == 16)
    }
}
