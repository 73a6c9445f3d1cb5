import GatewayService
import ServiceKit
import Testing

@Suite("Gateway settings")
struct GatewaySettingsTests {
    @Test("the upstream call budget defaults to 5 s, is read from GATEWAY_CALL_BUDGET, and odd values are refused by name")
    func callBudget() throws {
        #expect(try GatewaySettings(environment: EnvironmentConfiguration([:])).callBudget == .seconds(5))
        #expect(try GatewaySettings(environment: EnvironmentConfiguration(["GATEWAY_CALL_BUDGET": "1500ms"])).callBudget == .milliseconds(1500))
        #expect(try GatewaySettings(environment: EnvironmentConfiguration(["GATEWAY_CALL_BUDGET": "2m"])).callBudget == .seconds(120))
        for bad in ["50ms", "10m", "soon", "-1s"] {
            let error = #expect(throws: ConfigurationError.self) {
                _ = try GatewaySettings(environment: EnvironmentConfiguration(["GATEWAY_CALL_BUDGET": bad]))
            }
            #expect(error?.variable == "GATEWAY_CALL_BUDGET", "\(bad)")
        }
    }
}
