import Foundation
import HTTPTypes
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The executables together, as operators run them: the gateway in front, the services
/// behind it over the RPC layer, a provider system calling RPC directly with the C client.
/// Serialized: each test runs six processes of its own.
@Suite("Services together (real executables)", .serialized)
struct IntegrationTests {
    /// An organisation, a professional in it with a care relationship to a new person.
    struct CareSetting {
        let admin: String
        let person: (token: String, id: String)
        let organisationID: String
        let coordinator: String
        let coordinatorName: String
    }

    static func careSetting(_ stack: Stack, organisation: String = "Northshire Council", kind: String = "COUNCIL") async throws -> CareSetting {
        let admin = try await stack.administrator()
        let person = try await stack.register("Pat")
        let org = try await stack.call(.post, "/v1/admin/organisations", token: admin,
                                       json: ["name": "\(organisation) \(UUID().uuidString.prefix(6))", "kind": kind])
        #expect(org.status == .created, "\(org.text)")
        let organisationID = try #require(org.json["id"] as? String)
        let email = "coordinator-\(UUID().uuidString.prefix(8).lowercased())@northshire.test"
        let password = "tangerine piano voyage meadow"
        let professional = try await stack.call(.post, "/v1/admin/organisations/\(organisationID)/professionals", token: admin, json: [
            "email": email, "display_name": "Chris Coordinator", "roles": ["care_coordinator"], "initial_password": password,
        ])
        #expect(professional.status == .created, "\(professional.text)")
        let professionalID = try #require(professional.json["id"] as? String)
        let assigned = try await stack.call(.post, "/v1/admin/care-relationships", token: admin,
                                            json: ["person_id": person.id, "professional_id": professionalID, "role": "CARE_COORDINATOR"])
        #expect(assigned.status == .created, "\(assigned.text)")
        return CareSetting(admin: admin, person: person, organisationID: organisationID,
                           coordinator: try await stack.signIn(email, password), coordinatorName: "Chris Coordinator")
    }

    /// Polls the gateway's `/readyz` (each check has a one-second budget per service, which
    /// a loaded machine can miss once) until it answers `status`, for up to 30 s.
    static func readiness(of stack: Stack, becomes status: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if (try? await HTTP.status(port: stack.gatewayPort, path: "/readyz")) == status { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test("a coordinator's entry, written through the gateway, reaches the person's record, and the person sees who wrote it and why")
    func coordinatorEntryReachesPerson() async throws {
        try await Stack.with { stack in
            let setting = try await Self.careSetting(stack)
            let purpose = "Review visit"
            let added = try await stack.call(.post, "/v1/people/\(setting.person.id)/record/entries?purpose=Review%20visit",
                                             token: setting.coordinator,
                                             json: ["kind": "ENCOUNTER", "effective_start": "2026-11-20", "text": "Home visit; Pat is managing well."])
            #expect(added.status == .created, "\(added.text)")

            let entries = try await stack.call(.get, "/v1/me/record/entries", token: setting.person.token)
            #expect(entries.status == .ok)
            let visit = (entries.json["entries"] as? [[String: Any]] ?? []).first { $0["kind"] as? String == "ENCOUNTER" }
            #expect(visit?["text"] as? String == "Home visit; Pat is managing well.", "\(entries.text)")
            let source = visit?["source"] as? [String: Any] ?? [:]
            #expect(source["organisation_id"] as? String == setting.organisationID, "\(source)")
            #expect((source["display"] as? String)?.contains(setting.coordinatorName) == true, "\(source)")

            // The summary's care team, from records' own copy: its follower caught up with
            // identity's feed under the executables' real credentials, and never failed.
            let deadline = ContinuousClock.now + .seconds(20)
            var team: [[String: Any]] = []
            while ContinuousClock.now < deadline {
                let summary = try await stack.call(.get, "/v1/me/record", token: setting.person.token)
                team = summary.json["care_team"] as? [[String: Any]] ?? []
                if stack.log("records").contains("care-team copy caught up with identity"), !team.isEmpty { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(team.map { $0["name"] as? String } == [setting.coordinatorName], "\(team)")
            #expect(stack.log("records").contains("care-team copy caught up with identity"))
            #expect(!stack.log("records").contains("could not follow identity's care-team changes"))
            // Operators see when the copy last caught up, and that no sync failed.
            let metrics = try await HTTP.request(port: stack.ports["records"]!.admin, method: .get, path: "/metrics").text
            let caughtUp = metrics.split(separator: "\n").first { $0.hasPrefix("records_care_team_copy_caught_up_timestamp_seconds ") }
            let at = caughtUp.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            #expect(abs(at - Date().timeIntervalSince1970) < 30, "\(caughtUp ?? "no gauge")")
            let failed = try #require(metrics.split(separator: "\n").first { $0.hasPrefix("records_care_team_sync_failures_total ") })
            #expect(Double(failed.split(separator: " ").last ?? "") == 0, "\(failed)")
            // And a summary asks identity nothing: identity's count of ListCareTeam calls
            // (which records made before it kept a copy) does not move.
            func listCareTeamCalls() async throws -> Double {
                let text = try await HTTP.request(port: stack.ports["identity"]!.admin, method: .get, path: "/metrics").text
                return text.split(separator: "\n").filter { $0.hasPrefix("rpc_server_requests_total{") && $0.contains("ListCareTeam\"") }
                    .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
            }
            let callsBefore = try await listCareTeamCalls()
            let again = try await stack.call(.get, "/v1/me/record", token: setting.person.token)
            #expect((again.json["care_team"] as? [[String: Any]])?.count == 1)
            #expect(try await listCareTeamCalls() == callsBefore)

            let log = try await stack.call(.get, "/v1/me/record/access-log", token: setting.person.token)
            #expect(log.status == .ok)
            let accesses = log.json["entries"] as? [[String: Any]] ?? []
            let write = accesses.first { $0["purpose"] as? String == purpose }
            #expect(write?["accessor_name"] as? String == setting.coordinatorName, "\(log.text)")
            #expect((write?["organisation_name"] as? String)?.hasPrefix("Northshire Council") == true, "\(log.text)")
            #expect(write?["allowed"] as? Bool == true)

            // Nothing personal or secret in any service's log: the entry's text, the
            // person's e-mail address and the passwords never appear.
            for name in ["identity", "records", "gateway"] {
                let text = stack.log(name)
                #expect(!text.isEmpty, "\(name) wrote no log")
                #expect(!text.contains("managing well"), "\(name) logged clinical text")
                #expect(!text.contains("tangerine piano"), "\(name) logged a password")
                #expect(!text.contains("@example.org"), "\(name) logged an e-mail address")
            }
        }
    }

    @Test("a provider system signs in and invoices over RPC with the C client; the person's budget and care account move, and a retry changes nothing")
    func providerInvoicesWithCClient() async throws {
        try await Stack.with { stack in
            let setting = try await Self.careSetting(stack)
            let agency = try await stack.call(.post, "/v1/admin/organisations", token: setting.admin,
                                              json: ["name": "Sunrise Home Care \(UUID().uuidString.prefix(6))", "kind": "HOME_CARE_AGENCY"])
            let agencyID = try #require(agency.json["id"] as? String)
            let client = try await stack.call(.post, "/v1/admin/organisations/\(agencyID)/clients", token: setting.admin,
                                              json: ["name": "Sunrise billing"])
            #expect(client.status == .created, "\(client.text)")
            let clientID = try #require(client.json["client_id"] as? String)
            let secret = try #require(client.json["client_secret"] as? String)

            let budget = try await stack.call(.post, "/v1/people/\(setting.person.id)/budgets", token: setting.coordinator,
                                              json: ["funder_organisation_id": setting.organisationID, "name": "Personal budget"])
            #expect(budget.status == .created, "\(budget.text)")
            let budgetID = try #require(budget.json["id"] as? String)
            let allocated = try await stack.call(.post, "/v1/budgets/\(budgetID)/allocations", token: setting.coordinator,
                                                 json: ["amount_pence": 1_250_000], headers: [HTTPField.Name("Idempotency-Key")!: "alloc-1"])
            #expect(allocated.status == .created, "\(allocated.text)")

            // The provider system: a wrong secret is refused; the right one gets a token.
            let wrong = try await stack.cClient("identity", ["sign-in", clientID], environment: ["WHOLECARE_CLIENT_SECRET": "not-the-secret"])
            #expect(wrong.status == 16, "UNAUTHENTICATED expected: \(wrong.output)")
            let signIn = try await stack.cClient("identity", ["sign-in", clientID], environment: ["WHOLECARE_CLIENT_SECRET": secret])
            #expect(signIn.status == 0, "\(signIn.output)")
            let token = signIn.output

            let invoice = ["invoice", budgetID, "--provider", agencyID, "--amount", "48000", "--reference", "SUN-1001",
                           "--start", "2026-11-09", "--end", "2026-11-15", "--council-rate", "44000", "--key", "sun-1001"]
            // Without the person's consent the agency may not invoice their budget.
            let refused = try await stack.cClient("ledger", invoice, environment: ["WHOLECARE_TOKEN": token])
            #expect(refused.status == 7, "PERMISSION_DENIED expected: \(refused.output)")

            let consent = try await stack.call(.post, "/v1/me/consents", token: setting.person.token,
                                               json: ["grantee_organisation_id": agencyID, "categories": ["BUDGET"]])
            #expect(consent.status == .created, "\(consent.text)")
            // The ledger caches access facts for ACCESS_FACTS_TTL (2 s here): a grant shows after it.
            try await Task.sleep(for: .milliseconds(2_500))
            let posted = try await stack.cClient("ledger", invoice, environment: ["WHOLECARE_TOKEN": token])
            #expect(posted.status == 0, "\(posted.output)")
            #expect(posted.output.contains("amount=48000"), "\(posted.output)")
            #expect(posted.output.contains("toward_cap=44000"), "\(posted.output)")
            let again = try await stack.cClient("ledger", invoice, environment: ["WHOLECARE_TOKEN": token])
            #expect(again.output == posted.output, "the retry returns the original transaction")

            let mine = try await stack.call(.get, "/v1/me/budgets", token: setting.person.token)
            let seen = (mine.json["budgets"] as? [[String: Any]])?.first { $0["id"] as? String == budgetID } ?? [:]
            #expect(seen["allocated_pence"] as? Int == 1_250_000, "\(mine.text)")
            #expect(seen["spent_pence"] as? Int == 48_000, "\(mine.text)")
            #expect(seen["available_pence"] as? Int == 1_202_000, "\(mine.text)")
            let account = try await stack.call(.get, "/v1/me/care-account", token: setting.person.token)
            #expect(account.status == .ok, "\(account.text)")
            #expect(account.json["accrued_pence"] as? Int == 44_000, "\(account.text)")
            #expect(account.json["above_council_rate_pence"] as? Int == 4_000, "\(account.text)")
            let transactions = try await stack.call(.get, "/v1/budgets/\(budgetID)/transactions", token: setting.person.token)
            #expect((transactions.json["transactions"] as? [[String: Any]])?.count == 2, "allocation and one invoice: \(transactions.text)")

            // The provider reads the budget it invoices, with the same consent.
            let read = try await stack.cClient("ledger", ["budget", budgetID], environment: ["WHOLECARE_TOKEN": token])
            #expect(read.output == "budget=\(budgetID) allocated=1250000 spent=48000 committed=0 available=1202000", "\(read.output)")
        }
    }

    @Test("when the person revokes consent, the agency's professional and its provider system are refused once the access-facts cache has expired")
    func revokedConsentShutsProviderOut() async throws {
        try await Stack.with { stack in
            let setting = try await Self.careSetting(stack)
            let agency = try await stack.call(.post, "/v1/admin/organisations", token: setting.admin,
                                              json: ["name": "Sunrise Home Care \(UUID().uuidString.prefix(6))", "kind": "HOME_CARE_AGENCY"])
            let agencyID = try #require(agency.json["id"] as? String)
            let client = try await stack.call(.post, "/v1/admin/organisations/\(agencyID)/clients", token: setting.admin,
                                              json: ["name": "Sunrise billing"])
            let clientID = try #require(client.json["client_id"] as? String)
            let secret = try #require(client.json["client_secret"] as? String)
            let budget = try await stack.call(.post, "/v1/people/\(setting.person.id)/budgets", token: setting.coordinator,
                                              json: ["funder_organisation_id": setting.organisationID, "name": "Personal budget"])
            let budgetID = try #require(budget.json["id"] as? String)
            // A support worker at the agency, with no care relationship to Pat.
            let workerEmail = "worker-\(UUID().uuidString.prefix(8).lowercased())@sunrise.test"
            let worker = try await stack.call(.post, "/v1/admin/organisations/\(agencyID)/professionals", token: setting.admin, json: [
                "email": workerEmail, "display_name": "Jo Support", "roles": ["support_worker"], "initial_password": "copper walrus autumn ladder",
            ])
            #expect(worker.status == .created, "\(worker.text)")
            let workerToken = try await stack.signIn(workerEmail, "copper walrus autumn ladder")
            let unconsented = try await stack.call(.get, "/v1/people/\(setting.person.id)/record", token: workerToken)
            #expect(unconsented.status == .forbidden, "\(unconsented.text)")

            let consent = try await stack.call(.post, "/v1/me/consents", token: setting.person.token,
                                               json: ["grantee_organisation_id": agencyID, "categories": ["RECORD", "BUDGET"]])
            let consentID = try #require(consent.json["id"] as? String)
            let token = try await stack.cClient("identity", ["sign-in", clientID], environment: ["WHOLECARE_CLIENT_SECRET": secret]).output
            try await Task.sleep(for: .milliseconds(2_500))  // the refusal above is cached for ACCESS_FACTS_TTL (2 s)

            // With consent both read, and records and the ledger now cache the facts.
            let before = try await stack.cClient("ledger", ["budget", budgetID], environment: ["WHOLECARE_TOKEN": token])
            #expect(before.status == 0, "\(before.output)")
            let consented = try await stack.call(.get, "/v1/people/\(setting.person.id)/record?purpose=Morning%20visit", token: workerToken)
            #expect(consented.status == .ok, "\(consented.text)")

            let revoked = try await stack.call(.delete, "/v1/me/consents/\(consentID)", token: setting.person.token)
            #expect(revoked.status == .ok, "\(revoked.text)")
            try await Task.sleep(for: .milliseconds(2_500))  // ACCESS_FACTS_TTL is 2 s
            let after = try await stack.cClient("ledger", ["budget", budgetID], environment: ["WHOLECARE_TOKEN": token])
            #expect(after.status == 7, "PERMISSION_DENIED expected: \(after.output)")
            let refused = try await stack.call(.get, "/v1/people/\(setting.person.id)/record?purpose=Morning%20visit", token: workerToken)
            #expect(refused.status == .forbidden, "\(refused.text)")
            // Pat sees both the read and the refusal in the access log.
            let log = try await stack.call(.get, "/v1/me/record/access-log", token: setting.person.token)
            let byWorker = (log.json["entries"] as? [[String: Any]] ?? []).filter { $0["accessor_name"] as? String == "Jo Support" }
            #expect(byWorker.contains { $0["allowed"] as? Bool == true }, "\(log.text)")
            #expect(byWorker.contains { $0["allowed"] as? Bool != true }, "the refusal is logged too: \(log.text)")
            let invoice = try await stack.cClient("ledger", ["invoice", budgetID, "--provider", agencyID, "--amount", "1000", "--reference", "LATE-1",
                                                       "--start", "2026-11-01", "--key", "late-1"], environment: ["WHOLECARE_TOKEN": token])
            #expect(invoice.status == 7, "\(invoice.output)")
            let mine = try await stack.call(.get, "/v1/me/budgets", token: setting.person.token)
            let seen = (mine.json["budgets"] as? [[String: Any]])?.first { $0["id"] as? String == budgetID } ?? [:]
            // (Zero amounts are omitted, as every default is in the gateway's protobuf JSON.)
            #expect(seen["id"] != nil && seen["spent_pence"] == nil, "a refused invoice moves nothing: \(mine.text)")
        }
    }

    @Test("when records is killed the gateway answers 503 at once, budgets keep working, and the record is back after records restarts")
    func recordsOutageAndRecovery() async throws {
        try await Stack.with { stack in
            let person = try await stack.register("Pat")
            let before = try await stack.call(.get, "/v1/me/record", token: person.token)
            #expect(before.status == .ok, "\(before.text)")

            try await stack.signal("records", SIGKILL)
            // 503 (UNAVAILABLE: connection refused), not 504: the gateway did not sit out
            // the call's deadline waiting for a dead service.
            let down = try await stack.call(.get, "/v1/me/record", token: person.token)
            #expect(down.status == .serviceUnavailable, "\(down.text)")
            #expect(down.headers[.contentType] == "application/problem+json")
            #expect(!down.text.contains("127.0.0.1"), "no internal addresses in the problem: \(down.text)")
            #expect(await Self.readiness(of: stack, becomes: 503), "the gateway reports it is not ready")
            let budgets = try await stack.call(.get, "/v1/me/budgets", token: person.token)
            #expect(budgets.status == .ok, "the ledger does not depend on records: \(budgets.text)")

            try await stack.start("records")
            var recovered = false
            let deadline = ContinuousClock.now + .seconds(30)
            while !recovered && ContinuousClock.now < deadline {
                recovered = try await stack.call(.get, "/v1/me/record", token: person.token).status == .ok
                if !recovered { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(recovered, "the gateway reconnects to the restarted records service")
            #expect(await Self.readiness(of: stack, becomes: 200), "and is ready again")
        }
    }
}
