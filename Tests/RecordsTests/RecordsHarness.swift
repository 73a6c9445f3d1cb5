import Auth
import Contracts
import Foundation
import IdentityService
import Postgres
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import WholeCareCrypto

/// Identity and records in-process, each over its own fresh, migrated schema of the real
/// test database, records talking to identity through an `IdentityLink` with its own
/// service credentials — the same wiring as the executables, minus the sockets.
struct RecordsHarness {
    let identity: IdentityHarness
    let records: Wholecare_Records_V1_Records.Client
    let store: RecordsStore
    let db: PostgresClient
    let schema: String
    let service: RecordsRPCService
    /// Records' own link to identity (its service credentials).
    let link: IdentityLink

    struct People {
        let admin: String
        let council: String
        let agency: String
        let coordinator: (id: String, token: String)
        let nurseElsewhere: (id: String, token: String)
        let person: Wholecare_Identity_V1_SignInResponse
        let carer: Wholecare_Identity_V1_SignInResponse
        let stranger: Wholecare_Identity_V1_SignInResponse
        let provider: String
        let providerNoConsent: String
    }

    /// `linkSecret` replaces the secret records' link presents (a misconfigured deployment).
    static func with<T: Sendable>(refusals: RefusalLog = RefusalLog(), cipher: FieldCipher? = nil, linkSecret: String? = nil,
                                  _ body: (RecordsHarness) async throws -> T) async throws -> T {
        try await IdentityHarness.with { identity in
            try await TestDatabase.withFreshSchema(maxConnections: 6) { db, schema in
                try await Migrator(schema: schema, migrations: try RecordsServiceApp.migrations()).migrate(using: db)
                let secret = SecureRandom.token(byteCount: 32)
                try await identity.store.createClient(clientID: "svc-records", secretHash: Digest.sha256(secret), kind: "service",
                                                      name: "records", organisationID: nil)
                let link = IdentityLink(channel: identity.channel, clientID: "svc-records", secret: linkSecret ?? secret, factsTTL: .zero)
                let cipher = try cipher ?? FieldCipher(keys: ["test-1": SecureRandom.bytes(32)], currentKeyID: "test-1")
                let store = RecordsStore(db: db, cipher: cipher)
                var router = RPCRouter()
                let service = RecordsRPCService(store: store, identity: link, refusals: refusals)
                router.register(service)
                service.registerEncodedReplies(into: &router)
                router.interceptors = [link.authInterceptor()]
                let records = Wholecare_Records_V1_Records.Client(RPCClient(channel: InProcessChannel(router: router), retryPolicy: .none))
                return try await body(RecordsHarness(identity: identity, records: records, store: store, db: db, schema: schema, service: service, link: link))
            }
        }
    }

    /// A council with a care coordinator for the person, a nurse elsewhere, a carer with
    /// record read access, a stranger, and two provider systems (one with consent).
    func people() async throws -> People {
        let i = identity
        let admin = try await i.admin()
        let council = try await i.organisation("Northshire Council", admin: admin)
        let other = try await i.organisation("Elsewhere Trust", admin: admin, kind: .hospital)
        let agency = try await i.organisation("Sunrise Home Care", admin: admin, kind: .homeCareAgency)
        let lonely = try await i.organisation("Unrelated Agency", admin: admin, kind: .homeCareAgency)
        let coordinator = try await i.professional("cc@northshire.test", org: council, roles: ["care_coordinator"], admin: admin)
        let nurse = try await i.professional("nurse@elsewhere.test", org: other, roles: ["nurse"], admin: admin)
        let person = try await i.register("pat@example.org", name: "Pat Morgan")
        let carer = try await i.register("sam@example.org", name: "Sam Morgan", kind: .carer)
        let stranger = try await i.register("eve@example.org", name: "Eve")
        var assign = Wholecare_Identity_V1_AssignCareRelationshipRequest()
        assign.personID = person.account.id
        assign.professionalID = coordinator.id
        assign.role = .careCoordinator
        _ = try await i.api.assignCareRelationship(assign, options: IdentityHarness.bearer(admin))
        var invite = Wholecare_Identity_V1_InviteCarerRequest()
        invite.carerEmail = "sam@example.org"
        var scope = Wholecare_Identity_V1_CarerScope()
        scope.category = .record
        invite.scopes = [scope]
        let invitation = try await i.api.inviteCarer(invite, options: IdentityHarness.bearer(person.accessToken))
        var accept = Wholecare_Identity_V1_AcceptCarerInvitationRequest()
        accept.invitationCode = invitation.invitationCode
        _ = try await i.api.acceptCarerInvitation(accept, options: IdentityHarness.bearer(carer.accessToken))
        var consent = Wholecare_Identity_V1_GrantConsentRequest()
        consent.granteeOrganisationID = agency
        consent.categories = [.record]
        _ = try await i.api.grantConsent(consent, options: IdentityHarness.bearer(person.accessToken))
        return People(admin: admin, council: council, agency: agency, coordinator: coordinator, nurseElsewhere: nurse, person: person,
                      carer: carer, stranger: stranger, provider: try await providerToken(org: agency, admin: admin),
                      providerNoConsent: try await providerToken(org: lonely, admin: admin))
    }

    func providerToken(org: String, admin: String) async throws -> String {
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

    static func note(_ text: String, kind: Wholecare_Records_V1_EntryKind = .note, date: String = "2026-11-20") -> Wholecare_Records_V1_EntryInput {
        var input = Wholecare_Records_V1_EntryInput()
        input.kind = kind
        input.effectiveStart = date
        input.text = text
        return input
    }

    func add(_ input: Wholecare_Records_V1_EntryInput, for person: String, token: String, purpose: String = "") async throws -> Wholecare_Records_V1_Entry {
        var request = Wholecare_Records_V1_AddEntryRequest()
        request.personID = person
        request.entry = input
        request.purpose = purpose
        return try await records.addEntry(request, options: Self.bearer(token))
    }

    func accessLogCount(_ person: String) async throws -> Int {
        try await db.query("SELECT count(*) AS n FROM access_log WHERE person_id = \(UUID(uuidString: person)!)")[0].decode("n", as: Int.self)
    }

    func entryCount(_ person: String) async throws -> Int {
        try await db.query("SELECT count(*) AS n FROM entries WHERE person_id = \(UUID(uuidString: person)!)")[0].decode("n", as: Int.self)
    }
}
