import Foundation
import Synchronization

/// Starts `rpc-bench serve KIND PORT` as a child process and waits for "ready".
final class ServerProcess {
    let process = Process()
    let port: Int

    init(kind: ServerKind, port: Int) throws {
        self.port = port
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        process.arguments = ["serve", kind.rawValue, String(port)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        var seen = Data()
        while !(String(decoding: seen, as: UTF8.self).contains("ready")) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { throw NSError(domain: "rpc-bench", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(kind) server exited"]) }
            seen.append(chunk)
        }
    }

    /// Resident set size in KiB, from /proc.
    var residentKiB: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// CPU seconds the server process has used (user + system).
    var cpuSeconds: Double {
        let stat = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8)) ?? ""
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

func selfCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func freePort() -> Int { Int.random(in: 20_000...40_000) }

enum Compare {
    struct Row {
        let name: String
        let one: LoadResult
        let many: LoadResult
    }

    static func run(seconds: Double) async throws {
        var rows: [Row] = []
        for kind in [ServerKind.wholecare, .grpc, .nio] {
            let server = try ServerProcess(kind: kind, port: freePort())
            defer { server.stop() }
            let one: LoadResult
            let many: LoadResult
            switch kind {
            case .wholecare:
                let client = WholeCareLoad.make(port: server.port)
                _ = try await AsyncLoad.run(inflight: 8, seconds: 1, call: client.call)  // warm-up
                one = try await AsyncLoad.run(inflight: 1, seconds: seconds, executor: client.executor, call: client.call)
                let serverBefore = server.cpuSeconds, clientBefore = selfCPUSeconds()
                many = try await AsyncLoad.run(inflight: 64, seconds: seconds, executor: client.executor, call: client.call)
                let serverCPU = server.cpuSeconds - serverBefore, clientCPU = selfCPUSeconds() - clientBefore
                FileHandle.standardError.write(Data(String(
                    format: "wholecare 64 in flight: server %.1f µs CPU/call, client %.1f µs CPU/call\n",
                    serverCPU / Double(many.calls) * 1e6, clientCPU / Double(many.calls) * 1e6).utf8))
                await client.close()
            case .grpc:
                one = try await GRPCLoad.run(port: server.port, inflight: 1, seconds: seconds)
                many = try await GRPCLoad.run(port: server.port, inflight: 64, seconds: seconds)
            case .nio:
                _ = try await NIOFloorLoad.run(port: server.port, inflight: 8, seconds: 1)
                one = try await NIOFloorLoad.run(port: server.port, inflight: 1, seconds: seconds)
                many = try await NIOFloorLoad.run(port: server.port, inflight: 64, seconds: seconds)
            }
            rows.append(Row(name: kind.title, one: one, many: many))
            FileHandle.standardError.write(Data("measured \(kind.rawValue)\n".utf8))
        }
        print("| implementation | 1 in flight: calls/s | p50 µs | p99 µs | 64 in flight: calls/s | p50 µs | p99 µs |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows {
            print("| \(row.name) | \(fmt(row.one.callsPerSecond)) | \(fmt(row.one.percentile(0.5))) | \(fmt(row.one.percentile(0.99))) "
                  + "| \(fmt(row.many.callsPerSecond)) | \(fmt(row.many.percentile(0.5))) | \(fmt(row.many.percentile(0.99))) |")
        }
        let ours = rows[0], grpc = rows[1], nio = rows[2]
        print("")
        print("- 64 in flight, WholeCare ÷ grpc-swift-2: **\(String(format: "%.1f", ours.many.callsPerSecond / grpc.many.callsPerSecond))×** (target ≥ 15×)")
        print("- 1 in flight, WholeCare p50 ÷ bare NIO p50: **\(String(format: "%.2f", ours.one.percentile(0.5) / nio.one.percentile(0.5)))×** (target ≤ 2×)")
    }

    static func fmt(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }
}

extension ServerKind {
    var title: String {
        switch self {
        case .wholecare: return "WholeCare RPC (this project)"
        case .grpc: return "grpc-swift-2 2.4.3, HTTP/2 plaintext"
        case .nio: return "bare SwiftNIO length-prefixed echo (floor)"
        }
    }
}

enum MemoryCheck {
    static func run(calls: Int) async throws {
        let server = try ServerProcess(kind: .wholecare, port: freePort())
        defer { server.stop() }
        let client = WholeCareLoad.make(port: server.port)
        _ = try await AsyncLoad.run(inflight: 64, seconds: 2, executor: client.executor, call: client.call)
        let before = server.residentKiB
        let counter = SharedCounter()
        let call = client.call
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<64 {
                group.addTask(executorPreference: client.executor) {
                    while counter.next() < calls { try await call() }
                }
            }
            try await group.waitForAll()
        }
        let afterCalls = server.residentKiB
        await client.close()
        // Bad peers: oversize, garbage and empty frames, each on a fresh connection.
        for i in 0..<3_000 {
            let bytes: [UInt8]
            switch i % 3 {
            case 0: bytes = [0xff, 0xff, 0xff, 0xff]
            case 1: bytes = [0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]
            default: bytes = [0, 0, 0, 0]
            }
            sendRaw(port: server.port, hello: i % 2 == 0, bytes: bytes)
        }
        try await Task.sleep(for: .seconds(1))
        let afterBad = server.residentKiB
        print("| server RSS | KiB |")
        print("|---|---:|")
        print("| after warm-up | \(before) |")
        print("| after \(calls) calls (64 in flight) | \(afterCalls) |")
        print("| after 3,000 malformed-frame connections | \(afterBad) |")
        print("")
        print("- growth across the calls: **\(String(format: "%.1f", Double(afterCalls - before) / 1024)) MiB**; across the bad frames: **\(String(format: "%.1f", Double(afterBad - afterCalls) / 1024)) MiB** (target: within 10 MB)")
    }

    static func sendRaw(port: Int, hello: Bool, bytes: [UInt8]) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let helloFrame: [UInt8] = [0, 0, 0, 4, 0x12, 0x02, 0x08, 0x01]
        let all = (hello ? helloFrame : []) + bytes
        _ = all.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 256)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while recv(fd, &buffer, buffer.count, 0) > 0 {}
    }
}

final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
}
