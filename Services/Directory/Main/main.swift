import DirectoryService

await DirectoryServiceApp.main()
