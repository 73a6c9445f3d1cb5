import GatewayService

await GatewayServiceApp.main()
