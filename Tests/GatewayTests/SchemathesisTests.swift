import Foundation
import GatewayService
import HTTPTypes
import ServiceTestSupport
import Testing

/// Property-based conformance: schemathesis (from PyPI, installed by `make deps`) reads the
/// gateway's own `/openapi.json` and throws generated requests at the live gateway in front
/// of the real services and database, with every default check and every phase (examples,
/// coverage, fuzzing, stateful links). Zero failures is the bar.
@Suite("OpenAPI conformance")
struct SchemathesisTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("schemathesis finds no failure with all default checks against the live gateway")
    func schemathesis() async throws {
        let environment = ProcessInfo.processInfo.environment
        let st = environment["WHOLECARE_SCHEMATHESIS"]
            ?? Self.repository.appendingPathComponent(".data/pytools/schemathesis/bin/st").path
        try #require(FileManager.default.isExecutableFile(atPath: st), "schemathesis is missing at \(st): run `make deps`")

        // Sign-in limits stay on, just high enough for a fuzzer that registers and signs in a lot.
        try await GatewayHarness.with(settings: { $0.authAttemptsPerMinute = 10_000 }) { h in
            // A person, a care coordinator with a care relationship to them, a funded budget:
            // enough that generated requests reach real data, not only 404s.
            let admin = try await h.suite.identity.admin()
            let council = try await h.suite.identity.organisation("Northshire Council", admin: admin)
            let coordinator = try await h.suite.identity.professional("cc@northshire.test", org: council,
                                                                      roles: ["care_coordinator"], admin: admin)
            let person = try await h.register("fuzz.person@example.org")
            let assigned = try await h.call(.post, "/v1/admin/care-relationships", token: admin,
                                            json: ["person_id": person.id, "professional_id": coordinator.id, "role": "CARE_COORDINATOR"])
            #expect(assigned.status == .created, "\(assigned.text)")
            let budget = try await h.call(.post, "/v1/people/\(person.id)/budgets", token: coordinator.token,
                                          json: ["funder_organisation_id": council, "name": "Personal budget 2026/27"])
            #expect(budget.status == .created, "\(budget.text)")
            let budgetID = budget.json["id"] as? String ?? ""
            let funded = try await h.call(.post, "/v1/budgets/\(budgetID)/allocations", token: coordinator.token,
                                          json: ["amount_pence": 1_000_000], headers: [HTTPField.Name("Idempotency-Key")!: "fuzz-funding"])
            #expect(funded.status == .created, "\(funded.text)")

            let port = try #require(h.client.port)
            let workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("schemathesis-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: workDirectory) }
            let output = workDirectory.appendingPathComponent("output.txt")

            var childEnvironment = environment
            childEnvironment["WC_PERSON_TOKEN"] = person.token
            childEnvironment["WC_COORDINATOR_TOKEN"] = coordinator.token
            childEnvironment["WC_ADMIN_TOKEN"] = admin
            childEnvironment["WC_PERSON_ID"] = person.id
            childEnvironment["WC_BUDGET_ID"] = budgetID
            childEnvironment["WC_COUNCIL_ID"] = council
            childEnvironment["NO_COLOR"] = "1"
            childEnvironment["COLUMNS"] = "160"
            let seed = environment["WHOLECARE_SCHEMATHESIS_SEED"] ?? "20261126"
            let status = try await Self.run(st, arguments: [
                "--config-file", Self.repository.appendingPathComponent("Services/Gateway/OpenAPI/schemathesis.toml").path,
                "run", "http://127.0.0.1:\(port)/openapi.json",
                "--seed", seed,
                "--report", "junit", "--report-dir", workDirectory.path,
            ], environment: childEnvironment, output: output, in: workDirectory)
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            // The summary goes to the test log either way, so a green run still shows what was exercised;
            // a red run shows every failure with its curl reproduction.
            print(status == 0 ? text.split(separator: "\n").suffix(30).joined(separator: "\n") : text)
            #expect(status == 0, "schemathesis exited with \(status); output above")
        }
    }

    /// Runs a child process without blocking a cooperative thread, its output into a file.
    static func run(_ executable: String, arguments: [String], environment: [String: String], output: URL,
                    in directory: URL) async throws -> Int32 {
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardOutput = handle
        process.standardError = handle
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
    }
}
