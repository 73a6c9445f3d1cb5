import ArgumentParser
import Foundation
import ServiceKit

/// `wholecare db start|stop|status`: the embedded local PostgreSQL cluster.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Manage the embedded local PostgreSQL cluster under .data/.",
        subcommands: [Start.self, Stop.self, Status.self])

    struct ClusterOptions: ParsableArguments {
        @Option(help: "Directory that holds local clusters.")
        var dataDir: String = ".data"
        @Option(help: "Cluster name: `dev` for `make run`, `test` for `make test`.")
        var cluster: String = "dev"
        @Option(help: "TCP port on 127.0.0.1 (default: 54329 for dev, 54339 for test).")
        var port: Int?

        var localCluster: LocalCluster {
            let root = URL(fileURLWithPath: dataDir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
                .standardizedFileURL
            return LocalCluster(root: root, name: cluster, port: port ?? (cluster == "test" ? 54339 : 54329))
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the cluster (initdb on first use), bootstrap roles and schemas, write <data-dir>/<cluster>/env. "
                + "With DATABASE_URL set, bootstrap that server instead of starting a local one.")
        @OptionGroup var options: ClusterOptions
        @Flag(help: "Throw away any existing cluster of this name first.")
        var fresh = false

        func run() async throws {
            let cluster = options.localCluster
            if let external = ProcessInfo.processInfo.environment["DATABASE_URL"], !external.isEmpty {
                try await ExternalServer.bootstrap(adminURL: external, cluster: cluster)
                print("bootstrapped the server at DATABASE_URL; settings in \(cluster.envFile.path)")
                return
            }
            let secrets = try cluster.start(fresh: fresh, durable: options.cluster != "test")
            try await cluster.bootstrapAndWriteEnvironment(secrets: secrets)
            print("PostgreSQL (\(options.cluster)) ready on 127.0.0.1:\(cluster.port); settings in \(cluster.envFile.path)")
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the cluster (data is kept unless --remove).")
        @OptionGroup var options: ClusterOptions
        @Flag(help: "Delete the cluster's files after stopping.")
        var remove = false

        func run() throws {
            let cluster = options.localCluster
            try cluster.stop()
            if remove {
                try? FileManager.default.removeItem(at: cluster.serverDirectory)
                try? FileManager.default.removeItem(at: cluster.directory)
            }
            print("PostgreSQL (\(options.cluster)) stopped")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Say whether the cluster is running.")
        @OptionGroup var options: ClusterOptions

        func run() throws {
            let cluster = options.localCluster
            if cluster.isRunning {
                print("running on 127.0.0.1:\(cluster.port) (data in \(cluster.dataDirectory.path))")
            } else {
                print("not running")
                throw ExitCode(3)
            }
        }
    }
}

/// An operator's own server given by `DATABASE_URL` (a superuser or CREATEROLE URL).
enum ExternalServer {
    static func bootstrap(adminURL: String, cluster: LocalCluster) async throws {
        let secrets = try cluster.loadOrCreateSecrets()
        try await Bootstrapper.run(adminURL: adminURL, database: cluster.database, passwords: secrets)
        var lines = [
            "# Written by `wholecare db start` for DATABASE_URL. Contains secrets; do not commit.",
            "WHOLECARE_ADMIN_DATABASE_URL=\(Bootstrapper.replacingDatabase(in: adminURL, with: cluster.database))",
        ]
        for service in ServiceCatalog.withSchemas {
            let prefix = service.name.uppercased()
            lines.append("\(prefix)_DATABASE_URL=\(Bootstrapper.url(from: adminURL, user: service.appRole!, password: secrets[service.appRole!]!, database: cluster.database))")
            lines.append("\(prefix)_OWNER_DATABASE_URL=\(Bootstrapper.url(from: adminURL, user: service.ownerRole!, password: secrets[service.ownerRole!]!, database: cluster.database))")
        }
        lines += cluster.applicationEnvironment(secrets: secrets)
        FileManager.default.createFile(
            atPath: cluster.envFile.path, contents: Data((lines.joined(separator: "\n") + "\n").utf8),
            attributes: [.posixPermissions: 0o600])
    }
}
