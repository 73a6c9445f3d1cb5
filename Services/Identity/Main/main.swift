import IdentityService

await IdentityServiceApp.main()
