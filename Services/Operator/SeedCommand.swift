import ArgumentParser

/// `wholecare seed`: demo data (filled in as each service lands).
struct SeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed", abstract: "Load idempotent demo data into the running services.")

    func run() async throws {
        print("no demo data yet: the identity, records and ledger services add theirs as they land")
    }
}
