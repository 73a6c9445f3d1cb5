import Foundation

/// Starts child processes, prefixes their output, and stops them in reverse order.
final class Supervisor: @unchecked Sendable {
    private struct Child {
        let name: String
        let process: Process
    }

    private let lock = NSLock()
    private var children: [Child] = []
    private let shutdown = DispatchSemaphore(value: 0)
    private var shuttingDown = false
    private let outputLock = NSLock()

    func start(name: String, executable: String, environment: [String: String], colour: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let prefix = Data("\(colour)\(name.padding(toLength: 10, withPad: " ", startingAt: 0))|\u{1B}[0m ".utf8)
        let pending = LineBuffer()
        pipe.fileHandleForReading.readabilityHandler = { [outputLock] handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            let out = pending.completeLines(appending: chunk, prefix: prefix)
            if !out.isEmpty { outputLock.withLock { FileHandle.standardOutput.write(out) } }
        }
        process.terminationHandler = { [weak self] process in
            guard let self else { return }
            let expected = self.lock.withLock { self.shuttingDown }
            if !expected {
                FileHandle.standardError.write(Data("\(name) exited unexpectedly (status \(process.terminationStatus)); stopping the suite\n".utf8))
                self.shutdown.signal()
            }
        }
        try process.run()
        lock.withLock { children.append(Child(name: name, process: process)) }
    }

    /// Polls `GET /readyz` on the admin port until it answers 200 or time runs out.
    func waitUntilReady(name: String, port: Int, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ shuttingDown }) { return false }
            if let child = lock.withLock({ children.first { $0.name == name } }), !child.process.isRunning { return false }
            if HTTPProbe.status(host: "127.0.0.1", port: port, path: "/readyz") == 200 { return true }
            usleep(100_000)
        }
        return false
    }

    func waitForShutdownOrExit() {
        shutdown.wait()
    }

    func requestShutdown() {
        shutdown.signal()
    }

    /// SIGTERM each child, last started first, waiting up to 10 s each before SIGKILL.
    func stopAll() {
        let toStop = lock.withLock { () -> [Child] in
            shuttingDown = true
            return children.reversed()
        }
        for child in toStop where child.process.isRunning {
            kill(child.process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while child.process.isRunning && Date() < deadline { usleep(50_000) }
            if child.process.isRunning {
                kill(child.process.processIdentifier, SIGKILL)
                child.process.waitUntilExit()
            }
            outputLock.withLock { FileHandle.standardOutput.write(Data("stopped \(child.name)\n".utf8)) }
        }
    }

    nonisolated(unsafe) private static var installed: Supervisor?
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func installSignalHandlers(_ supervisor: Supervisor) {
        installed = supervisor
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { supervisor.requestShutdown() }
            source.resume()
            sources.append(source)
        }
    }
}

/// Accumulates a child's output and hands back whole lines, each with a prefix.
final class LineBuffer: @unchecked Sendable {
    private var pending = Data()

    /// Called from one readability handler at a time (FileHandle serialises them).
    func completeLines(appending chunk: Data, prefix: Data) -> Data {
        pending.append(chunk)
        var out = Data()
        while let newline = pending.firstIndex(of: 0x0a) {
            out.append(prefix)
            out.append(pending[pending.startIndex...newline])
            pending.removeSubrange(pending.startIndex...newline)
        }
        return out
    }
}

/// A minimal blocking HTTP/1.1 GET, enough to poll health endpoints on loopback.
enum HTTPProbe {
    static func status(host: String, port: Int, path: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count > 12 else { return nil }
        let line = String(decoding: buffer[0..<count], as: UTF8.self)
        let parts = line.split(separator: " ")
        return parts.count >= 2 ? Int(parts[1]) : nil
    }
}
