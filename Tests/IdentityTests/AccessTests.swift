import ServiceTestSupport
import Auth
import Contracts
import Foundation
import IdentityService
import RPC
import Testing

@Suite("Relationships, consent, carers and organisations")
struct AccessTests {
    @Test("consent grant, expiry and revocation change the policy's answer")
    func consentLifecycle() async throws {
        try await IdentityHarness.with { h in
            let admin = try await h.admin()
            let gp = try await h.organisation("Riverside Surgery", admin: admin, kind: .gpPractice)
            let doctor = try await h.professional("gp@riverside.test", org: gp, roles: ["gp"], admin: admin)
            let person = try await h.register("pat@example.org", name: "Pat")
            let personID = UUID(uuidString: person.account.id)!
            let authorizer = Authorizer(factsTTL: .zero) { principal, person in
                let facts = try await h.store.facts(subject: principal.subjectID!, organisation: principal.organisationID, person: person)
                return AccessFacts(personExists: facts.personExists,
                                   consentedCategories: Set(facts.consentedCategories.compactMap(DataCategory.init(rawValue:))))
            }
            let doctorPrincipal = Principal(subject: doctor.id, kind: .professional, roles: ["gp"], organisationID: UUID(uuidString: gp),
                                            scopes: [], tokenID: "t", expiresAt: Date().addingTimeInterval(600), token: doctor.token)
            #expect(try await authorizer.decide(doctorPrincipal, .read(.record), person: personID).isAllowed == false)

            // Granted to the organisation: the doctor (a member) may now read the record, not the budget.
            var grant = Wholecare_Identity_V1_GrantConsentRequest()
            grant.granteeOrganisationID = gp
            grant.categories = [.record]
            let consent = try await h.api.grantConsent(grant, options: IdentityHarness.bearer(person.accessToken))
            #expect(consent.granteeName == "Riverside Surgery")
            #expect(try await authorizer.decide(doctorPrincipal, .read(.record), person: personID).isAllowed)
            #expect(try await authorizer.decide(doctorPrincipal, .read(.budget), person: personID).isAllowed == false)

            // Revoked: denied again.
            var revoke = Wholecare_Identity_V1_RevokeConsentRequest()
            revoke.consentID = consent.id
            let revoked = try await h.api.revokeConsent(revoke, options: IdentityHarness.bearer(person.accessToken))
            #expect(!revoked.revokedAt.isEmpty)
            #expect(try await authorizer.decide(doctorPrincipal, .read(.record), person: personID).isAllowed == false)
            // Revoking it again changes nothing and records nothing more.
            #expect(try await h.api.revokeConsent(revoke, options: IdentityHarness.bearer(person.accessToken)).revokedAt == revoked.revokedAt)

            // Granted with an expiry ten seconds ahead: allowed, then denied once it passes.
            // Expiry is checked against the database's now(), not the harness clock, so this
            // waits in real time (a window wide enough for a loaded machine to grant and check).
            grant.granteeOrganisationID = ""
            grant.granteeProfessionalID = doctor.id
            let expiry = Date().addingTimeInterval(10)
            grant.expiresAt = Timestamp.format(expiry)
            _ = try await h.api.grantConsent(grant, options: IdentityHarness.bearer(person.accessToken))
            #expect(try await authorizer.decide(doctorPrincipal, .read(.record), person: personID).isAllowed)
            try await Task.sleep(for: .seconds(max(0, expiry.timeIntervalSinceNow) + 0.3))
            #expect(try await authorizer.decide(doctorPrincipal, .read(.record), person: personID).isAllowed == false)

            let listed = try await h.api.listConsents(.init(), options: IdentityHarness.bearer(person.accessToken)).consents
            #expect(listed.count == 2)
            // Each change is in the person's history once, written with the change itself.
            let history = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(person.accessToken)).events
            #expect(history.filter { $0.event == "consent_granted" }.count == 2)
            #expect(history.filter { $0.event == "consent_revoked" }.map(\.detail) == ["Riverside Surgery"])
            // Only the person manages their consents.
            let byDoctor = await #expect(throws: RPCError.self) {
                try await h.api.grantConsent(grant, options: IdentityHarness.bearer(doctor.token))
            }
            #expect(byDoctor?.code == .permissionDenied)
        }
    }

    @Test("revocations sent at once record the revocation once")
    func concurrentRevocations() async throws {
        try await IdentityHarness.with { h in
            let admin = try await h.admin()
            let gp = try await h.organisation("Riverside Surgery", admin: admin, kind: .gpPractice)
            let person = try await h.register("pat@example.org", name: "Pat")
            var grant = Wholecare_Identity_V1_GrantConsentRequest()
            grant.granteeOrganisationID = gp
            grant.categories = [.record]
            let consent = try await h.api.grantConsent(grant, options: IdentityHarness.bearer(person.accessToken))
            var revoke = Wholecare_Identity_V1_RevokeConsentRequest()
            revoke.consentID = consent.id
            let (api, request, token) = (h.api, revoke, person.accessToken)
            let times = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await api.revokeConsent(request, options: IdentityHarness.bearer(token)).revokedAt }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(times.count == 1, "every caller sees the one revocation")
            let history = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(person.accessToken)).events
            #expect(history.filter { $0.event == "consent_revoked" }.count == 1)
        }
    }

    @Test("carer invitations: accept by code and matching e-mail, scopes respected, revocable by either side")
    func carerScopes() async throws {
        try await IdentityHarness.with { h in
            let person = try await h.register("pat@example.org", name: "Pat")
            let carer = try await h.register("sam@example.org", name: "Sam", kind: .carer)
            let intruder = try await h.register("eve@example.org", name: "Eve", kind: .carer)
            var invite = Wholecare_Identity_V1_InviteCarerRequest()
            invite.carerEmail = "sam@example.org"
            var appointments = Wholecare_Identity_V1_CarerScope()
            appointments.category = .appointments
            appointments.write = true
            var reminders = Wholecare_Identity_V1_CarerScope()
            reminders.category = .reminders
            invite.scopes = [appointments, reminders]
            let invitation = try await h.api.inviteCarer(invite, options: IdentityHarness.bearer(person.accessToken))
            #expect(invitation.invitationCode.hasPrefix("wci_"))

            var accept = Wholecare_Identity_V1_AcceptCarerInvitationRequest()
            accept.invitationCode = invitation.invitationCode
            let stolen = await #expect(throws: RPCError.self) {
                try await h.api.acceptCarerInvitation(accept, options: IdentityHarness.bearer(intruder.accessToken))
            }
            #expect(stolen?.code == .permissionDenied)
            let grant = try await h.api.acceptCarerInvitation(accept, options: IdentityHarness.bearer(carer.accessToken))
            #expect(grant.carerID == carer.account.id)
            let twice = await #expect(throws: RPCError.self) {
                try await h.api.acceptCarerInvitation(accept, options: IdentityHarness.bearer(carer.accessToken))
            }
            #expect(twice?.code == .notFound)

            let facts = IdentityRPCServiceFacts.policy(try await h.store.facts(
                subject: UUID(uuidString: carer.account.id)!, organisation: nil, person: UUID(uuidString: person.account.id)!))
            let carerPrincipal = Principal(subject: carer.account.id, kind: .carer, roles: [], organisationID: nil, scopes: [],
                                           tokenID: "t", expiresAt: Date().addingTimeInterval(600), token: carer.accessToken)
            let personID = UUID(uuidString: person.account.id)!
            #expect(AccessPolicy.decide(carerPrincipal, .write(.appointments), person: personID, facts: facts).isAllowed)
            #expect(AccessPolicy.decide(carerPrincipal, .read(.reminders), person: personID, facts: facts).isAllowed)
            #expect(!AccessPolicy.decide(carerPrincipal, .write(.reminders), person: personID, facts: facts).isAllowed)
            #expect(!AccessPolicy.decide(carerPrincipal, .read(.record), person: personID, facts: facts).isAllowed)

            // The carer may see the person's care team (any scope); then the carer steps back.
            var team = Wholecare_Identity_V1_ListCareTeamRequest()
            team.personID = person.account.id
            _ = try await h.api.listCareTeam(team, options: IdentityHarness.bearer(carer.accessToken))
            var revoke = Wholecare_Identity_V1_RevokeCarerAccessRequest()
            revoke.grantID = grant.id
            _ = try await h.api.revokeCarerAccess(revoke, options: IdentityHarness.bearer(carer.accessToken))
            let after = await #expect(throws: RPCError.self) {
                try await h.api.listCareTeam(team, options: IdentityHarness.bearer(carer.accessToken))
            }
            #expect(after?.code == .permissionDenied)
            let grants = try await h.api.listCarerGrants(.init(), options: IdentityHarness.bearer(person.accessToken))
            #expect(grants.myCarers.count == 1)
            #expect(!grants.myCarers[0].revokedAt.isEmpty)
            // The person revoking it too records nothing more.
            _ = try await h.api.revokeCarerAccess(revoke, options: IdentityHarness.bearer(person.accessToken))
            let history = try await h.api.listAuthEvents(.init(), options: IdentityHarness.bearer(person.accessToken)).events
            #expect(history.filter { $0.event == "carer_invited" }.count == 1)
            #expect(history.filter { $0.event == "carer_accepted" }.map(\.detail) == ["Sam"])
            #expect(history.filter { $0.event == "carer_revoked" }.map(\.detail) == ["Sam"])
        }
    }

    @Test("care relationships: assigned by an organisation admin, one coordinator per person, caseload and care team")
    func relationships() async throws {
        try await IdentityHarness.with { h in
            let admin = try await h.admin()
            let council = try await h.organisation("Northshire Council", admin: admin)
            let orgAdmin = try await h.professional("lead@northshire.test", org: council, roles: ["org_admin"], admin: admin)
            let coordinator = try await h.professional("cc@northshire.test", org: council, roles: ["care_coordinator"], admin: orgAdmin.token)
            let nurse = try await h.professional("nurse@northshire.test", org: council, roles: ["nurse"], admin: orgAdmin.token)
            let person = try await h.register("pat@example.org", name: "Pat")
            var assign = Wholecare_Identity_V1_AssignCareRelationshipRequest()
            assign.personID = person.account.id
            assign.professionalID = coordinator.id
            assign.role = .careCoordinator
            // A nurse (no admin role, not the coordinator) may not assign.
            let refused = await #expect(throws: RPCError.self) {
                try await h.api.assignCareRelationship(assign, options: IdentityHarness.bearer(nurse.token))
            }
            #expect(refused?.code == .permissionDenied)
            let relationship = try await h.api.assignCareRelationship(assign, options: IdentityHarness.bearer(orgAdmin.token))
            #expect(relationship.professionalName == "Pro cc@northshire.test")
            // A second coordinator is refused until the first relationship ends.
            assign.professionalID = nurse.id
            let second = await #expect(throws: RPCError.self) {
                try await h.api.assignCareRelationship(assign, options: IdentityHarness.bearer(orgAdmin.token))
            }
            #expect(second?.code == .failedPrecondition)
            // The coordinator adds the nurse to the care team.
            assign.role = .careTeamMember
            _ = try await h.api.assignCareRelationship(assign, options: IdentityHarness.bearer(coordinator.token))
            let caseload = try await h.api.listCaseload(.init(), options: IdentityHarness.bearer(coordinator.token)).people
            #expect(caseload.map(\.displayName) == ["Pat"])
            var team = Wholecare_Identity_V1_ListCareTeamRequest()
            team.personID = person.account.id
            let members = try await h.api.listCareTeam(team, options: IdentityHarness.bearer(person.accessToken)).members
            #expect(members.count == 2)
            // The platform admin cannot read the care team: administrators see no personal data.
            let byAdmin = await #expect(throws: RPCError.self) {
                try await h.api.listCareTeam(team, options: IdentityHarness.bearer(admin))
            }
            #expect(byAdmin?.code == .permissionDenied)
            var end = Wholecare_Identity_V1_EndCareRelationshipRequest()
            end.relationshipID = relationship.id
            #expect(!(try await h.api.endCareRelationship(end, options: IdentityHarness.bearer(orgAdmin.token))).endedAt.isEmpty)
            #expect(try await h.api.listCaseload(.init(), options: IdentityHarness.bearer(coordinator.token)).people.isEmpty)
        }
    }

    @Test("provider-system tokens are confined to their organisation")
    func providerConfined() async throws {
        try await IdentityHarness.with { h in
            let admin = try await h.admin()
            let agency = try await h.organisation("Sunrise Home Care", admin: admin, kind: .homeCareAgency)
            let other = try await h.organisation("Elsewhere Care", admin: admin, kind: .homeCareAgency)
            var create = Wholecare_Identity_V1_CreateProviderClientRequest()
            create.organisationID = agency
            create.name = "Sunrise rostering system"
            let client = try await h.api.createProviderClient(create, options: IdentityHarness.bearer(admin))
            #expect(client.clientSecret.hasPrefix("pss_"))
            var signIn = Wholecare_Identity_V1_SignInClientRequest()
            signIn.clientID = client.clientID
            signIn.clientSecret = client.clientSecret
            let session = try await h.api.signInClient(signIn)
            #expect(session.refreshToken.isEmpty)
            #expect(session.account.kind == .providerSystem)
            #expect(session.account.organisationID == agency)
            // It cannot act as an organisation admin, for its own organisation or another.
            for org in [agency, other] {
                var professional = Wholecare_Identity_V1_CreateProfessionalRequest()
                professional.organisationID = org
                professional.email = "x@\(org.prefix(4)).test"
                professional.displayName = "X"
                professional.roles = ["nurse"]
                professional.initialPassword = IdentityHarness.password
                let denied = await #expect(throws: RPCError.self) {
                    try await h.api.createProfessional(professional, options: IdentityHarness.bearer(session.accessToken))
                }
                #expect(denied?.code == .permissionDenied)
            }
            // A wrong secret is refused.
            signIn.clientSecret = "pss_wrong"
            let wrong = await #expect(throws: RPCError.self) { try await h.api.signInClient(signIn) }
            #expect(wrong?.code == .unauthenticated)
            // Consent to the other organisation does not reach this one.
            let person = try await h.register("pat@example.org")
            var grant = Wholecare_Identity_V1_GrantConsentRequest()
            grant.granteeOrganisationID = other
            grant.categories = [.record, .budget]
            _ = try await h.api.grantConsent(grant, options: IdentityHarness.bearer(person.accessToken))
            let facts = try await h.store.facts(subject: UUID(), organisation: UUID(uuidString: agency), person: UUID(uuidString: person.account.id)!)
            #expect(facts.consentedCategories.isEmpty)
            let otherFacts = try await h.store.facts(subject: UUID(), organisation: UUID(uuidString: other), person: UUID(uuidString: person.account.id)!)
            #expect(Set(otherFacts.consentedCategories) == ["record", "budget"])
        }
    }

    @Test("access facts and display names are for WholeCare services only")
    func internalMethods() async throws {
        try await IdentityHarness.with { h in
            let person = try await h.register("pat@example.org")
            var facts = Wholecare_Identity_V1_GetAccessFactsRequest()
            facts.subjectID = person.account.id
            facts.personID = person.account.id
            let denied = await #expect(throws: RPCError.self) {
                try await h.api.getAccessFacts(facts, options: IdentityHarness.bearer(person.accessToken))
            }
            #expect(denied?.code == .permissionDenied)
        }
    }
}

/// Test access to identity's translation of store facts into policy facts.
enum IdentityRPCServiceFacts {
    static func policy(_ facts: IdentityStore.Facts) -> AccessFacts {
        var scopes: [DataCategory: Bool] = [:]
        for text in facts.carerScopes {
            let parts = text.split(separator: ":")
            if let category = DataCategory(rawValue: String(parts[0])) { scopes[category] = (scopes[category] ?? false) || parts[1] == "write" }
        }
        return AccessFacts(personExists: facts.personExists, carerScopes: scopes)
    }
}
