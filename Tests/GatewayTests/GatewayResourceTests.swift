import Foundation
import GatewayService
import HTTPTypes
import ServiceTestSupport
import Testing

@Suite("Gateway resources")
struct GatewayResourceTests {
    @Test("consents and carers: grant and revoke a consent; invite a carer, who accepts and then loses access when revoked")
    func consentAndCarers() async throws {
        try await GatewayHarness.with { h in
            let admin = try await h.suite.identity.admin()
            let practice = try await h.suite.identity.organisation("Riverside Surgery", admin: admin, kind: .gpPractice)
            let (token, _) = try await h.register("pat@example.org")
            let granted = try await h.call(.post, "/v1/me/consents", token: token,
                                           json: ["grantee_organisation_id": practice, "categories": ["RECORD", "BUDGET"]])
            #expect(granted.status == .created, "\(granted.text)")
            let consentID = try #require(granted.json["id"] as? String)
            let listed = try await h.call(.get, "/v1/me/consents", token: token)
            #expect((listed.json["consents"] as? [[String: Any]])?.map { $0["id"] as? String } == [consentID])
            let revoked = try await h.call(.delete, "/v1/me/consents/\(consentID)", token: token)
            #expect(revoked.status == .ok, "\(revoked.text)")
            #expect(revoked.json["revoked_at"] as? String != nil)

            let invited = try await h.call(.post, "/v1/me/carer-invitations", token: token,
                                           json: ["carer_email": "sam@example.org", "scopes": [["category": "RECORD"]]])
            #expect(invited.status == .created, "\(invited.text)")
            let code = try #require(invited.json["invitation_code"] as? String)
            let grantID = try #require((invited.json["grant"] as? [String: Any])?["id"] as? String)
            let carer = try await h.register("sam@example.org", name: "Sam Carer", kind: "CARER")
            let accepted = try await h.call(.post, "/v1/carer-invitations/accept", token: carer.token, json: ["invitation_code": code])
            #expect(accepted.status == .ok, "\(accepted.text)")
            let reused = try await h.call(.post, "/v1/carer-invitations/accept", token: carer.token, json: ["invitation_code": code])
            #expect(reused.status.code >= 400 && reused.status.code < 500)
            let carersOfPat = try await h.call(.get, "/v1/me/carers", token: token)
            #expect((carersOfPat.json["my_carers"] as? [[String: Any]])?.count == 1, "\(carersOfPat.text)")
            let ended = try await h.call(.delete, "/v1/me/carers/\(grantID)", token: token)
            #expect(ended.status == .ok, "\(ended.text)")
            let forCarer = try await h.call(.get, "/v1/me/carers", token: carer.token)
            let caredFor = forCarer.json["people_i_care_for"] as? [[String: Any]] ?? []
            #expect(caredFor.count == 1 && caredFor.first?["revoked_at"] != nil, "\(forCarer.text)")
            // Someone who is neither the person nor the carer is told the grant does not exist.
            let stranger = try await h.register("eve@example.org", name: "Eve")
            let notTheirs = try await h.call(.delete, "/v1/me/carers/\(grantID)", token: stranger.token)
            #expect(notTheirs.status == .notFound)
        }
    }

    @Test("administration: organisations, professionals and provider clients need an administrator; care relationships open a person's record")
    func administrationAndCaseload() async throws {
        try await GatewayHarness.with { h in
            let admin = try await h.suite.identity.admin()
            let (personToken, personID) = try await h.register("pat@example.org")
            let asPerson = try await h.call(.post, "/v1/admin/organisations", token: personToken, json: ["name": "Mine", "kind": "OTHER"])
            #expect(asPerson.status == .forbidden)

            let organisation = try await h.call(.post, "/v1/admin/organisations", token: admin, json: ["name": "Northshire Council", "kind": "COUNCIL"])
            #expect(organisation.status == .created, "\(organisation.text)")
            let orgID = try #require(organisation.json["id"] as? String)
            let listed = try await h.call(.get, "/v1/admin/organisations", token: admin)
            #expect((listed.json["organisations"] as? [[String: Any]])?.contains { $0["id"] as? String == orgID } == true)

            let professional = try await h.call(.post, "/v1/admin/organisations/\(orgID)/professionals", token: admin, json: [
                "email": "cc@northshire.test", "display_name": "Chris Coordinator", "roles": ["care_coordinator"],
                "initial_password": "tangerine piano voyage meadow",
            ])
            #expect(professional.status == .created, "\(professional.text)")
            let professionalID = try #require(professional.json["id"] as? String)
            let client = try await h.call(.post, "/v1/admin/organisations/\(orgID)/clients", token: admin, json: ["name": "Agency roster"])
            #expect(client.status == .created, "\(client.text)")
            #expect((client.json["client_secret"] as? String)?.isEmpty == false)

            let signIn = try await h.call(.post, "/v1/auth/sign-in", json: ["email": "cc@northshire.test", "password": "tangerine piano voyage meadow"])
            let coordinatorToken = try #require(signIn.json["access_token"] as? String)
            let before = try await h.call(.get, "/v1/people/\(personID)/record", token: coordinatorToken)
            #expect(before.status == .forbidden)

            let assigned = try await h.call(.post, "/v1/admin/care-relationships", token: admin,
                                            json: ["person_id": personID, "professional_id": professionalID, "role": "CARE_COORDINATOR"])
            #expect(assigned.status == .created, "\(assigned.text)")
            let relationshipID = try #require(assigned.json["id"] as? String)
            let caseload = try await h.call(.get, "/v1/caseload", token: coordinatorToken)
            #expect((caseload.json["people"] as? [[String: Any]])?.count == 1, "\(caseload.text)")
            let note = try await h.call(.post, "/v1/people/\(personID)/record/entries?purpose=Review%20visit", token: coordinatorToken,
                                        json: ["kind": "ENCOUNTER", "effective_start": "2026-11-20", "text": "Home visit; all well"])
            #expect(note.status == .created, "\(note.text)")
            let record = try await h.call(.get, "/v1/people/\(personID)/record?purpose=Review%20visit", token: coordinatorToken)
            #expect(record.status == .ok)
            let team = try await h.call(.get, "/v1/people/\(personID)/care-team", token: coordinatorToken)
            #expect(team.status == .ok)

            // The person sees who looked, and why.
            let log = try await h.call(.get, "/v1/me/record/access-log", token: personToken)
            let purposes = (log.json["entries"] as? [[String: Any]] ?? []).compactMap { $0["purpose"] as? String }
            #expect(purposes.contains("Review visit"), "\(log.text)")

            let ended = try await h.call(.delete, "/v1/admin/care-relationships/\(relationshipID)", token: admin)
            #expect(ended.status == .ok, "\(ended.text)")
            let after = try await h.call(.get, "/v1/people/\(personID)/record", token: coordinatorToken)
            #expect(after.status == .forbidden)
        }
    }

    @Test("requests are checked against the OpenAPI document before any service is called; wrong methods get 405 with Allow")
    func validationAndMethods() async throws {
        try await GatewayHarness.with { h in
            let (token, _) = try await h.register("pat@example.org")
            let control = try await h.call(.post, "/v1/me/record/entries", token: token,
                                           json: ["kind": "NOTE", "effective_start": "2026-11-20", "code": ["display": "bad\u{7}bell"]])
            #expect(control.status == .badRequest)
            #expect(control.json["field"] as? String == "code.display")
            let twoKinds = try await h.call(.post, "/v1/me/record/entries", token: token, json: [
                "kind": "GOAL", "effective_start": "2026-11-20", "goal": ["target": "Walk to the shop"], "allergy": ["substance": "Penicillin"],
            ])
            #expect(twoKinds.status == .badRequest)
            let nullValue = try await h.call(.put, "/v1/me/details", token: token, json: ["details": ["preferred_name": NSNull()]])
            #expect(nullValue.status == .badRequest)
            #expect(nullValue.json["field"] as? String == "details.preferred_name")
            let page = try await h.call(.get, "/v1/me/record/access-log?page_size=0", token: token)
            #expect(page.status == .badRequest)
            #expect(page.json["field"] as? String == "page_size")
            let cursor = try await h.call(.get, "/v1/me/record/access-log?cursor=abc", token: token)
            #expect(cursor.status == .badRequest)
            let badID = try await h.call(.get, "/v1/me/record/entries/not-an-id", token: token)
            #expect(badID.status == .badRequest)
            #expect(badID.json["field"] as? String == "entry_id")
            // Authentication comes before validation: an anonymous caller learns nothing about the body.
            let anonymous = try await h.call(.post, "/v1/me/record/entries", json: ["kind": 7])
            #expect(anonymous.status == .unauthorized)
            // Nothing was written by any refused request.
            let entries = try await h.call(.get, "/v1/me/record/entries", token: token)
            #expect((entries.json["entries"] as? [[String: Any]] ?? []).isEmpty)

            let wrongMethod = try await h.call(.patch, "/v1/me/details", token: token)
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.headers[.allow] == "GET, HEAD, OPTIONS, PUT")
            let options = try await h.call(.options, "/v1/me/record/entries")
            #expect(options.status == .noContent)
            #expect(options.headers[.allow] == "GET, HEAD, OPTIONS, POST")
        }
    }
}
