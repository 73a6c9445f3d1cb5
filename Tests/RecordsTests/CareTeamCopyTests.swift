import Auth
import Contracts
import Foundation
import Postgres
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import Synchronization
import Testing
import WholeCareCrypto

/// Records' copy of care teams, kept from identity's change feed, from which the record
/// summary shows the care team.
@Suite("Care-team copy")
struct CareTeamCopyTests {
    static func summary(_ h: RecordsHarness, person: String, token: String) async throws -> Wholecare_Records_V1_Summary {
        var request = Wholecare_Records_V1_GetSummaryRequest()
        request.personID = person
        return try await h.records.getSummary(request, options: RecordsHarness.bearer(token))
    }

    /// What identity itself answers for the care team, as records shows it.
    static func identityTeam(_ h: RecordsHarness, person: String, token: String) async throws -> [Wholecare_Records_V1_CareTeamMember]? {
        var request = Wholecare_Identity_V1_ListCareTeamRequest()
        request.personID = person
        do {
            return try await h.identity.api.listCareTeam(request, options: RecordsHarness.bearer(token)).members.map { m in
                var out = Wholecare_Records_V1_CareTeamMember()
                out.professionalID = m.professionalID
                out.name = m.professionalName
                out.role = m.role == .careCoordinator ? "care coordinator" : "care team member"
                out.organisationID = m.organisationID
                return out
            }
        } catch let error as RPCError where error.code == .permissionDenied {
            return nil
        }
    }

    func assign(_ h: RecordsHarness, _ p: RecordsHarness.People, professional: String, role: Wholecare_Identity_V1_RelationshipRole) async throws -> String {
        var assign = Wholecare_Identity_V1_AssignCareRelationshipRequest()
        assign.personID = p.person.account.id
        assign.professionalID = professional
        assign.role = role
        return try await h.identity.api.assignCareRelationship(assign, options: RecordsHarness.bearer(p.admin)).id
    }

    func end(_ h: RecordsHarness, _ p: RecordsHarness.People, relationship: String) async throws {
        var end = Wholecare_Identity_V1_EndCareRelationshipRequest()
        end.relationshipID = relationship
        _ = try await h.identity.api.endCareRelationship(end, options: RecordsHarness.bearer(p.admin))
    }

    @Test("the summary shows the care team from records' copy once it has caught up, the same team identity lists, and follows assignments and endings after each sync")
    func followsIdentity() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            #expect(!h.service.careTeams.isCaughtUp)
            // Before the copy has caught up, the summary asks identity.
            let before = try await Self.summary(h, person: person, token: p.person.accessToken)
            #expect(before.careTeam.map(\.role) == ["care coordinator"])
            #expect(try await h.db.query("SELECT count(*) AS n FROM care_team")[0].decode("n", as: Int.self) == 0)

            #expect(try await h.service.careTeams.sync() >= 1)
            #expect(h.service.careTeams.isCaughtUp)
            let fromCopy = try await Self.summary(h, person: person, token: p.person.accessToken)
            #expect(fromCopy.careTeam == before.careTeam)
            #expect(fromCopy.careTeam.first?.name == "Pro cc@northshire.test")
            #expect(fromCopy.careTeam.first?.professionalID == p.coordinator.id)
            #expect(fromCopy.careTeam.first?.organisationID == p.council)

            // A new member shows after the next sync (not before: the copy follows identity).
            let helper = try await h.identity.professional("aa@northshire.test", org: p.council, roles: ["social_worker"], admin: p.admin)
            let membership = try await assign(h, p, professional: helper.id, role: .careTeamMember)
            #expect(try await Self.summary(h, person: person, token: p.person.accessToken).careTeam.count == 1)
            #expect(try await h.service.careTeams.sync() == 1)
            let two = try await Self.summary(h, person: person, token: p.person.accessToken)
            #expect(two.careTeam.map(\.role) == ["care coordinator", "care team member"])
            #expect(two.careTeam.map(\.professionalID) == [p.coordinator.id, helper.id])
            #expect(two.careTeam == (try await Self.identityTeam(h, person: person, token: p.person.accessToken)))

            // Ending a relationship removes it from the copy itself, not only from the summary.
            try await end(h, p, relationship: membership)
            #expect(try await h.service.careTeams.sync() == 1)
            #expect(try await Self.summary(h, person: person, token: p.person.accessToken).careTeam.map(\.professionalID) == [p.coordinator.id])
            let kept = try await h.db.query("SELECT relationship_id FROM care_team").map { try $0.decode("relationship_id", as: UUID.self) }
            #expect(kept.count == 1)
            #expect(!kept.contains(UUID(uuidString: membership)!))
            // Nothing new: a sync applies nothing and the position stays.
            let position = try await h.store.careTeamFeedPosition()
            #expect(try await h.service.careTeams.sync() == 0)
            #expect(try await h.store.careTeamFeedPosition() == position)
        }
    }

    @Test("who sees the care team in a summary is decided as identity decides who may list it: the person, their coordinator and their carer do; a provider system reading by consent does not")
    func sameAudienceAsIdentity() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            try await h.service.careTeams.sync()
            for (who, token) in [("person", p.person.accessToken), ("coordinator", p.coordinator.token), ("carer", p.carer.accessToken),
                                 ("provider", p.provider)] {
                let shown = try await Self.summary(h, person: person, token: token).careTeam
                let identity = try await Self.identityTeam(h, person: person, token: token)
                #expect(shown == (identity ?? []), "\(who)")
                #expect(shown.isEmpty == (who == "provider"), "\(who)")
            }
        }
    }

    @Test("the change feed answers only records' service in its own name, refuses bad paging, and pages in order")
    func feedAccess() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            for token in [p.person.accessToken, p.admin, p.coordinator.token, p.provider] {
                let denied = await #expect(throws: RPCError.self) {
                    try await h.identity.api.listCareTeamChanges(Wholecare_Identity_V1_ListCareTeamChangesRequest(), options: RecordsHarness.bearer(token))
                }
                #expect(denied?.code == .permissionDenied)
            }
            // Another WholeCare service (the ledger), in its own name, is refused too.
            let secret = SecureRandom.token(byteCount: 32)
            try await h.identity.store.createClient(clientID: "svc-ledger", secretHash: Digest.sha256(secret), kind: "service",
                                                    name: "ledger", organisationID: nil)
            let ledger = IdentityLink(channel: h.identity.channel, clientID: "svc-ledger", secret: secret)
            let ledgerToken = try await ledger.credentials.token()
            let other = await #expect(throws: RPCError.self) {
                try await h.identity.api.listCareTeamChanges(.init(), options: RecordsHarness.bearer(ledgerToken))
            }
            #expect(other?.code == .permissionDenied)
            // Through the ledger's link that refusal is the deployment's fault, not a caller's.
            let relayed = await #expect(throws: RPCError.self) { try await ledger.careTeamChanges(after: 0, pageSize: 10) }
            #expect(relayed?.code == .internal)
            for (after, size) in [(Int64(-1), Int32(10)), (0, 1001), (0, -1)] {
                let refused = await #expect(throws: RPCError.self) { try await h.link.careTeamChanges(after: after, pageSize: size) }
                #expect(refused?.code == .invalidArgument)
            }
            // Three relationships (the coordinator and two members): three changes, one a page.
            for n in 0..<2 {
                let pro = try await h.identity.professional("m\(n)@northshire.test", org: p.council, roles: ["nurse"], admin: p.admin)
                _ = try await assign(h, p, professional: pro.id, role: .careTeamMember)
            }
            var after: Int64 = 0
            var seen: [Int64] = []
            while true {
                let page = try await h.link.careTeamChanges(after: after, pageSize: 1)
                #expect(page.changes.count == 1)
                seen += page.changes.map(\.sequence)
                after = page.changes.last!.sequence
                if !page.more { break }
            }
            #expect(seen.count == 3)
            #expect(seen == seen.sorted())
            #expect(try await h.link.careTeamChanges(after: after, pageSize: 10).changes.isEmpty)
            // A copy synced a page at a time ends where one synced at once would.
            #expect(try await h.service.careTeams.sync(pageSize: 1) == 3)
            #expect(try await Self.summary(h, person: p.person.account.id, token: p.person.accessToken).careTeam.count == 3)
        }
    }

    @Test("changes at or before the copy's position are skipped, so a follower with an older page never undoes a newer state")
    func stalePagesSkipped() async throws {
        try await RecordsHarness.with { (h: RecordsHarness) async throws in
            let (relationship, person, professional, organisation) = (UUID(), UUID(), UUID(), UUID())
            func change(_ sequence: Int64, ended: Bool) -> CareTeamChange {
                CareTeamChange(sequence: sequence, relationshipID: relationship, personID: person, professionalID: professional,
                               organisationID: organisation, role: "care_team_member", professionalName: "A Nurse", ended: ended)
            }
            func rows() async throws -> Int {
                try await h.db.query("SELECT count(*) AS n FROM care_team WHERE person_id = \(person)")[0].decode("n")
            }
            #expect(try await h.store.applyCareTeamChanges([change(5, ended: false)]) == 1)
            #expect(try await rows() == 1)
            #expect(try await h.store.applyCareTeamChanges([change(7, ended: true)]) == 1)
            #expect(try await rows() == 0)
            // Another follower's page, read before the ending, arrives late: skipped.
            #expect(try await h.store.applyCareTeamChanges([change(5, ended: false)]) == 0)
            #expect(try await rows() == 0)
            #expect(try await h.store.careTeamFeedPosition() == 7)
            // Within one page the later change of a relationship wins, in any order.
            #expect(try await h.store.applyCareTeamChanges([change(9, ended: true), change(8, ended: false)]) == 2)
            #expect(try await rows() == 0)
            #expect(try await h.store.careTeamFeedPosition() == 9)
        }
    }

    @Test("a copy that has not caught up within its allowed lag is not read: summaries ask identity again")
    func staleCopyNotRead() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            // A clock the test moves.
            let offset = Mutex<Duration>(.zero)
            let start = ContinuousClock.now
            let clock: @Sendable () -> ContinuousClock.Instant = { start + offset.withLock { $0 } }
            let copy = CareTeamCopy(store: h.store, identity: h.link, maxLag: .seconds(30), now: clock)
            #expect(!copy.isCaughtUp)
            try await copy.sync()
            #expect(copy.isCaughtUp)
            offset.withLock { $0 = .seconds(29) }
            #expect(copy.isCaughtUp)
            offset.withLock { $0 = .seconds(31) }
            #expect(!copy.isCaughtUp)
            try await copy.sync()
            #expect(copy.isCaughtUp)
            // The service's copy: the relationship ends in identity while the copy does not
            // follow; the summary shows the copy until it is too old, then identity's answer.
            let service = RecordsRPCService(store: h.store, identity: h.link, refusals: RefusalLog(), careTeams: copy)
            var list = Wholecare_Identity_V1_ListCareTeamRequest()
            list.personID = p.person.account.id
            let coordinatorRelationship = try await h.identity.api.listCareTeam(list, options: RecordsHarness.bearer(p.person.accessToken)).members[0].id
            try await end(h, p, relationship: coordinatorRelationship)
            // A member only identity knows of (the copy is not synced again).
            let helper = try await h.identity.professional("new@northshire.test", org: p.council, roles: ["nurse"], admin: p.admin)
            _ = try await assign(h, p, professional: helper.id, role: .careTeamMember)
            var router = RPCRouter()
            router.register(service)
            service.registerEncodedReplies(into: &router)
            router.interceptors = [h.link.authInterceptor()]
            let records = Wholecare_Records_V1_Records.Client(RPCClient(channel: InProcessChannel(router: router), retryPolicy: .none))
            var request = Wholecare_Records_V1_GetSummaryRequest()
            request.personID = p.person.account.id
            let fresh = try await records.getSummary(request, options: RecordsHarness.bearer(p.person.accessToken))
            // The copy: still the coordinator, not yet the new member.
            #expect(fresh.careTeam.map(\.professionalID) == [p.coordinator.id])
            offset.withLock { $0 = .seconds(62) }
            let stale = try await records.getSummary(request, options: RecordsHarness.bearer(p.person.accessToken))
            // Identity's answer: the new member only.
            #expect(stale.careTeam.map(\.professionalID) == [helper.id])
        }
    }

    @Test("the follower keeps the copy up to date by itself, within its interval")
    func followerRuns() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let copy = h.service.careTeams
            let follower = Task { try? await CareTeamFollower(copy: copy, interval: .milliseconds(50), logger: .init(label: "test")).run() }
            let helper = try await h.identity.professional("late@northshire.test", org: p.council, roles: ["nurse"], admin: p.admin)
            _ = try await assign(h, p, professional: helper.id, role: .careTeamMember)
            // The new member reaches records' own table without anyone calling sync.
            let deadline = ContinuousClock.now + .seconds(10)
            var copied = 0
            while ContinuousClock.now < deadline {
                copied = try await h.db.query("SELECT count(*) AS n FROM care_team WHERE professional_id = \(UUID(uuidString: helper.id)!)")[0].decode("n")
                if copied == 1, copy.isCaughtUp { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(copied == 1)
            #expect(copy.isCaughtUp)
            let team = try await Self.summary(h, person: p.person.account.id, token: p.person.accessToken).careTeam.map(\.professionalID)
            #expect(team == [p.coordinator.id, helper.id])
            follower.cancel()
            await follower.value
        }
    }
}
