import ArgumentParser
import Auth
import Contracts
import Foundation
import Synchronization
import Logging
import RPC
import RPCTransport
import ServiceKit

/// `wholecare seed`: idempotent demo data, loaded through the running services' RPC APIs.
struct SeedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Load idempotent demo data into the running services and print the demo sign-ins.",
        discussion: "Needs the services running (`make run` does this for you) and the settings from the env file.")

    @Option(help: "Environment file written by `wholecare db start`.")
    var envFile: String = ".data/dev/env"

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment.merge(try UpCommand.readEnvironmentFile(envFile)) { _, file in file }
        let lines = try await DemoSeed(environment: environment, stateFile: URL(fileURLWithPath: envFile).deletingLastPathComponent()
            .appendingPathComponent("demo")).run()
        print(lines.joined(separator: "\n"))
    }
}

/// The demo: a council with a care coordinator, a GP practice with a GP, a home-care
/// agency with a provider-system client, a service user with a carer, care
/// relationships and consent, record entries, and a funded budget with invoices posted by
/// the provider system. Safe to run again: existing things are reused.
struct DemoSeed {
    let environment: [String: String]
    /// Remembers ids and the provider client's secret (shown once by identity).
    let stateFile: URL

    static let password = "wholecare demo password"
    static let adminEmail = "admin@wholecare.example"

    func run() async throws -> [String] {
        // The connections are closed before returning, never in detached tasks that could
        // still be running when the process exits (see `CreateAdminCommand.create`).
        let opened = OpenTransports()
        do {
            let lines = try await seed(opened)
            await opened.closeAll()
            return lines
        } catch {
            await opened.closeAll()
            throw error
        }
    }

    /// RPC connections to close once the seed is done.
    final class OpenTransports: Sendable {
        private let transports = Mutex<[RPCClientTransport]>([])
        func add(_ transport: RPCClientTransport) -> RPCClientTransport {
            transports.withLock { $0.append(transport) }
            return transport
        }
        func closeAll() async {
            for transport in transports.withLock({ $0 }) { await transport.close() }
        }
    }

    private func seed(_ opened: OpenTransports) async throws -> [String] {
        let env = EnvironmentConfiguration(environment)
        _ = try await CreateAdminCommand.create(email: Self.adminEmail, name: "Demo administrator", password: Self.password, environment: env)
        let address = env.string("IDENTITY_ADDRESS", default: "127.0.0.1:\(ServiceCatalog.identity.defaultPort)").split(separator: ":")
        let transport = opened.add(RPCClientTransport(configuration: RPCClientConfiguration(host: String(address[0]), port: Int(address[1]) ?? 7101)))
        let api = Wholecare_Identity_V1_Identity.Client(RPCClient(channel: transport))
        var state = loadState()

        func signIn(_ email: String) async throws -> String {
            var request = Wholecare_Identity_V1_SignInRequest()
            request.email = email
            request.password = Self.password
            return try await api.signIn(request).accessToken
        }
        func bearer(_ token: String) -> CallOptions { CallOptions(metadata: ["authorization": "Bearer " + token]) }
        let admin = try await signIn(Self.adminEmail)

        func organisation(_ name: String, _ kind: Wholecare_Identity_V1_OrganisationKind) async throws -> String {
            var request = Wholecare_Identity_V1_CreateOrganisationRequest()
            request.name = name
            request.kind = kind
            do {
                return try await api.createOrganisation(request, options: bearer(admin)).id
            } catch let error as RPCError where error.code == .alreadyExists {
                return try await api.listOrganisations(.init(), options: bearer(admin)).organisations.first { $0.name == name }!.id
            }
        }
        let council = try await organisation("Northshire Council", .council)
        let surgery = try await organisation("Riverside Surgery", .gpPractice)
        let agency = try await organisation("Sunrise Home Care", .homeCareAgency)

        func professional(_ email: String, _ name: String, org: String, roles: [String]) async throws -> (id: String, token: String) {
            var request = Wholecare_Identity_V1_CreateProfessionalRequest()
            request.organisationID = org
            request.email = email
            request.displayName = name
            request.roles = roles
            request.initialPassword = Self.password
            do {
                _ = try await api.createProfessional(request, options: bearer(admin))
            } catch let error as RPCError where error.code == .alreadyExists {}
            let token = try await signIn(email)
            return (try await api.whoAmI(.init(), options: bearer(token)).id, token)
        }
        let coordinator = try await professional("coordinator@northshire.example", "Chris Okafor (care coordinator)", org: council,
                                                 roles: ["care_coordinator", "social_worker"])
        _ = try await professional("finance@northshire.example", "Morgan Lee (council finance)", org: council, roles: ["finance"])
        let gp = try await professional("gp@riverside.example", "Dr Priya Shah (GP)", org: surgery, roles: ["gp"])

        func person(_ email: String, _ name: String, kind: Wholecare_Identity_V1_SubjectKind) async throws -> (id: String, token: String) {
            var request = Wholecare_Identity_V1_RegisterRequest()
            request.email = email
            request.password = Self.password
            request.displayName = name
            request.kind = kind
            do {
                let session = try await api.register(request)
                return (session.account.id, session.accessToken)
            } catch let error as RPCError where error.code == .alreadyExists {
                let token = try await signIn(email)
                return (try await api.whoAmI(.init(), options: bearer(token)).id, token)
            }
        }
        let pat = try await person("pat@example.org", "Pat Morgan", kind: .serviceUser)
        let sam = try await person("sam@example.org", "Sam Morgan", kind: .carer)

        // Care relationships (already-present ones are fine).
        for (professionalID, role) in [(coordinator.id, Wholecare_Identity_V1_RelationshipRole.careCoordinator), (gp.id, .careTeamMember)] {
            var request = Wholecare_Identity_V1_AssignCareRelationshipRequest()
            request.personID = pat.id
            request.professionalID = professionalID
            request.role = role
            do {
                _ = try await api.assignCareRelationship(request, options: bearer(admin))
            } catch let error as RPCError where error.code == .alreadyExists || error.code == .failedPrecondition {}
        }
        // Pat lets the home-care agency see and invoice the budget and add to the record.
        if state["consent.agency"] == nil {
            var consent = Wholecare_Identity_V1_GrantConsentRequest()
            consent.granteeOrganisationID = agency
            consent.categories = [.budget, .record]
            state["consent.agency"] = try await api.grantConsent(consent, options: bearer(pat.token)).id
        }
        // Sam is Pat's carer for appointments, reminders and reading the record.
        if state["carer.sam"] == nil {
            var invite = Wholecare_Identity_V1_InviteCarerRequest()
            invite.carerEmail = "sam@example.org"
            invite.scopes = [(Wholecare_Identity_V1_DataCategory.appointments, true), (.reminders, true), (.record, false)].map {
                var scope = Wholecare_Identity_V1_CarerScope()
                scope.category = $0.0
                scope.write = $0.1
                return scope
            }
            let invitation = try await api.inviteCarer(invite, options: bearer(pat.token))
            var accept = Wholecare_Identity_V1_AcceptCarerInvitationRequest()
            accept.invitationCode = invitation.invitationCode
            state["carer.sam"] = try await api.acceptCarerInvitation(accept, options: bearer(sam.token)).id
        }
        // A provider-system client for the agency; its secret is shown once, so keep it.
        if state["provider.client_id"] == nil {
            var request = Wholecare_Identity_V1_CreateProviderClientRequest()
            request.organisationID = agency
            request.name = "Sunrise rostering and invoicing"
            let client = try await api.createProviderClient(request, options: bearer(admin))
            state["provider.client_id"] = client.clientID
            state["provider.client_secret"] = client.clientSecret
        }
        state["person.pat"] = pat.id
        state["organisation.agency"] = agency
        state["organisation.council"] = council
        try saveState(state)

        // Pat's record: what the coordinator, the GP and Pat wrote (once).
        func client(_ name: String, _ port: Int) -> RPCClientTransport {
            let parts = env.string("\(name.uppercased())_ADDRESS", default: "127.0.0.1:\(port)").split(separator: ":")
            return RPCClientTransport(configuration: RPCClientConfiguration(host: String(parts[0]), port: Int(parts.last ?? "") ?? port))
        }
        let recordsTransport = opened.add(client("records", ServiceCatalog.records.defaultPort))
        let ledgerTransport = opened.add(client("ledger", ServiceCatalog.ledger.defaultPort))
        let records = Wholecare_Records_V1_Records.Client(RPCClient(channel: recordsTransport))
        let ledger = Wholecare_Ledger_V1_Ledger.Client(RPCClient(channel: ledgerTransport))
        let today = CalendarDate(Date())
        if state["records.seeded"] == nil {
            func entry(_ token: String, _ kind: Wholecare_Records_V1_EntryKind, daysAgo: Int, _ text: String,
                       _ fill: (inout Wholecare_Records_V1_EntryInput) -> Void = { _ in }) async throws {
                var request = Wholecare_Records_V1_AddEntryRequest()
                request.personID = pat.id
                request.entry.kind = kind
                request.entry.effectiveStart = today.adding(days: -daysAgo).description
                request.entry.text = text
                fill(&request.entry)
                request.purpose = "Demo data"
                _ = try await records.addEntry(request, options: bearer(token))
            }
            try await entry(gp.token, .condition, daysAgo: 900, "Type 2 diabetes, diet and metformin controlled.") {
                $0.code.display = "Type 2 diabetes mellitus"
            }
            try await entry(gp.token, .medication, daysAgo: 20, "Take with breakfast and evening meal.") {
                $0.medication.name = "Metformin 500 mg tablets"
                $0.medication.dose = "one tablet"
                $0.medication.dosesPerDay = 2
                $0.medication.quantitySupplied = 56
                $0.medication.suppliedOn = today.adding(days: -20).description
            }
            try await entry(gp.token, .allergy, daysAgo: 2000, "Rash as a child.") {
                $0.allergy.substance = "Penicillin"
                $0.allergy.severity = "moderate"
            }
            try await entry(coordinator.token, .carePlan, daysAgo: 60,
                            "Home care visits each morning (washing, dressing, breakfast); weekly day centre on Thursdays.")
            try await entry(coordinator.token, .goal, daysAgo: 60, "Pat wants to get to the shops on their own again.") {
                $0.goal.target = "Walk to the corner shop and back unaided"
                $0.goal.agreedWithCoordinator = true
            }
            try await entry(coordinator.token, .encounter, daysAgo: 7, "Review visit at home. Pat is managing well; carer Sam present.")
            try await entry(pat.token, .observation, daysAgo: 1, "Morning weight.") {
                $0.observation.value.value = 72.4
                $0.observation.value.unit = "kg"
            }
            try await entry(pat.token, .note, daysAgo: 0, "Knee is sore on the stairs; ask about physiotherapy at the next review.")
            // Pat's own details, updated online by Pat (version 1).
            var details = Wholecare_Records_V1_UpdateDetailsRequest()
            details.personID = pat.id
            details.expectedVersion = 0
            details.details.preferredName = "Pat"
            details.details.address = "14 Mill Lane, Northshire"
            details.details.postcode = "NS1 4ML"
            details.details.phone = "01632 960123"
            details.details.email = "pat@example.org"
            details.details.preferredLanguage = "en"
            details.details.communicationNeeds = "Large print letters"
            details.details.contactPreferences = ["email", "letter"]
            var kin = Wholecare_Records_V1_NextOfKin()
            kin.name = "Sam Morgan"
            kin.relationship = "son"
            kin.phone = "07700 900456"
            details.details.nextOfKin = [kin]
            _ = try await records.updateDetails(details, options: bearer(pat.token))
            state["records.seeded"] = "yes"
            try saveState(state)
        }

        // Pat's personal budget from the council, funded, with two care invoices posted
        // by the agency's provider system, once. The idempotency keys make a run that
        // stopped half-way safe to repeat; the invoice dates hang on the first run's date,
        // so a repeat on a later day sends the same requests.
        if state["budget.pat"] == nil {
            if state["demo.anchor"] == nil {
                state["demo.anchor"] = today.description
                try saveState(state)
            }
            let anchor = state["demo.anchor"].flatMap(CalendarDate.init) ?? today
            var budgetRequest = Wholecare_Ledger_V1_CreateBudgetRequest()
            budgetRequest.personID = pat.id
            budgetRequest.funderOrganisationID = council
            budgetRequest.name = "Personal budget"
            budgetRequest.idempotencyKey = "demo-budget-pat"
            let budget = try await ledger.createBudget(budgetRequest, options: bearer(coordinator.token))
            var allocation = Wholecare_Ledger_V1_AllocateRequest()
            allocation.budgetID = budget.id
            allocation.amountPence = 1_250_000
            allocation.memo = "Annual allocation"
            allocation.idempotencyKey = "demo-allocation-pat"
            _ = try await ledger.allocate(allocation, options: bearer(coordinator.token))
            var clientSignIn = Wholecare_Identity_V1_SignInClientRequest()
            clientSignIn.clientID = state["provider.client_id"] ?? ""
            clientSignIn.clientSecret = state["provider.client_secret"] ?? ""
            let providerToken = try await api.signInClient(clientSignIn).accessToken
            for (week, amount) in [(2, 48_000), (1, 51_500)] {
                var invoice = Wholecare_Ledger_V1_PostInvoiceRequest()
                invoice.budgetID = budget.id
                invoice.providerOrganisationID = agency
                invoice.amountPence = Int64(amount)
                invoice.invoiceReference = "SUN-\(1000 + week)"
                invoice.serviceStart = anchor.adding(days: -7 * week).description
                invoice.serviceEnd = anchor.adding(days: -7 * week + 6).description
                invoice.memo = "Home care, morning visits"
                invoice.care.eligible = true
                invoice.care.councilRatePence = Int64(amount) - 4_000
                invoice.idempotencyKey = "demo-invoice-\(week)"
                _ = try await ledger.postInvoice(invoice, options: bearer(providerToken))
            }
            state["budget.pat"] = budget.id
            try saveState(state)
        }

        return [
            "Demo sign-ins (password for all: \"\(Self.password)\"):",
            "  service user      pat@example.org",
            "  carer             sam@example.org",
            "  care coordinator  coordinator@northshire.example",
            "  council finance   finance@northshire.example",
            "  GP                gp@riverside.example",
            "  administrator     \(Self.adminEmail)",
            "  provider system   client id \(state["provider.client_id"]!) (secret in \(stateFile.path))",
        ]
    }

    func loadState() -> [String: String] {
        (try? UpCommand.readEnvironmentFile(stateFile.path)) ?? [:]
    }

    func saveState(_ state: [String: String]) throws {
        let text = "# Demo data ids and the provider client's secret (written by `wholecare seed`).\n"
            + state.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") + "\n"
        FileManager.default.createFile(atPath: stateFile.path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
    }
}
