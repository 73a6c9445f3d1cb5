import Contracts
import Foundation
import Logging
import NIOCore
import NIOPosix
import RPC
import RPCTransport
import SwiftProtobuf
import TestSupport

/// A live RPC server on a free loopback port serving Echo (plus Health).
struct TestServer {
    let server: RPCServer
    let port: Int

    static func start(interceptors: [any ServerInterceptor] = [],
                      _ configure: (inout RPCServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        var router = RPCRouter()
        router.register(EchoService())
        router.interceptors = interceptors
        var configuration = RPCServerConfiguration(port: 0, serverName: "test")
        configure(&configuration)
        let server = RPCServer(configuration: configuration, router: router, logger: Logger(label: "test.rpc.server"))
        let port = try await server.start()
        return TestServer(server: server, port: port)
    }

    func client(connections: Int = 1, retryPolicy: RetryPolicy = .default,
                configure: (inout RPCClientConfiguration) -> Void = { _ in }) -> (Wholecare_Diagnostics_V1_Echo.Client, RPCClientTransport) {
        var configuration = RPCClientConfiguration(host: "127.0.0.1", port: port, connections: connections)
        // The whole suite shares two cores and one event-loop group: a loopback connect can
        // wait seconds for a busy loop, which is not what these tests are about.
        configuration.connectTimeout = .seconds(20)
        configure(&configuration)
        let transport = RPCClientTransport(configuration: configuration)
        return (Wholecare_Diagnostics_V1_Echo.Client(RPCClient(channel: transport, retryPolicy: retryPolicy)), transport)
    }
}

func echoRequest(_ text: String) -> Wholecare_Diagnostics_V1_EchoRequest {
    var request = Wholecare_Diagnostics_V1_EchoRequest()
    request.text = text
    return request
}


/// A blocking raw TCP connection for feeding the server exactly the bytes a test wants.
/// Tests call its blocking reads through `offThread`.
final class RawConnection: @unchecked Sendable {
    let fd: Int32

    /// `receiveBuffer` shrinks the socket's receive buffer (before connecting, so that the
    /// window the server sees is small too): a client that is slow to read.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends all of `bytes`. A blocking send returns early, having sent only part, when a
    /// signal arrives meanwhile (the suite's other tests start processes, whose SIGCHLD can
    /// land on this thread): it goes on with the rest.
    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var sent = 0
            while sent < buffer.count {
                let n = Glibc.send(fd, base + sent, buffer.count - sent, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    sent += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return  // the server closed the connection: what a test checks next says so
                }
            }
        }
    }

    func send(frame: Wholecare_Rpc_V1_Frame) throws {
        let body: [UInt8] = try frame.serializedBytes()
        send(Self.lengthPrefix(body.count) + body)
    }

    static func lengthPrefix(_ length: Int) -> [UInt8] {
        let n = UInt32(length)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
    }

    func sendHello() async throws {
        var hello = Wholecare_Rpc_V1_Hello()
        hello.version = 1
        hello.agent = "raw-test"
        var frame = Wholecare_Rpc_V1_Frame()
        frame.hello = hello
        try send(frame: frame)
        guard case .hello = try await nextFrame()?.kind else { throw POSIXError(.EPROTO) }
    }

    /// `recv`, tried again when a signal interrupts it: with a receive timeout set, a signal
    /// makes recv fail with EINTR even where the handler asks for restarts (signal(7)), and
    /// that is not the end of the stream.
    private func receive(into buffer: UnsafeMutableRawPointer, _ count: Int, flags: Int32 = 0) -> Int {
        while true {
            let n = recv(fd, buffer, count, flags)
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    private func readExactly(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { receive(into: $0.baseAddress! + got, count - got) }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    /// The next frame, or nil when the server closed the connection (or 30 s passed).
    func readFrame() throws -> Wholecare_Rpc_V1_Frame? {
        guard let header = readExactly(4) else { return nil }
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard let body = readExactly(length) else { return nil }
        return try Wholecare_Rpc_V1_Frame(serializedBytes: body)
    }

    /// The next frame, read on a thread of its own.
    func nextFrame() async throws -> Wholecare_Rpc_V1_Frame? {
        try await offThread { try self.readFrame() }
    }

    /// True once bytes from the server are waiting to be read (looked at, not taken), false
    /// when it closed first or 30 s passed; waits on a thread of its own.
    func dataArrives() async -> Bool {
        (try? await offThread { () -> Bool in
            var byte: UInt8 = 0
            return self.receive(into: &byte, 1, flags: Int32(MSG_PEEK)) > 0
        }) ?? false
    }

    /// True when the server has closed its side, read on a thread of its own.
    func closedByServer() async -> Bool {
        (try? await offThread { self.isClosedByServer() }) ?? false
    }

    /// True when the server has closed its side (reads return end-of-file).
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = receive(into: &byte, 1)
            if n == 0 { return true }
            if n < 0 { return false }
        }
    }

    static func request(id: UInt64, method: String, message: some SwiftProtobuf.Message, timeoutMicros: UInt64 = 0) throws -> Wholecare_Rpc_V1_Frame {
        var request = Wholecare_Rpc_V1_Request()
        request.method = method
        request.payload = try message.serializedBytes()
        request.timeoutMicros = timeoutMicros
        var frame = Wholecare_Rpc_V1_Frame()
        frame.callID = id
        frame.request = request
        return frame
    }
}
