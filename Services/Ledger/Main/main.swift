import LedgerService

await LedgerServiceApp.main()
