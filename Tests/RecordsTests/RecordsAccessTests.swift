import Contracts
import Foundation
import Postgres
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import Testing

@Suite("Records authorization and access log")
struct RecordsAccessTests {
    @Test("the access log grows on each professional read and not on the person's own; denials are logged too")
    func accessLog() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            var summary = Wholecare_Records_V1_GetSummaryRequest()
            summary.personID = person
            _ = try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.person.accessToken))
            #expect(try await h.accessLogCount(person) == 0)

            summary.purpose = "preparing for Tuesday's review"
            _ = try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.coordinator.token))
            _ = try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.coordinator.token))
            #expect(try await h.accessLogCount(person) == 2)

            let denied = await #expect(throws: RPCError.self) {
                try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.nurseElsewhere.token))
            }
            #expect(denied?.code == .permissionDenied)
            #expect(try await h.accessLogCount(person) == 3)

            var list = Wholecare_Records_V1_ListAccessLogRequest()
            list.personID = person
            let log = try await h.records.listAccessLog(list, options: RecordsHarness.bearer(p.person.accessToken)).entries
            #expect(log.count == 3)
            #expect(log[0].allowed == false)
            #expect(log[0].accessorName == "Pro nurse@elsewhere.test")
            #expect(log[0].basis.hasPrefix("denied"))
            #expect(log[1].accessorName == "Pro cc@northshire.test")
            #expect(log[1].organisationName == "Northshire Council")
            #expect(log[1].basis == "care_coordinator")
            #expect(log[1].purpose == "preparing for Tuesday's review")
            #expect(log[1].part == "summary")
            // Only the person reads their access log.
            let byCoordinator = await #expect(throws: RPCError.self) {
                try await h.records.listAccessLog(list, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(byCoordinator?.code == .permissionDenied)
            // The log cannot be altered through the database either.
            let tamper = await #expect(throws: PostgresError.self) { try await h.db.query("UPDATE access_log SET allowed = true") }
            #expect(tamper?.sqlState == "42501")
            let erase = await #expect(throws: PostgresError.self) { try await h.db.query("DELETE FROM access_log") }
            #expect(erase?.sqlState == "42501")
            let truncate = await #expect(throws: PostgresError.self) { try await h.db.query("TRUNCATE access_log") }
            #expect(truncate?.sqlState == "42501")
        }
    }

    @Test("identity refusing records' own credentials is records' fault: the caller gets INTERNAL, never UNAUTHENTICATED (which would tell them to sign in again)")
    func ownCredentialsRefused() async throws {
        try await RecordsHarness.with(linkSecret: "not-the-secret") { h in
            let p = try await h.people()
            var summary = Wholecare_Records_V1_GetSummaryRequest()
            summary.personID = p.person.account.id
            summary.purpose = "weekly review"
            // The coordinator's token is good; deciding needs identity's facts, asked in records' own name.
            let error = await #expect(throws: RPCError.self) {
                try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(error?.code == .internal)
            #expect(error?.message.contains("secret") != true)
        }
    }

    enum Who: String, CaseIterable, Sendable {
        case person, carerWithRecordRead, coordinator, professionalWithoutRelationship, providerWithConsent,
             providerWithoutConsent, stranger, administrator
    }

    /// docs/security.md, the rows that concern records: (who, read allowed, write allowed).
    static let matrix: [(Who, Bool, Bool)] = [
        (.person, true, true),
        (.carerWithRecordRead, true, false),
        (.coordinator, true, true),
        (.professionalWithoutRelationship, false, false),
        (.providerWithConsent, true, true),
        (.providerWithoutConsent, false, false),
        (.stranger, false, false),
        (.administrator, false, false),
    ]

    @Test("a professional who may write to the record but did not write an entry is refused its amendment, and the log shows a denial, not an allowed write")
    func revisionRefusalIsLoggedAsDenial() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            let mine = try await h.add(RecordsHarness.note("Walked to the shop"), for: person, token: p.person.accessToken)
            var amend = Wholecare_Records_V1_AmendEntryRequest()
            amend.entryID = mine.id
            amend.entry = RecordsHarness.note("Did not walk")
            let refused = await #expect(throws: RPCError.self) {
                try await h.records.amendEntry(amend, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(refused?.code == .permissionDenied)
            var mark = Wholecare_Records_V1_MarkEnteredInErrorRequest()
            mark.entryID = mine.id
            mark.reason = "not so"
            let unmarked = await #expect(throws: RPCError.self) {
                try await h.records.markEnteredInError(mark, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(unmarked?.code == .permissionDenied)
            var list = Wholecare_Records_V1_ListAccessLogRequest()
            list.personID = person
            let log = try await h.records.listAccessLog(list, options: RecordsHarness.bearer(p.person.accessToken)).entries
            #expect(log.count == 2)
            #expect(log.allSatisfy { !$0.allowed && $0.basis.hasPrefix("denied") && $0.accessorName == "Pro cc@northshire.test" })
            // The entry is unchanged.
            var get = Wholecare_Records_V1_GetEntryRequest()
            get.entryID = mine.id
            let entry = try await h.records.getEntry(get, options: RecordsHarness.bearer(p.person.accessToken))
            #expect(entry.version == 1 && entry.status == mine.status && entry.text == "Walked to the shop")
        }
    }

    @Test("a caller without access cannot tell a real entry from a made-up id, and the attempt is logged as denied")
    func noProbingWithoutAccess() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            let note = try await h.add(RecordsHarness.note("Prefers morning visits"), for: person, token: p.coordinator.token)
            let before = try await h.accessLogCount(person)
            let madeUp = UUID().uuidString.lowercased()
            let outsider = RecordsHarness.bearer(p.nurseElsewhere.token)
            /// The answer to the same call for the real id and for a made-up one.
            func both(_ call: (String) async throws -> Void) async -> (real: RPCError?, madeUp: RPCError?) {
                func answer(_ id: String) async -> RPCError? {
                    do {
                        try await call(id)
                        return nil
                    } catch {
                        return error as? RPCError
                    }
                }
                return (await answer(note.id), await answer(madeUp))
            }
            // Reading, amending (even with another kind), marking in error, adding goal
            // progress to what is not a goal: each answer is the one a made-up id gets.
            var get = Wholecare_Records_V1_GetEntryRequest()
            var history = Wholecare_Records_V1_GetEntryHistoryRequest()
            var amend = Wholecare_Records_V1_AmendEntryRequest()
            amend.entry = RecordsHarness.note("probe", kind: .encounter)
            var mark = Wholecare_Records_V1_MarkEnteredInErrorRequest()
            mark.reason = "probe"
            var progress = Wholecare_Records_V1_AddGoalProgressRequest()
            progress.percent = 10
            let answers = [
                await both { get.entryID = $0; _ = try await h.records.getEntry(get, options: outsider) },
                await both { history.entryID = $0; _ = try await h.records.getEntryHistory(history, options: outsider) },
                await both { amend.entryID = $0; _ = try await h.records.amendEntry(amend, options: outsider) },
                await both { mark.entryID = $0; _ = try await h.records.markEnteredInError(mark, options: outsider) },
                await both { progress.goalEntryID = $0; _ = try await h.records.addGoalProgress(progress, options: outsider) },
            ]
            for (index, answer) in answers.enumerated() {
                #expect(answer.real?.code == .notFound, "call \(index): \(String(describing: answer.real))")
                #expect(answer.real?.code == answer.madeUp?.code && answer.real?.message == answer.madeUp?.message, "call \(index)")
            }
            // Every attempt on the real entry is in the person's log as a denial, and the
            // made-up ids added nothing to it.
            #expect(try await h.accessLogCount(person) == before + answers.count)
            // With access, the same requests get the real reasons.
            amend.entryID = note.id
            progress.goalEntryID = note.id
            let wrongKind = await #expect(throws: RPCError.self) {
                try await h.records.amendEntry(amend, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(wrongKind?.code == .invalidArgument)
            let notAGoal = await #expect(throws: RPCError.self) {
                try await h.records.addGoalProgress(progress, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(notAGoal?.code == .notFound)
            // Someone who may read the record but not revise this entry (not its author) is
            // told so: they can see the entry anyway.
            var readable = Wholecare_Records_V1_AmendEntryRequest()
            readable.entryID = note.id
            readable.entry = RecordsHarness.note("changed by the carer")
            let notTheirs = await #expect(throws: RPCError.self) {
                try await h.records.amendEntry(readable, options: RecordsHarness.bearer(p.carer.accessToken))
            }
            #expect(notTheirs?.code == .permissionDenied)
        }
    }

    @Test("an id that is nobody's is refused exactly like a stranger's, and leaves nothing in any access log")
    func unknownPersonLooksLikeAStranger() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            var summary = Wholecare_Records_V1_GetSummaryRequest()
            summary.personID = p.person.account.id
            let real = await #expect(throws: RPCError.self) {
                try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.nurseElsewhere.token))
            }
            let nobody = UUID().uuidString.lowercased()
            summary.personID = nobody
            let madeUp = await #expect(throws: RPCError.self) {
                try await h.records.getSummary(summary, options: RecordsHarness.bearer(p.nurseElsewhere.token))
            }
            #expect(madeUp?.code == .permissionDenied)
            #expect(madeUp?.message == real?.message)
            #expect(try await h.accessLogCount(nobody) == 0)
            #expect(try await h.accessLogCount(p.person.account.id) == 1, "the real person's log still records the denial")
        }
    }

    @Test("every records row of the authorization matrix", arguments: matrix.map { "\($0.0.rawValue):\($0.1):\($0.2)" })
    func matrixRow(_ encoded: String) async throws {
        let parts = encoded.split(separator: ":")
        let who = Who(rawValue: String(parts[0]))!
        let mayRead = parts[1] == "true", mayWrite = parts[2] == "true"
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let token: String
            switch who {
            case .person: token = p.person.accessToken
            case .carerWithRecordRead: token = p.carer.accessToken
            case .coordinator: token = p.coordinator.token
            case .professionalWithoutRelationship: token = p.nurseElsewhere.token
            case .providerWithConsent: token = p.provider
            case .providerWithoutConsent: token = p.providerNoConsent
            case .stranger: token = p.stranger.accessToken
            case .administrator: token = p.admin
            }
            var list = Wholecare_Records_V1_ListEntriesRequest()
            list.personID = p.person.account.id
            do {
                _ = try await h.records.listEntries(list, options: RecordsHarness.bearer(token))
                #expect(mayRead, "\(who) should not read")
            } catch let error as RPCError {
                #expect(!mayRead && error.code == .permissionDenied, "\(who): \(error)")
            }
            do {
                let entry = try await h.add(RecordsHarness.note("written by \(who)"), for: p.person.account.id, token: token)
                #expect(mayWrite, "\(who) should not write")
                if who == .providerWithConsent {
                    #expect(entry.source.kind == .organisation)
                    #expect(entry.source.display == "Sunrise Home Care")
                    #expect(entry.source.organisationID == p.agency)
                }
            } catch let error as RPCError {
                #expect(!mayWrite && error.code == .permissionDenied, "\(who): \(error)")
            }
        }
    }

    @Test("without a token every method is UNAUTHENTICATED")
    func unauthenticated() async throws {
        try await RecordsHarness.with { h in
            var summary = Wholecare_Records_V1_GetSummaryRequest()
            summary.personID = UUID().uuidString
            let error = await #expect(throws: RPCError.self) { try await h.records.getSummary(summary) }
            #expect(error?.code == .unauthenticated)
        }
    }

    @Test("the FHIR R4 export validates with the fhir.resources package")
    func fhirExport() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let person = p.person.account.id
            var update = Wholecare_Records_V1_UpdateDetailsRequest()
            update.personID = person
            update.details.preferredName = "Pat"
            update.details.phone = "+44 7700 900123"
            update.details.email = "pat@example.org"
            update.details.address = "1 High Street, Northtown"
            update.details.postcode = "nt1 1aa"
            update.details.preferredLanguage = "en-GB"
            var kin = Wholecare_Records_V1_NextOfKin()
            kin.name = "Sam Morgan"
            kin.relationship = "son"
            kin.phone = "07700 900456"
            update.details.nextOfKin = [kin]
            _ = try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.person.accessToken))
            var condition = RecordsHarness.note("Type 2 diabetes", kind: .condition, date: "2025-03-01")
            condition.code.system = "http://snomed.info/sct"
            condition.code.code = "44054006"
            condition.code.display = "Diabetes mellitus type 2"
            let diabetes = try await h.add(condition, for: person, token: p.coordinator.token)
            var wrong = Wholecare_Records_V1_MarkEnteredInErrorRequest()
            wrong.entryID = try await h.add(RecordsHarness.note("Wrong person", kind: .condition), for: person, token: p.coordinator.token).id
            wrong.reason = "wrong person"
            _ = try await h.records.markEnteredInError(wrong, options: RecordsHarness.bearer(p.coordinator.token))
            var med = RecordsHarness.note("", kind: .medication, date: "2026-11-01")
            med.medication.name = "Metformin"
            med.medication.dose = "500 mg"
            med.medication.route = "oral"
            med.medication.dosesPerDay = 2
            med.medication.quantitySupplied = 56
            med.medication.suppliedOn = "2026-11-01"
            _ = try await h.add(med, for: person, token: p.coordinator.token)
            var allergy = RecordsHarness.note("", kind: .allergy, date: "2020-01-01")
            allergy.allergy.substance = "Penicillin"
            allergy.allergy.reaction = "Rash"
            allergy.allergy.severity = "moderate"
            _ = try await h.add(allergy, for: person, token: p.coordinator.token)
            var encounter = RecordsHarness.note("Home visit; reviewed medication", kind: .encounter, date: "2026-11-10T10:00:00Z")
            encounter.effectiveEnd = "2026-11-10T11:00:00Z"
            _ = try await h.add(encounter, for: person, token: p.coordinator.token)
            var bp = Wholecare_Records_V1_EntryInput()
            bp.kind = .observation
            bp.effectiveStart = "2026-11-25T08:30:00Z"
            bp.code.display = "Blood pressure"
            var systolic = Wholecare_Records_V1_Quantity()
            systolic.value = 128
            systolic.unit = "mm[Hg]"
            bp.observation.components = ["systolic": systolic]
            _ = try await h.add(bp, for: person, token: p.person.accessToken)
            var weight = RecordsHarness.note("", kind: .observation, date: "2026-11-20")
            weight.code.display = "Body weight"
            weight.observation.value.value = 72.5
            weight.observation.value.unit = "kg"
            _ = try await h.add(weight, for: person, token: p.person.accessToken)
            _ = try await h.add(RecordsHarness.note("Support plan: two visits a day", kind: .carePlan, date: "2026-11-01"),
                                for: person, token: p.coordinator.token)
            var goal = RecordsHarness.note("", kind: .goal)
            goal.goal.target = "Walk to the shop"
            goal.goal.dueOn = "2027-03-01"
            _ = try await h.add(goal, for: person, token: p.person.accessToken)
            _ = try await h.add(RecordsHarness.note("Feeling better this week"), for: person, token: p.person.accessToken)

            var request = Wholecare_Records_V1_ExportFhirRequest()
            request.personID = person
            let bundle = try await h.records.exportFhir(request, options: RecordsHarness.bearer(p.person.accessToken)).bundleJson
            #expect(bundle.contains(diabetes.id))
            let json = try JSONSerialization.jsonObject(with: Data(bundle.utf8)) as! [String: Any]
            let types = (json["entry"] as! [[String: Any]]).map { ($0["resource"] as! [String: Any])["resourceType"] as! String }
            #expect(Set(types) == ["Patient", "Condition", "MedicationStatement", "AllergyIntolerance", "Encounter", "Observation",
                                   "CarePlan", "Goal"])
            let validation = try await offThread { try FHIRValidator.validate(bundle) }
            #expect(validation.ok, "\(validation.output)")
        }
    }
}

/// Validates a FHIR R4 bundle with the `fhir.resources` Python package (R4 = its 5.x
/// line), which `make deps` installs into `.data/pytools`.
enum FHIRValidator {
    static func validate(_ json: String) throws -> (ok: Bool, output: String) {
        let python = ProcessInfo.processInfo.environment["WHOLECARE_FHIR_PYTHON"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".data/pytools/fhir/bin/python").path
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString).json")
        try json.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = """
            import json, sys, fhir.resources
            assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__
            from fhir.resources.bundle import Bundle
            bundle = Bundle(json.load(open(sys.argv[1])), strict=True)
            print("valid", len(bundle.entry), "entries")
            """
        let result = try Subprocess.run(URL(fileURLWithPath: python), ["-c", script, file.path])
        return (result.status == 0, result.output)
    }
}
