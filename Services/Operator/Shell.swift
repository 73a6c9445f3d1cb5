import Foundation

/// Runs external programs (PostgreSQL's binaries) for the operator CLI.
enum Shell {
    struct Failure: Error, CustomStringConvertible {
        let command: String
        let status: Int32
        let output: String
        var description: String { "\(command) exited with status \(status)\n\(output)" }
    }

    static var isRoot: Bool { getuid() == 0 }

    /// The unprivileged account that runs the local server when invoked as root
    /// (PostgreSQL refuses to run as root).
    static let databaseUser = "postgres"

    /// Runs a program and returns its combined output; throws on a non-zero exit.
    ///
    /// Uses `posix_spawn` and `waitpid` directly, with every descriptor above stderr closed
    /// in the child: a daemon the program starts (pg_ctl starts the server) must not
    /// inherit anything of ours, or waiting for the program would wait for the daemon.
    @discardableResult
    static func run(_ program: String, _ arguments: [String], asDatabaseUser: Bool = false, allowFailure: Bool = false) throws -> String {
        let argv = (asDatabaseUser && isRoot)
            ? ["/usr/sbin/runuser", "-u", databaseUser, "--", program] + arguments
            : [program] + arguments
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("wholecare-\(UUID().uuidString).out").path
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        closeFrom(3, in: &actions)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
        guard spawned == 0 else {
            throw Failure(command: argv[0], status: -1, output: String(cString: strerror(spawned)))
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        if exitStatus != 0 && !allowFailure {
            throw Failure(command: argv.prefix(argv.count - arguments.count + 1).joined(separator: " "), status: exitStatus, output: output)
        }
        return output
    }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34+), looked up at run time
    /// because the Swift overlay does not import it.
    private static func closeFrom(_ descriptor: Int32, in actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, descriptor)
    }

    /// Finds PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`).
    static func postgresBinDirectory() throws -> String {
        let fm = FileManager.default
        if let configured = ProcessInfo.processInfo.environment["PG_BINDIR"], fm.fileExists(atPath: configured + "/pg_ctl") {
            return configured
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where fm.fileExists(atPath: "\(root)/\(version)/bin/pg_ctl") {
            return "\(root)/\(version)/bin"
        }
        for candidate in ["/usr/local/pgsql/bin", "/usr/bin"] where fm.fileExists(atPath: candidate + "/pg_ctl") {
            return candidate
        }
        throw ValidationError("PostgreSQL server binaries not found; run `make deps` (installs the postgresql package) or set PG_BINDIR")
    }
}

import ArgumentParser
