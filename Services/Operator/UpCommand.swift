import ArgumentParser
import Foundation
import ServiceKit

/// `wholecare up`: start every executable of the suite with prefixed, coloured log lines,
/// wait until each is ready, print where the gateway listens, and on Ctrl-C (or SIGTERM)
/// stop them in reverse order. Deliberately small: no restarts, no scaling.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up", abstract: "Run the whole suite in the foreground (what `make run` uses).")

    @Option(help: "Directory holding the built executables.")
    var binDir: String
    @Option(help: "Environment file written by `wholecare db start` (database URLs).")
    var envFile: String = ".data/dev/env"
    @Option(help: "Seconds to wait for each service to become ready.")
    var readyTimeout: Int = 60
    @Flag(help: "Load the demo data once everything is ready (what `make run` does).")
    var seed = false

    func run() async throws {
        let fileEnv = try Self.readEnvironmentFile(envFile)
        let supervisor = Supervisor()
        Supervisor.installSignalHandlers(supervisor)
        let colours = ["\u{1B}[36m", "\u{1B}[33m", "\u{1B}[35m", "\u{1B}[32m", "\u{1B}[34m", "\u{1B}[31m"]
        let started = Date()
        for (index, service) in ServiceCatalog.all.enumerated() {
            var env = ProcessInfo.processInfo.environment.merging(fileEnv) { _, file in file }
            if service.schema != nil { env["DATABASE_URL"] = fileEnv[service.name.uppercased() + "_DATABASE_URL"] }
            if let secret = fileEnv[service.name.uppercased() + "_SERVICE_CLIENT_SECRET"] { env["SERVICE_CLIENT_SECRET"] = secret }
            env["LOG_FORMAT"] = env["LOG_FORMAT"] ?? "text"
            // Local development is plain HTTP on loopback: session cookies cannot be Secure there.
            if service.name == "gateway" { env["GATEWAY_SECURE_COOKIES"] = env["GATEWAY_SECURE_COOKIES"] ?? "false" }
            let executable = URL(fileURLWithPath: binDir).appendingPathComponent(service.name).path
            guard FileManager.default.isExecutableFile(atPath: executable) else {
                supervisor.stopAll()
                throw ValidationError("\(executable) is missing: build first (`make build`)")
            }
            try supervisor.start(
                name: service.name, executable: executable, environment: env, colour: colours[index % colours.count])
            // The same rule the services use: <NAME>_ADMIN_PORT, else <NAME>_RPC_PORT + 1000.
            let prefix = service.name.uppercased()
            let adminPort = Int(env["\(prefix)_ADMIN_PORT"] ?? "")
                ?? Int(env["\(prefix)_RPC_PORT"] ?? "").map { $0 + 1000 } ?? service.defaultAdminPort
            guard supervisor.waitUntilReady(name: service.name, port: adminPort, timeout: TimeInterval(readyTimeout)) else {
                FileHandle.standardError.write(Data("\(service.name) did not become ready within \(readyTimeout)s; stopping\n".utf8))
                supervisor.stopAll()
                throw ExitCode(1)
            }
        }
        let gatewayPort = fileEnv["GATEWAY_RPC_PORT"] ?? ProcessInfo.processInfo.environment["GATEWAY_RPC_PORT"] ?? "8080"
        let elapsed = String(format: "%.1f", Date().timeIntervalSince(started))
        var demo: [String] = []
        if seed {
            do {
                var environment = ProcessInfo.processInfo.environment
                environment.merge(fileEnv) { _, file in file }
                demo = try await DemoSeed(environment: environment, stateFile: URL(fileURLWithPath: envFile).deletingLastPathComponent()
                    .appendingPathComponent("demo")).run()
            } catch {
                FileHandle.standardError.write(Data("demo data could not be loaded: \(error)\n".utf8))
            }
        }
        FileHandle.standardOutput.write(Data("""

            WholeCare is running (ready in \(elapsed)s).
              Gateway:  http://127.0.0.1:\(gatewayPort)/
            \(demo.map { "  " + $0 }.joined(separator: "\n"))
              Press Ctrl-C to stop everything.


            """.utf8))
        supervisor.waitForShutdownOrExit()
        supervisor.stopAll()
    }

    static func readEnvironmentFile(_ path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read \(path): start the database first (`make db`)")
        }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }
}
