import RecordsService

await RecordsServiceApp.main()
