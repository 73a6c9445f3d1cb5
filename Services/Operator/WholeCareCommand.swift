import ArgumentParser

@main
struct WholeCareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wholecare",
        abstract: "Operate a WholeCare installation: local database, migrations, demo data.",
        subcommands: [DatabaseCommand.self, BootstrapCommand.self, MigrateCommand.self, SeedCommand.self, UpCommand.self, CreateAdminCommand.self, GenerateKeyCommand.self, ResealCommand.self])
}
