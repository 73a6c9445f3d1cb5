import ServiceKit
import Testing

@Suite("Environment configuration")
struct ConfigurationTests {
    @Test("a missing required variable is named in the error")
    func missing() {
        let env = EnvironmentConfiguration([:])
        let error = #expect(throws: ConfigurationError.self) { try env.require("DATABASE_URL") }
        #expect(error?.description == "configuration error: DATABASE_URL is required but not set")
    }

    @Test("malformed values are refused with the variable's name and never its value", arguments: [
        ("IDENTITY_RPC_PORT", "seventy", "must be a whole number"),
        ("IDENTITY_RPC_PORT", "70000", "must be between 1 and 65535"),
        ("LOG_JSON", "perhaps", "must be true or false"),
        ("TIMEOUT", "5 parsecs", "must be a duration"),
        ("DATABASE_URL", "mysql://root:hunter2@db/x", "must be a postgresql:// URL"),
    ])
    func malformed(name: String, value: String, problem: String) {
        let env = EnvironmentConfiguration([name: value])
        let error = #expect(throws: ConfigurationError.self) {
            switch name {
            case "LOG_JSON": _ = try env.bool(name, default: false)
            case "TIMEOUT": _ = try env.duration(name, default: .seconds(1))
            case "DATABASE_URL": _ = try env.databaseURL(name)
            default: _ = try env.port(name, default: 7101)
            }
        }
        #expect(error?.description.contains(name) == true)
        #expect(error?.description.contains(problem) == true)
        #expect(error?.description.contains(value) == false)
    }

    @Test("durations and defaults parse")
    func parses() throws {
        let env = EnvironmentConfiguration(["A": "250ms", "B": "2m", "P": "7201"])
        #expect(try env.duration("A", default: .zero) == .milliseconds(250))
        #expect(try env.duration("B", default: .zero) == .seconds(120))
        #expect(try env.duration("C", default: .seconds(9)) == .seconds(9))
        #expect(try env.port("P", default: 1) == 7201)
        #expect(try env.port("Q", default: 7101) == 7101)
    }
}

@Suite("Service catalog and bootstrap")
struct BootstrapTests {
    @Test("every service with a schema gets an owner and an app role, and ports follow the convention")
    func catalog() {
        #expect(ServiceCatalog.withSchemas.map(\.name) == ["identity", "records", "ledger", "engagement", "directory"])
        #expect(ServiceCatalog.all.map(\.defaultPort) == [7101, 7102, 7103, 7104, 7105, 8080])
        #expect(ServiceCatalog.identity.defaultAdminPort == 8101)
        #expect(DatabaseBootstrap.roleNames.count == 10)
        // Dependencies only point backwards in start-up order.
        for (index, service) in ServiceCatalog.all.enumerated() {
            let earlier = Set(ServiceCatalog.all.prefix(index).map(\.name))
            #expect(Set(service.dependsOn).isSubset(of: earlier), "\(service.name)")
        }
    }

    @Test("the bootstrap script quotes passwords and grants only DML to app roles")
    func script() throws {
        var passwords: [String: String] = [:]
        for role in DatabaseBootstrap.roleNames { passwords[role] = "pw'\(role)" }
        let sql = try DatabaseBootstrap(database: "wholecare", passwords: passwords).script()
        #expect(sql.contains("PASSWORD 'pw''wc_identity_app'"))
        #expect(sql.contains("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"))
        #expect(sql.contains("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"wc_records_app\""))
        #expect(!sql.contains("GRANT ALL"))
        #expect(!sql.contains("GRANT CREATE"))
        passwords.removeValue(forKey: "wc_ledger_app")
        #expect(throws: ConfigurationError.self) { try DatabaseBootstrap(database: "wholecare", passwords: passwords).script() }
    }
}

import Foundation
import RPC

@Suite("Calendar dates")
struct CalendarDateTests {
    @Test("parsing refuses impossible dates and keeps leap years right", arguments: [
        ("2024-02-29", true), ("2023-02-29", false), ("2100-02-29", false), ("2000-02-29", true), ("2026-04-31", false),
        ("2026-13-01", false), ("2026-1-01", false), ("26-01-01", false), ("2026-12-31", true),
    ])
    func parsing(text: String, valid: Bool) {
        #expect((CalendarDate(text) != nil) == valid)
        if valid { #expect(CalendarDate(text)?.description == text) }
    }

    @Test("day arithmetic round-trips through the epoch and agrees with Foundation")
    func arithmetic() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var day = CalendarDate("1899-12-25")!
        for _ in 0..<400 {
            let next = day.adding(days: 97)
            #expect(day.days(until: next) == 97)
            let c = calendar.dateComponents([.year, .month, .day], from: next.date)
            #expect(c.year == next.year && c.month == next.month && c.day == next.day)
            #expect(CalendarDate(next.date) == next)
            day = next
        }
        #expect(CalendarDate("2026-11-01")!.adding(days: 28).description == "2026-11-29")
    }

    @Test("UUID helpers: lower-case text matches Foundation's, random ids are version 4")
    func uuids() {
        for _ in 0..<100 {
            let id = UUID.random()
            #expect(id.lowercasedString == id.uuidString.lowercased())
            #expect(Array(id.lowercasedString)[14] == "4")
        }
    }
}
