import GatewayService

GatewayServiceApp.runTasksOnEventLoops()
await GatewayServiceApp.main()
