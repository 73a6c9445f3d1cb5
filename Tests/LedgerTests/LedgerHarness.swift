import Auth
import Contracts
import Foundation
import LedgerService
import Postgres
import RPC
import ServiceTestSupport
import TestSupport
import Testing
import WholeCareCrypto

/// Identity and the ledger in-process over fresh schemas of the real test database.
struct LedgerHarness {
    let identity: IdentityHarness
    let ledger: Wholecare_Ledger_V1_Ledger.Client
    let store: LedgerStore
    let db: PostgresClient

    struct People {
        let admin: String
        let council: String
        let agency: String
        let coordinator: String
        let coordinatorID: String
        let finance: String
        let financeElsewhere: String
        let person: Wholecare_Identity_V1_SignInResponse
        let carer: Wholecare_Identity_V1_SignInResponse
        let stranger: Wholecare_Identity_V1_SignInResponse
        let provider: String
        let providerNoConsent: String
        let lonelyAgency: String
        /// Another council, whose finance staff is `financeElsewhere`.
        let elsewhere: String
        var personID: String { person.account.id }
    }

    /// `lockTimeout`: the ledger's connections' `DATABASE_LOCK_TIMEOUT` (none by default);
    /// `invoiceStallAfter`: see `LedgerStore.init`.
    static func with<T: Sendable>(lockTimeout: Duration? = nil, invoiceStallAfter: Duration = .milliseconds(100),
                                  _ body: (LedgerHarness) async throws -> T) async throws -> T {
        try await IdentityHarness.with { identity in
            try await TestDatabase.withFreshSchema(maxConnections: 8, lockTimeout: lockTimeout) { db, schema in
                try await Migrator(schema: schema, migrations: try LedgerServiceApp.migrations()).migrate(using: db)
                let secret = SecureRandom.token(byteCount: 32)
                try await identity.store.createClient(clientID: "svc-ledger", secretHash: Digest.sha256(secret), kind: "service",
                                                      name: "ledger", organisationID: nil)
                let link = IdentityLink(channel: identity.channel, clientID: "svc-ledger", secret: secret, factsTTL: .zero)
                let store = LedgerStore(db: db, invoiceStallAfter: invoiceStallAfter)
                var router = RPCRouter()
                router.register(LedgerRPCService(store: store, identity: link))
                router.interceptors = [link.authInterceptor()]
                let ledger = Wholecare_Ledger_V1_Ledger.Client(RPCClient(channel: InProcessChannel(router: router), retryPolicy: .none))
                let harness = LedgerHarness(identity: identity, ledger: ledger, store: store, db: db)
                let result = try await body(harness)
                try await harness.checkInvariants()
                return result
            }
        }
    }

    /// Double entry holds overall and per transaction, and every budget's cached totals
    /// equal what its postings say. Checked after every test.
    func checkInvariants() async throws {
        let journal = try await store.journalBalance()
        #expect(journal.total == 0, "the journal does not sum to zero")
        #expect(journal.unbalanced == 0, "unbalanced transactions")
        for row in try await db.query("SELECT id FROM budgets") {
            let id: UUID = try row.decode("id")
            let cached = try await store.budget(id)!
            let recomputed = try await store.recomputedBudget(id)
            #expect(cached.available == recomputed.available, "available of \(cached.name)")
            #expect(cached.committed == recomputed.committed, "committed of \(cached.name)")
            #expect(cached.allocated == recomputed.allocated, "allocated of \(cached.name)")
            #expect(cached.spent == recomputed.spent, "spent of \(cached.name)")
            #expect(cached.transferredNet == recomputed.transferredNet, "transferred of \(cached.name)")
            #expect(cached.available + cached.committed == cached.allocated - cached.spent + cached.transferredNet, "identity of \(cached.name)")
            #expect(cached.available >= -cached.overdraftLimit)
        }
    }

    func people() async throws -> People {
        let i = identity
        let admin = try await i.admin()
        let council = try await i.organisation("Northshire Council", admin: admin)
        let agency = try await i.organisation("Sunrise Home Care", admin: admin, kind: .homeCareAgency)
        let lonely = try await i.organisation("Unrelated Agency", admin: admin, kind: .homeCareAgency)
        let elsewhere = try await i.organisation("Southshire Council", admin: admin)
        let coordinator = try await i.professional("cc@northshire.test", org: council, roles: ["care_coordinator"], admin: admin)
        let finance = try await i.professional("finance@northshire.test", org: council, roles: ["finance"], admin: admin)
        let financeElsewhere = try await i.professional("finance@southshire.test", org: elsewhere, roles: ["finance"], admin: admin)
        let person = try await i.register("pat@example.org", name: "Pat Morgan")
        let carer = try await i.register("sam@example.org", name: "Sam", kind: .carer)
        let stranger = try await i.register("eve@example.org", name: "Eve")
        var assign = Wholecare_Identity_V1_AssignCareRelationshipRequest()
        assign.personID = person.account.id
        assign.professionalID = coordinator.id
        assign.role = .careCoordinator
        _ = try await i.api.assignCareRelationship(assign, options: IdentityHarness.bearer(admin))
        var consent = Wholecare_Identity_V1_GrantConsentRequest()
        consent.granteeOrganisationID = agency
        consent.categories = [.budget]
        _ = try await i.api.grantConsent(consent, options: IdentityHarness.bearer(person.accessToken))
        var invite = Wholecare_Identity_V1_InviteCarerRequest()
        invite.carerEmail = "sam@example.org"
        var scope = Wholecare_Identity_V1_CarerScope()
        scope.category = .appointments
        invite.scopes = [scope]
        let invitation = try await i.api.inviteCarer(invite, options: IdentityHarness.bearer(person.accessToken))
        var accept = Wholecare_Identity_V1_AcceptCarerInvitationRequest()
        accept.invitationCode = invitation.invitationCode
        _ = try await i.api.acceptCarerInvitation(accept, options: IdentityHarness.bearer(carer.accessToken))
        return People(admin: admin, council: council, agency: agency, coordinator: coordinator.token, coordinatorID: coordinator.id, finance: finance.token,
                      financeElsewhere: financeElsewhere.token, person: person, carer: carer, stranger: stranger,
                      provider: try await provider(org: agency, admin: admin), providerNoConsent: try await provider(org: lonely, admin: admin),
                      lonelyAgency: lonely, elsewhere: elsewhere)
    }

    func provider(org: String, admin: String) async throws -> String {
        var create = Wholecare_Identity_V1_CreateProviderClientRequest()
        create.organisationID = org
        create.name = "system"
        let client = try await identity.api.createProviderClient(create, options: IdentityHarness.bearer(admin))
        var signIn = Wholecare_Identity_V1_SignInClientRequest()
        signIn.clientID = client.clientID
        signIn.clientSecret = client.clientSecret
        return try await identity.api.signInClient(signIn).accessToken
    }

    static func bearer(_ token: String) -> CallOptions { IdentityHarness.bearer(token) }

    /// A budget as `token`'s holder reads it.
    func read(budget id: String, token: String) async throws -> Wholecare_Ledger_V1_Budget {
        var get = Wholecare_Ledger_V1_GetBudgetRequest()
        get.budgetID = id
        return try await ledger.getBudget(get, options: Self.bearer(token))
    }

    func budget(for p: People, allocate amount: Int64 = 0, overdraft: Int64 = 0, name: String = "Personal budget") async throws -> String {
        var create = Wholecare_Ledger_V1_CreateBudgetRequest()
        create.personID = p.personID
        create.funderOrganisationID = p.council
        create.name = name
        create.overdraftLimitPence = overdraft
        let budget = try await ledger.createBudget(create, options: Self.bearer(p.coordinator))
        if amount > 0 { _ = try await allocate(budget.id, amount, token: p.coordinator) }
        return budget.id
    }

    func allocate(_ budget: String, _ amount: Int64, token: String, key: String = UUID().uuidString) async throws -> Wholecare_Ledger_V1_Transaction {
        var request = Wholecare_Ledger_V1_AllocateRequest()
        request.budgetID = budget
        request.amountPence = amount
        request.idempotencyKey = key
        return try await ledger.allocate(request, options: Self.bearer(token))
    }

    static func invoice(budget: String, provider: String, amount: Int64, key: String = UUID().uuidString, date: String = "2026-11-02",
                        eligible: Bool = true, rate: Int64? = nil, dailyLiving: Int64 = 0) -> Wholecare_Ledger_V1_PostInvoiceRequest {
        var request = Wholecare_Ledger_V1_PostInvoiceRequest()
        request.budgetID = budget
        request.providerOrganisationID = provider
        request.amountPence = amount
        request.invoiceReference = "INV-\(key.prefix(8))"
        request.serviceStart = date
        request.idempotencyKey = key
        request.care.eligible = eligible
        request.care.councilRatePence = rate ?? amount
        request.care.dailyLivingPence = dailyLiving
        return request
    }

    static func reversal(of transaction: String, reason: String, key: String) -> Wholecare_Ledger_V1_ReverseRequest {
        var request = Wholecare_Ledger_V1_ReverseRequest()
        request.transactionID = transaction
        request.reason = reason
        request.idempotencyKey = key
        return request
    }

    func transactionCount() async throws -> Int {
        try await db.query("SELECT count(*) AS n FROM transactions")[0].decode("n", as: Int.self)
    }
}
