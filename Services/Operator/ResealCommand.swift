import ArgumentParser
import Foundation
import Logging
import Postgres
import RecordsService
import ServiceKit
import WholeCareCrypto

/// `wholecare reseal-fields`: after a field-key rotation, seal the records service's stored
/// values again with the current key, so the old keys can be retired.
struct ResealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reseal-fields",
        abstract: "Re-seal the records service's encrypted fields with the current field key (after a rotation).",
        discussion: """
            Reads FIELD_ENCRYPTION_KEYS (the new key first, every old key after it) and \
            RECORDS_OWNER_DATABASE_URL (the records schema's owner: only it may replace the sealed text of \
            immutable entries). Safe while records runs, and to run again. Exit status: 0 when every value is \
            sealed with the current key (with --dry-run: when there is nothing to do); 2 when rows are left to \
            re-seal (changed meanwhile, or --dry-run found some): run again; 3 when values are sealed with a key \
            the list does not hold; 4 when a listed key does not open a value (damaged data: investigate, running \
            again will not help); 1 on any other error. Retire no key until a run exits 0.
            """)

    @Flag(help: "Only count what would be re-sealed; change nothing.")
    var dryRun = false

    @Option(help: "Rows read and written at a time.")
    var pageSize = 500

    @Option(help: "The records schema.")
    var schema = ServiceCatalog.records.schema!

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        guard (1...10_000).contains(pageSize) else { throw ValidationError("--page-size must be between 1 and 10000") }
        let environment = EnvironmentConfiguration()
        let cipher = try RecordsServiceApp.fieldCipher(environment)
        let client = PostgresClient(configuration: PostgresConfiguration(
            connectionString: try environment.databaseURL("RECORDS_OWNER_DATABASE_URL"), maxConnections: 1,
            applicationName: "wholecare-reseal", searchPath: schema))
        let report: RecordsStore.ResealReport
        do {
            report = try await RecordsStore(db: client, cipher: cipher).resealFields(pageSize: pageSize, dryRun: dryRun)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        let verb = dryRun ? "would re-seal" : "re-sealed"
        for table in ["entries", "goal_progress", "person_details"] {
            print("\(table): \(verb) \(report.resealed[table] ?? 0) row(s) with key \(cipher.currentKeyID)"
                  + ((report.unreadable[table] ?? 0) > 0 ? "; \(report.unreadable[table]!) sealed with a key not in FIELD_ENCRYPTION_KEYS" : ""))
        }
        for table in ["entries", "goal_progress", "person_details"] where (report.damaged[table] ?? 0) > 0 {
            print("\(table): \(report.damaged[table]!) row(s) whose key is listed but does not open them (damaged data): left as they are")
        }
        if report.changedMeanwhile > 0 {
            print("\(report.changedMeanwhile) row(s) changed while being re-sealed and were left for the next run")
        }
        if report.totalUnreadable > 0 {
            print("some values are sealed with keys not in FIELD_ENCRYPTION_KEYS: add those keys; do not retire any key yet")
            throw ExitCode(3)
        }
        if report.totalDamaged > 0 {
            print("some values are damaged: investigate them (running again will not help); do not retire any key yet")
            throw ExitCode(4)
        }
        if report.changedMeanwhile > 0 || (dryRun && report.totalResealed > 0) {
            print(dryRun ? "nothing was changed (dry run): run without --dry-run" : "not finished: run again before retiring any key")
            throw ExitCode(2)
        }
        print("every value is sealed with key \(cipher.currentKeyID)")
    }
}
