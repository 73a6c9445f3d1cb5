import ArgumentParser
import Foundation
import Postgres
import ServiceKit
import IdentityService
import WholeCareCrypto

/// A private PostgreSQL cluster under `.data/<name>/`, started from the machine's own
/// binaries. When the CLI runs as root, the server runs as the unprivileged `postgres`
/// account; if that account cannot reach `.data/` (a checkout under /root), the cluster
/// lives under /var/tmp and `.data/<name>/pgdata` is a symbolic link to it.
struct LocalCluster {
    let root: URL
    let name: String
    let port: Int
    let database = "wholecare"
    let superuser = "wholecare_admin"

    var directory: URL { root.appendingPathComponent(name) }
    var dataDirectoryLink: URL { directory.appendingPathComponent("pgdata") }
    var secretsFile: URL { directory.appendingPathComponent("secrets") }
    var envFile: URL { directory.appendingPathComponent("env") }
    var logFile: URL { serverDirectory.appendingPathComponent("server.log") }

    /// The directory the server process owns (pgdata, socket, log).
    var serverDirectory: URL {
        if Shell.isRoot && !databaseUserCanReach(directory) {
            let digest = Hex.encode(Array(Digest.sha256(directory.standardizedFileURL.path).prefix(6)))
            return URL(fileURLWithPath: "/var/tmp/wholecare-\(digest)-\(name)")
        }
        return directory.appendingPathComponent("server")
    }

    var dataDirectory: URL { serverDirectory.appendingPathComponent("pgdata") }

    var socketDirectory: URL {
        let preferred = serverDirectory.appendingPathComponent("socket")
        // Unix socket paths are limited to ~107 bytes including the file name.
        if preferred.path.utf8.count < 80 { return preferred }
        return URL(fileURLWithPath: "/tmp/wholecare-\(getuid())-\(port)")
    }

    func databaseUserCanReach(_ url: URL) -> Bool {
        // Walk up to the first existing ancestor and ask whether the account can pass
        // through it; the CLI (as root) creates and hands over the directories below.
        var probe = url
        while !FileManager.default.fileExists(atPath: probe.path) { probe.deleteLastPathComponent() }
        return (try? Shell.run("/usr/bin/test", ["-x", probe.path], asDatabaseUser: true)) != nil
    }

    // MARK: - Secrets

    /// Secrets generated once per cluster and kept in `secrets` (mode 600): passwords for
    /// the superuser and every service role, identity's signing key, each service's client
    /// secret, and the field-encryption key. Missing entries are added; existing ones kept.
    func loadOrCreateSecrets() throws -> [String: String] {
        let fm = FileManager.default
        var values: [String: String] = [:]
        if let text = try? String(contentsOf: secretsFile, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
            }
        }
        let before = values
        var wanted = [superuser] + DatabaseBootstrap.roleNames
        wanted += ServiceCatalog.all.filter { $0.name != "identity" }.map { "service-secret.\($0.name)" }
        for name in wanted where values[name] == nil { values[name] = SecureRandom.token(byteCount: name.hasPrefix("service") ? 32 : 18) }
        if values["identity-signing-keys"] == nil {
            values["identity-signing-keys"] = SigningKeyring.generateEntry(kid: "k\(Int(Date().timeIntervalSince1970))")
        }
        if values["field-encryption-keys"] == nil {
            values["field-encryption-keys"] = "f\(Int(Date().timeIntervalSince1970)):" + Base64URL.encode(SecureRandom.bytes(32))
        }
        if values != before {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            let text = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") + "\n"
            fm.createFile(atPath: secretsFile.path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        }
        return values
    }

    /// The application settings (not database URLs) every process reads.
    func applicationEnvironment(secrets: [String: String]) -> [String] {
        var lines = [
            "IDENTITY_SIGNING_KEYS=\(secrets["identity-signing-keys"]!)",
            "FIELD_ENCRYPTION_KEYS=\(secrets["field-encryption-keys"]!)",
        ]
        let clients = ServiceCatalog.all.filter { $0.name != "identity" }
        lines.append("IDENTITY_SERVICE_CLIENTS=" + clients.map { "svc-\($0.name):\(secrets["service-secret.\($0.name)"]!)" }.joined(separator: ","))
        for service in clients {
            lines.append("\(service.name.uppercased())_SERVICE_CLIENT_SECRET=\(secrets["service-secret.\(service.name)"]!)")
        }
        if name == "test" {
            // Tests hash passwords with cheap scrypt costs; nothing else ever does.
            lines.append("IDENTITY_PASSWORD_HASH_PROFILE=test")
        }
        return lines
    }

    func url(user: String, password: String, database: String? = nil) -> String {
        "postgresql://\(user):\(password)@127.0.0.1:\(port)/\(database ?? self.database)"
    }

    // MARK: - Lifecycle

    var isRunning: Bool {
        guard let bin = try? Shell.postgresBinDirectory(),
              FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path)
        else { return false }
        let output = (try? Shell.run(bin + "/pg_ctl", ["status", "-D", dataDirectory.path], asDatabaseUser: true, allowFailure: true)) ?? ""
        return output.contains("server is running")
    }

    func start(fresh: Bool, durable: Bool) throws -> [String: String] {
        let fm = FileManager.default
        let bin = try Shell.postgresBinDirectory()
        if fresh {
            try? stop()
            try? fm.removeItem(at: serverDirectory)
            try? fm.removeItem(at: directory)
        }
        let secrets = try loadOrCreateSecrets()
        if !fm.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path) {
            try initialize(bin: bin, password: secrets[superuser]!, durable: durable)
        }
        try fm.createDirectory(at: socketDirectory, withIntermediateDirectories: true)
        if Shell.isRoot { try Shell.run("/bin/chown", [Shell.databaseUser, socketDirectory.path]) }
        if !isRunning {
            do {
                try Shell.run(bin + "/pg_ctl", [
                    "start", "-w", "-t", "60", "-D", dataDirectory.path, "-l", logFile.path,
                    "-o", "-p \(port) -k \(socketDirectory.path)",
                ], asDatabaseUser: true)
            } catch {
                // pg_ctl only says "examine the log output": show the end of it.
                let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
                let tail = log.split(separator: "\n").suffix(10).joined(separator: "\n")
                throw Shell.Failure(command: "pg_ctl start (log: \(logFile.path))", status: (error as? Shell.Failure)?.status ?? 1, output: tail)
            }
        }
        return secrets
    }

    private func initialize(bin: String, password: String, durable: Bool) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: serverDirectory, withIntermediateDirectories: true)
        if serverDirectory.path != directory.appendingPathComponent("server").path {
            // Point .data/<name>/server at the real location for people looking in .data/.
            let link = directory.appendingPathComponent("server")
            try? fm.removeItem(at: link)
            try? fm.createSymbolicLink(at: link, withDestinationURL: serverDirectory)
        }
        let passwordFile = serverDirectory.appendingPathComponent("initdb-password")
        fm.createFile(atPath: passwordFile.path, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600])
        defer { try? fm.removeItem(at: passwordFile) }
        if Shell.isRoot { try Shell.run("/bin/chown", ["-R", Shell.databaseUser, serverDirectory.path]) }
        try Shell.run(bin + "/initdb", [
            "-D", dataDirectory.path, "-U", superuser, "--pwfile=\(passwordFile.path)",
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        ], asDatabaseUser: true)
        // 600 connections: `make test` runs ~150 tests in parallel, each harness with pools
        // of its own, and was measured peaking at 296 (of the 300 this used to allow).
        var settings = """

            # --- WholeCare local cluster (written by `wholecare db start`) ---
            listen_addresses = '127.0.0.1'
            port = \(port)
            max_connections = 600
            shared_buffers = 128MB
            fsync = on
            log_min_messages = warning
            log_min_error_statement = panic
            log_connections = off

            """
        if !durable {
            // The throwaway test cluster trades crash durability for speed; fsync stays on
            // so a test never sees behaviour a real server would not show.
            settings += "synchronous_commit = off\n"
        }
        let conf = dataDirectory.appendingPathComponent("postgresql.conf")
        let handle = try FileHandle(forWritingTo: conf)
        handle.seekToEndOfFile()
        handle.write(Data(settings.utf8))
        try handle.close()
    }

    func stop() throws {
        let bin = try Shell.postgresBinDirectory()
        guard FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent("PG_VERSION").path) else { return }
        try Shell.run(bin + "/pg_ctl", ["stop", "-w", "-m", "fast", "-D", dataDirectory.path], asDatabaseUser: true, allowFailure: true)
    }

    /// Creates the database if needed, runs the bootstrap, and writes the env file.
    func bootstrapAndWriteEnvironment(secrets: [String: String]) async throws {
        let adminURL = url(user: superuser, password: secrets[superuser]!, database: "postgres")
        try await Bootstrapper.run(adminURL: adminURL, database: database, passwords: secrets)
        var lines = [
            "# Written by `wholecare db start` for the \(name) cluster. Contains secrets; do not commit.",
            "WHOLECARE_DB_PORT=\(port)",
            "WHOLECARE_ADMIN_DATABASE_URL=\(url(user: superuser, password: secrets[superuser]!))",
        ]
        for service in ServiceCatalog.withSchemas {
            let prefix = service.name.uppercased()
            lines.append("\(prefix)_DATABASE_URL=\(url(user: service.appRole!, password: secrets[service.appRole!]!))")
            lines.append("\(prefix)_OWNER_DATABASE_URL=\(url(user: service.ownerRole!, password: secrets[service.ownerRole!]!))")
        }
        lines += applicationEnvironment(secrets: secrets)
        FileManager.default.createFile(
            atPath: envFile.path, contents: Data((lines.joined(separator: "\n") + "\n").utf8),
            attributes: [.posixPermissions: 0o600])
    }
}
