import Auth
import Foundation
import Testing

/// The authorization matrix of docs/security.md, row by row: subject kind ×
/// relationship/consent state × action → allowed or denied.
@Suite("Authorization matrix")
struct AccessPolicyMatrixTests {
    static let person = UUID()
    static let funder = UUID()
    static let otherOrg = UUID()

    static func principal(_ kind: Principal.Kind, subject: UUID = UUID(), roles: Set<String> = [], org: UUID? = nil) -> Principal {
        Principal(subject: subject.uuidString.lowercased(), kind: kind, roles: roles, organisationID: org, scopes: [],
                  tokenID: "t", expiresAt: Date().addingTimeInterval(600), token: "token")
    }

    struct Row: Sendable, CustomTestStringConvertible {
        let who: String
        let principal: Principal
        let facts: AccessFacts
        let action: PersonAction
        let allowed: Bool
        var testDescription: String { "\(who) — \(action) → \(allowed ? "allow" : "deny")" }
    }

    static let selfUser = principal(.serviceUser, subject: person)
    static let stranger = principal(.serviceUser)
    static let carer = principal(.carer)
    static let professional = principal(.professional, roles: ["nurse"], org: otherOrg)
    static let financeAtFunder = principal(.professional, roles: ["finance"], org: funder)
    static let financeElsewhere = principal(.professional, roles: ["finance"], org: otherOrg)
    static let provider = principal(.providerSystem, org: otherOrg)
    static let admin = principal(.administrator, roles: ["platform_admin"])
    static let service = Principal(subject: "svc-records", kind: .service, roles: [], organisationID: nil, scopes: [],
                                   tokenID: "t", expiresAt: Date().addingTimeInterval(600), token: "t")

    static let carerRecordRead = AccessFacts(carerScopes: [.record: false, .appointments: true])
    static let coordinator = AccessFacts(relationships: [.careCoordinator])
    static let teamMember = AccessFacts(relationships: [.careTeamMember])
    static let consentRecord = AccessFacts(consentedCategories: [.record])
    static let consentBudget = AccessFacts(consentedCategories: [.budget])
    static let orgRelationship = AccessFacts(organisationHasRelationship: true)

    static let rows: [Row] = [
        // The person themself.
        Row(who: "person, own data", principal: selfUser, facts: .none, action: .read(.record), allowed: true),
        Row(who: "person, own data", principal: selfUser, facts: .none, action: .write(.record), allowed: true),
        Row(who: "person, own data", principal: selfUser, facts: .none, action: .read(.budget), allowed: true),
        Row(who: "person, own data", principal: selfUser, facts: .none, action: .write(.messages), allowed: true),
        Row(who: "person, own data", principal: selfUser, facts: .none, action: .readCareTeam, allowed: true),
        Row(who: "person, own budget", principal: selfUser, facts: .none, action: .allocateBudget(funder: funder), allowed: false),
        Row(who: "person, own budget", principal: selfUser, facts: .none, action: .postInvoice, allowed: false),
        // Another person with no grant.
        Row(who: "another person, no grant", principal: stranger, facts: .none, action: .read(.record), allowed: false),
        Row(who: "another person, no grant", principal: stranger, facts: .none, action: .readCareTeam, allowed: false),
        // Carers: only within their scopes.
        Row(who: "carer, record:read + appointments:write", principal: carer, facts: carerRecordRead, action: .read(.record), allowed: true),
        Row(who: "carer, record:read + appointments:write", principal: carer, facts: carerRecordRead, action: .write(.record), allowed: false),
        Row(who: "carer, record:read + appointments:write", principal: carer, facts: carerRecordRead, action: .write(.appointments), allowed: true),
        Row(who: "carer, record:read + appointments:write", principal: carer, facts: carerRecordRead, action: .read(.budget), allowed: false),
        Row(who: "carer, record:read + appointments:write", principal: carer, facts: carerRecordRead, action: .read(.messages), allowed: false),
        Row(who: "carer, any scope", principal: carer, facts: carerRecordRead, action: .readCareTeam, allowed: true),
        Row(who: "carer, any scope", principal: carer, facts: carerRecordRead, action: .allocateBudget(funder: funder), allowed: false),
        Row(who: "carer, no grant", principal: carer, facts: .none, action: .read(.appointments), allowed: false),
        // Professionals with a care relationship.
        Row(who: "care coordinator", principal: professional, facts: coordinator, action: .read(.record), allowed: true),
        Row(who: "care coordinator", principal: professional, facts: coordinator, action: .write(.record), allowed: true),
        Row(who: "care coordinator", principal: professional, facts: coordinator, action: .read(.budget), allowed: true),
        Row(who: "care coordinator", principal: professional, facts: coordinator, action: .allocateBudget(funder: funder), allowed: true),
        Row(who: "care coordinator", principal: professional, facts: coordinator, action: .postInvoice, allowed: false),
        Row(who: "care team member", principal: professional, facts: teamMember, action: .read(.record), allowed: true),
        Row(who: "care team member", principal: professional, facts: teamMember, action: .write(.messages), allowed: true),
        Row(who: "care team member", principal: professional, facts: teamMember, action: .allocateBudget(funder: funder), allowed: false),
        // Professionals with consent only.
        Row(who: "professional, consent to record", principal: professional, facts: consentRecord, action: .read(.record), allowed: true),
        Row(who: "professional, consent to record", principal: professional, facts: consentRecord, action: .write(.record), allowed: true),
        Row(who: "professional, consent to record", principal: professional, facts: consentRecord, action: .read(.budget), allowed: false),
        Row(who: "professional, consent to record", principal: professional, facts: consentRecord, action: .write(.messages), allowed: false),
        Row(who: "professional, consent to budget", principal: professional, facts: consentBudget, action: .read(.budget), allowed: true),
        Row(who: "professional, consent to budget", principal: professional, facts: consentBudget, action: .read(.record), allowed: false),
        // Professionals with neither.
        Row(who: "professional, no relationship or consent", principal: professional, facts: .none, action: .read(.record), allowed: false),
        Row(who: "professional, no relationship or consent", principal: professional, facts: .none, action: .readCareTeam, allowed: false),
        Row(who: "funder's finance staff", principal: financeAtFunder, facts: .none, action: .allocateBudget(funder: funder), allowed: true),
        Row(who: "finance staff of another organisation", principal: financeElsewhere, facts: .none, action: .allocateBudget(funder: funder), allowed: false),
        Row(who: "funder's finance staff", principal: financeAtFunder, facts: .none, action: .read(.record), allowed: false),
        // Provider systems.
        Row(who: "provider system, no consent", principal: provider, facts: .none, action: .read(.record), allowed: false),
        Row(who: "provider system, no consent", principal: provider, facts: .none, action: .write(.record), allowed: false),
        Row(who: "provider system, org has a care relationship", principal: provider, facts: orgRelationship, action: .write(.record), allowed: true),
        Row(who: "provider system, org has a care relationship", principal: provider, facts: orgRelationship, action: .read(.record), allowed: false),
        Row(who: "provider system, consent to record", principal: provider, facts: consentRecord, action: .read(.record), allowed: true),
        Row(who: "provider system, consent to record", principal: provider, facts: consentRecord, action: .postInvoice, allowed: false),
        Row(who: "provider system, consent to budget", principal: provider, facts: consentBudget, action: .postInvoice, allowed: true),
        Row(who: "provider system, consent to budget", principal: provider, facts: consentBudget, action: .write(.budget), allowed: false),
        Row(who: "provider system, consent to messages", principal: provider, facts: AccessFacts(consentedCategories: [.messages]),
            action: .read(.messages), allowed: false),
        Row(who: "provider system, consent to messages", principal: provider, facts: AccessFacts(consentedCategories: [.messages]),
            action: .write(.messages), allowed: false),
        // Administrators and services never by virtue of what they are.
        Row(who: "platform administrator", principal: admin, facts: coordinator, action: .read(.record), allowed: false),
        Row(who: "platform administrator", principal: admin, facts: .none, action: .read(.budget), allowed: false),
        Row(who: "WholeCare service (own token)", principal: service, facts: coordinator, action: .read(.record), allowed: false),
        // A person who does not exist.
        Row(who: "care coordinator, person unknown", principal: professional,
            facts: AccessFacts(personExists: false, relationships: [.careCoordinator]), action: .read(.record), allowed: false),
    ]

    @Test("the policy answers every row of the matrix", arguments: rows)
    func matrix(row: Row) {
        let decision = AccessPolicy.decide(row.principal, row.action, person: Self.person, facts: row.facts)
        #expect(decision.isAllowed == row.allowed, "\(decision)")
    }

    @Test("the Authorizer fetches facts for others, caches them, and denies with PERMISSION_DENIED")
    func authorizerCaches() async throws {
        let calls = FetchCounter()
        let authorizer = Authorizer(factsTTL: .seconds(30)) { _, _ in
            calls.increment()
            return AccessFacts(relationships: [.careTeamMember])
        }
        let pro = Self.professional
        #expect(try await authorizer.require(pro, .read(.record), person: Self.person) == .careTeam)
        #expect(try await authorizer.require(pro, .read(.messages), person: Self.person) == .careTeam)
        #expect(calls.value == 1)
        // The person's own access needs no facts at all.
        #expect(try await authorizer.require(Self.selfUser, .read(.record), person: Self.person) == .selfAccess)
        #expect(calls.value == 1)
        await #expect(throws: (any Error).self) {
            try await authorizer.require(pro, .allocateBudget(funder: nil), person: Self.person)
        }
    }
}

final class FetchCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
