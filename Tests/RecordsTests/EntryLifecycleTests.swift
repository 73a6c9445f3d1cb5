import Contracts
import Foundation
import Postgres
import RecordsService
import RPC
import ServiceTestSupport
import TestSupport
import Testing

@Suite("Record entries")
struct EntryLifecycleTests {
    @Test("add, amend and mark entered-in-error keep the whole history")
    func lifecycle() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            var condition = RecordsHarness.note("Type 2 diabetes, diet controlled", kind: .condition, date: "2025-03-01")
            var code = Wholecare_Records_V1_Code()
            code.system = "http://snomed.info/sct"
            code.code = "44054006"
            code.display = "Diabetes mellitus type 2"
            condition.code = code
            let first = try await h.add(condition, for: p.person.account.id, token: p.coordinator.token, purpose: "annual review")
            #expect(first.version == 1)
            #expect(first.source.kind == .professional)
            #expect(first.source.display == "Pro cc@northshire.test, Northshire Council")

            var amended = condition
            amended.text = "Type 2 diabetes, now on metformin"
            var amend = Wholecare_Records_V1_AmendEntryRequest()
            amend.entryID = first.id
            amend.entry = amended
            let second = try await h.records.amendEntry(amend, options: RecordsHarness.bearer(p.coordinator.token))
            #expect(second.version == 2)
            #expect(second.supersedesID == first.id)
            #expect(second.lineageID == first.lineageID)

            // Amending the old version again is refused: only the current one can change.
            let stale = await #expect(throws: RPCError.self) {
                try await h.records.amendEntry(amend, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(stale?.code == .failedPrecondition)

            var error = Wholecare_Records_V1_MarkEnteredInErrorRequest()
            error.entryID = second.id
            error.reason = "Recorded against the wrong person"
            let marked = try await h.records.markEnteredInError(error, options: RecordsHarness.bearer(p.coordinator.token))
            #expect(marked.status == .enteredInError)
            #expect(marked.enteredInErrorReason == "Recorded against the wrong person")

            var history = Wholecare_Records_V1_GetEntryHistoryRequest()
            history.entryID = first.id
            let versions = try await h.records.getEntryHistory(history, options: RecordsHarness.bearer(p.person.accessToken)).versions
            #expect(versions.map(\.version) == [2, 1])
            #expect(versions[0].status == .enteredInError)
            #expect(versions[1].status == .superseded)
            #expect(versions[1].supersededByID == second.id)
            #expect(versions[1].text == "Type 2 diabetes, diet controlled")

            // The database itself refuses to delete or rewrite an entry.
            let deletion = await #expect(throws: PostgresError.self) {
                try await h.db.query("DELETE FROM entries WHERE id = \(UUID(uuidString: first.id)!)")
            }
            #expect(deletion?.sqlState == "42501")
            let rewrite = await #expect(throws: PostgresError.self) {
                try await h.db.query("UPDATE entries SET author_display = 'someone else' WHERE id = \(UUID(uuidString: first.id)!)")
            }
            #expect(rewrite?.sqlState == "42501")
        }
    }

    @Test("self-entered entries are labelled as such, and others cannot amend them")
    func selfEntered() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            var reading = Wholecare_Records_V1_EntryInput()
            reading.kind = .observation
            reading.effectiveStart = "2026-11-25T08:30:00Z"
            var observation = Wholecare_Records_V1_ObservationDetails()
            var systolic = Wholecare_Records_V1_Quantity()
            systolic.value = 128
            systolic.unit = "mm[Hg]"
            var diastolic = systolic
            diastolic.value = 82
            observation.components = ["systolic": systolic, "diastolic": diastolic]
            reading.observation = observation
            reading.text = "Home blood pressure reading"
            let mine = try await h.add(reading, for: p.person.account.id, token: p.person.accessToken)
            #expect(mine.source.kind == .self_)
            #expect(mine.source.display == "Added by you")
            var get = Wholecare_Records_V1_GetEntryRequest()
            get.entryID = mine.id
            let seenByCoordinator = try await h.records.getEntry(get, options: RecordsHarness.bearer(p.coordinator.token))
            #expect(seenByCoordinator.source.display == "Added by Pat Morgan (self-entered)")
            #expect(seenByCoordinator.observation.components["systolic"]?.value == 128)
            var amend = Wholecare_Records_V1_AmendEntryRequest()
            amend.entryID = mine.id
            amend.entry = reading
            let refused = await #expect(throws: RPCError.self) {
                try await h.records.amendEntry(amend, options: RecordsHarness.bearer(p.coordinator.token))
            }
            #expect(refused?.code == .permissionDenied)
        }
    }

    @Test("free text and personal details are encrypted at rest: a canary never appears in pg_dump")
    func encryptedAtRest() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let canary = "CANARY-\(UUID().uuidString)"
            _ = try await h.add(RecordsHarness.note("Discussed \(canary) with Pat"), for: p.person.account.id, token: p.coordinator.token)
            var update = Wholecare_Records_V1_UpdateDetailsRequest()
            update.personID = p.person.account.id
            update.details.preferredName = "Pat"
            update.details.address = "1 \(canary) Street"
            update.expectedVersion = 0
            _ = try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.person.accessToken))
            var goal = RecordsHarness.note("", kind: .goal)
            goal.goal.target = "Walk to the shop"
            let goalEntry = try await h.add(goal, for: p.person.account.id, token: p.person.accessToken)
            var progress = Wholecare_Records_V1_AddGoalProgressRequest()
            progress.goalEntryID = goalEntry.id
            progress.percent = 40
            progress.note = "Halfway with \(canary)"
            _ = try await h.records.addGoalProgress(progress, options: RecordsHarness.bearer(p.person.accessToken))

            let schema = h.schema
            let dump = try await offThread { try Self.pgDump(schema: schema) }
            #expect(dump.contains("CREATE TABLE"), "the dump should have worked")
            #expect(!dump.contains(canary))
            #expect(!dump.contains("Discussed"))
            // And the service still reads it back.
            var list = Wholecare_Records_V1_ListEntriesRequest()
            list.personID = p.person.account.id
            list.kinds = [.note]
            let entries = try await h.records.listEntries(list, options: RecordsHarness.bearer(p.person.accessToken)).entries
            #expect(entries.first?.text.contains(canary) == true)
        }
    }

    static func pgDump(schema: String) throws -> String {
        let url = try TestDatabase.adminURL()
        let bin = ["/usr/lib/postgresql/15/bin/pg_dump", "/usr/bin/pg_dump"].first { FileManager.default.isExecutableFile(atPath: $0) }!
        let data = try Subprocess.run(URL(fileURLWithPath: bin), ["--dbname=\(url)", "--schema=\(schema)", "--data-only", "--inserts"])
        // --data-only has no CREATE TABLE; dump the schema definition too for the sanity check.
        let definition = try Subprocess.run(URL(fileURLWithPath: bin), ["--dbname=\(url)", "--schema=\(schema)", "--schema-only"])
        return definition.stdout + data.stdout
    }

    @Test("medications carry their next refill date; the summary shows it with the rest", arguments: [true])
    func medicationsAndSummary(_: Bool) async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            var med = RecordsHarness.note("", kind: .medication, date: "2026-11-01")
            med.medication.name = "Metformin"
            med.medication.dose = "500 mg"
            med.medication.route = "oral"
            med.medication.dosesPerDay = 2
            med.medication.unitsPerDose = 1
            med.medication.quantitySupplied = 56
            med.medication.suppliedOn = "2026-11-01"
            let stored = try await h.add(med, for: p.person.account.id, token: p.coordinator.token)
            #expect(stored.medication.nextRefillOn == "2026-11-29")
            #expect(stored.medication.daysSupply == 28)
            var allergy = RecordsHarness.note("", kind: .allergy, date: "2020-01-01")
            allergy.allergy.substance = "Penicillin"
            allergy.allergy.reaction = "Rash"
            allergy.allergy.severity = "moderate"
            _ = try await h.add(allergy, for: p.person.account.id, token: p.coordinator.token)
            _ = try await h.add(RecordsHarness.note("Asthma", kind: .condition, date: "2010-05-01"), for: p.person.account.id, token: p.coordinator.token)
            var goal = RecordsHarness.note("", kind: .goal)
            goal.goal.target = "Cook a meal independently"
            goal.goal.agreedWithCoordinator = true
            let goalEntry = try await h.add(goal, for: p.person.account.id, token: p.coordinator.token)
            var progress = Wholecare_Records_V1_AddGoalProgressRequest()
            progress.goalEntryID = goalEntry.id
            progress.percent = 60
            _ = try await h.records.addGoalProgress(progress, options: RecordsHarness.bearer(p.person.accessToken))

            var request = Wholecare_Records_V1_GetSummaryRequest()
            request.personID = p.person.account.id
            let summary = try await h.records.getSummary(request, options: RecordsHarness.bearer(p.person.accessToken))
            #expect(summary.currentMedications.map(\.medication.name) == ["Metformin"])
            #expect(summary.allergies.map(\.allergy.substance) == ["Penicillin"])
            #expect(summary.activeConditions.count == 1)
            #expect(summary.goals.first?.goal.latestProgress.percent == 60)
            #expect(summary.careTeam.map(\.role) == ["care coordinator"])
            #expect(summary.latestEntries.count == 4)
            var meds = Wholecare_Records_V1_ListMedicationsRequest()
            meds.personID = p.person.account.id
            #expect(try await h.records.listMedications(meds, options: RecordsHarness.bearer(p.person.accessToken)).medications.count == 1)
        }
    }

    @Test("entries page with a cursor and filter by kind and date")
    func pagination() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            for day in 1...25 {
                let date = String(format: "2026-10-%02d", day)
                _ = try await h.add(RecordsHarness.note("Visit \(day)", kind: day % 5 == 0 ? .encounter : .note, date: date),
                                    for: p.person.account.id, token: p.person.accessToken)
            }
            var request = Wholecare_Records_V1_ListEntriesRequest()
            request.personID = p.person.account.id
            request.pageSize = 10
            var seen: [String] = []
            repeat {
                let page = try await h.records.listEntries(request, options: RecordsHarness.bearer(p.person.accessToken))
                seen += page.entries.map(\.text)
                request.cursor = page.nextCursor
            } while !request.cursor.isEmpty
            #expect(seen.count == 25)
            #expect(seen.first == "Visit 25")
            #expect(seen.last == "Visit 1")
            #expect(Set(seen).count == 25)
            request.cursor = ""
            request.kinds = [.encounter]
            request.effectiveFrom = "2026-10-10"
            let filtered = try await h.records.listEntries(request, options: RecordsHarness.bearer(p.person.accessToken)).entries
            #expect(filtered.map(\.text) == ["Visit 25", "Visit 20", "Visit 15", "Visit 10"])
            request.cursor = "not-a-cursor"
            let bad = await #expect(throws: RPCError.self) {
                try await h.records.listEntries(request, options: RecordsHarness.bearer(p.person.accessToken))
            }
            #expect(bad?.metadata["field"] == "cursor")
        }
    }

    struct BadInput: Sendable, CustomTestStringConvertible {
        let name: String
        let field: String
        let build: @Sendable () -> Wholecare_Records_V1_EntryInput
        var testDescription: String { name }
    }

    static let badInputs: [BadInput] = [
        BadInput(name: "unknown kind", field: "entry.kind") { var e = RecordsHarness.note("x"); e.kind = .unspecified; return e },
        BadInput(name: "missing date", field: "entry.effective_start") { RecordsHarness.note("x", date: "") },
        BadInput(name: "impossible date", field: "entry.effective_start") { RecordsHarness.note("x", date: "2026-02-30") },
        BadInput(name: "future date", field: "entry.effective_start") { RecordsHarness.note("x", date: "2099-01-01") },
        BadInput(name: "end before start", field: "entry.effective_end") {
            var e = RecordsHarness.note("x", kind: .encounter)
            e.effectiveEnd = "2026-11-01"
            return e
        },
        BadInput(name: "oversize text", field: "entry.text") { RecordsHarness.note(String(repeating: "a", count: 20_001)) },
        BadInput(name: "empty entry", field: "entry.text") { RecordsHarness.note("") },
        BadInput(name: "medication without a name", field: "entry.medication.name") {
            var e = RecordsHarness.note("", kind: .medication)
            e.medication.dose = "5 mg"
            return e
        },
        BadInput(name: "medication details on a note", field: "entry.medication") {
            var e = RecordsHarness.note("x")
            e.medication.name = "Aspirin"
            return e
        },
        BadInput(name: "negative quantity", field: "entry.medication.quantity_supplied") {
            var e = RecordsHarness.note("", kind: .medication)
            e.medication.name = "Aspirin"
            e.medication.quantitySupplied = -3
            return e
        },
        BadInput(name: "allergy severity not in the list", field: "entry.allergy.severity") {
            var e = RecordsHarness.note("", kind: .allergy)
            e.allergy.substance = "Nuts"
            e.allergy.severity = "catastrophic"
            return e
        },
        BadInput(name: "status entered-in-error set directly", field: "entry.status") {
            var e = RecordsHarness.note("x")
            e.status = .enteredInError
            return e
        },
    ]

    @Test("bad input is refused with INVALID_ARGUMENT naming the field, and writes nothing", arguments: badInputs)
    func badInput(_ bad: BadInput) async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            let before = try await h.entryCount(p.person.account.id)
            let logBefore = try await h.accessLogCount(p.person.account.id)
            let error = await #expect(throws: RPCError.self) {
                try await h.add(bad.build(), for: p.person.account.id, token: p.coordinator.token)
            }
            #expect(error?.code == .invalidArgument)
            #expect(error?.metadata["field"] == bad.field, "\(error?.message ?? "")")
            #expect(try await h.entryCount(p.person.account.id) == before)
            #expect(try await h.accessLogCount(p.person.account.id) == logBefore)
        }
    }

    @Test("details are versioned; a stale update is refused with ABORTED")
    func detailsVersioning() async throws {
        try await RecordsHarness.with { h in
            let p = try await h.people()
            var update = Wholecare_Records_V1_UpdateDetailsRequest()
            update.personID = p.person.account.id
            update.details.preferredName = "Pat"
            update.details.phone = "+44 7700 900123"
            update.details.contactPreferences = ["sms", "email"]
            var kin = Wholecare_Records_V1_NextOfKin()
            kin.name = "Sam Morgan"
            kin.relationship = "son"
            update.details.nextOfKin = [kin]
            update.expectedVersion = 0
            let first = try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.person.accessToken))
            #expect(first.version == 1)
            update.details.preferredLanguage = "cy"
            update.expectedVersion = 1
            let second = try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.coordinator.token))
            #expect(second.version == 2)
            #expect(second.updatedBy.kind == .professional)
            update.expectedVersion = 1
            let stale = await #expect(throws: RPCError.self) {
                try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.person.accessToken))
            }
            #expect(stale?.code == .aborted)
            var versions = Wholecare_Records_V1_ListDetailsVersionsRequest()
            versions.personID = p.person.account.id
            let all = try await h.records.listDetailsVersions(versions, options: RecordsHarness.bearer(p.person.accessToken)).versions
            #expect(all.map(\.version) == [2, 1])
            #expect(all[1].preferredLanguage == "")
            update.details.phone = "call me maybe"
            update.expectedVersion = 2
            let badPhone = await #expect(throws: RPCError.self) {
                try await h.records.updateDetails(update, options: RecordsHarness.bearer(p.person.accessToken))
            }
            #expect(badPhone?.metadata["field"] == "details.phone")
        }
    }
}
