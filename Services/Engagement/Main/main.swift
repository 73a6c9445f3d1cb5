import EngagementService

await EngagementServiceApp.main()
