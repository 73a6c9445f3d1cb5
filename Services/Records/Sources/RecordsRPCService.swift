import Auth
import Contracts
import Foundation
import Logging
import RPC

/// The records RPCs: authorization on every call, the access log on every access by
/// someone other than the person, translation to the store and the rules.
public struct RecordsRPCService: Wholecare_Records_V1_Records.ServiceProtocol {
    let store: RecordsStore
    let identity: IdentityLink
    let now: @Sendable () -> Date
    /// Repeated refusals of one caller, counted rather than logged row by row.
    public let refusals: RefusalLog
    /// Records' copy of care teams, for summaries; whoever makes the service also runs a
    /// `CareTeamFollower` on it (the records executable does).
    public let careTeams: CareTeamCopy

    /// `refusals` holds back repeated refusals until ``writeHeldRefusals(all:)`` writes
    /// them: whoever makes the service must also call that (the records executable runs
    /// `HeldRefusalWriter`).
    /// `careTeams`: the care-team copy summaries read (by default one over `store`).
    public init(store: RecordsStore, identity: IdentityLink, refusals: RefusalLog, careTeams: CareTeamCopy? = nil,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.identity = identity
        self.refusals = refusals
        self.careTeams = careTeams ?? CareTeamCopy(store: store, identity: identity)
        self.now = now
    }

    // MARK: - Authorization and the access log

    /// Decides, logs (unless the person is looking at their own record), and throws
    /// PERMISSION_DENIED when refused. `unless` is a further rule of the call's own (who may
    /// revise an entry), applied to a caller the policy allows: its refusal reason makes
    /// the decision a denial, logged as one, so the log never shows an allowed write that
    /// was then refused.
    @discardableResult
    func authorize(_ context: ServerContext, person: UUID, _ action: PersonAction, part: String, purpose: String,
                   unless refusal: ((Principal) -> String?)? = nil) async throws -> Principal {
        let principal = try context.principal()
        let purpose = String(purpose.trimmingCharacters(in: .whitespacesAndNewlines).prefix(200))
        var decision = try await identity.authorizer.decide(principal, action, person: person)
        if decision.isAllowed, let reason = refusal?(principal) { decision = .deny(reason) }
        let isSelf = principal.subjectID == person && principal.isPerson
        // Every access to someone's record is logged, denials too; calls naming no one's id
        // are not (the log is the person's, and made-up ids must not fill it).
        // (If identity cannot say, the refusal is logged anyway.)
        let someone = decision.isAllowed ? true : ((try? await identity.authorizer.facts(for: principal, person: person))?.personExists ?? true)
        if !isSelf, someone {
            let accessAction: String
            switch action {
            case .read: accessAction = "read"
            default: accessAction = "write"
            }
            let basis: String
            switch decision {
            case .allow(let b): basis = b.rawValue
            case .deny(let reason): basis = "denied: " + reason
            }
            // A caller refused again and again is counted after the first few rows a
            // minute, and the count written as one row (see `RefusalLog`).
            let access = RefusalLog.Refusal(
                key: .init(accessorID: principal.subject, accessorKind: principal.kind.rawValue, organisation: principal.organisationID,
                           person: person, action: accessAction, part: part),
                basis: basis, purpose: purpose)
            if decision.isAllowed || refusals.admit(access) {
                try await store.logAccess(access, allowed: decision.isAllowed)
            }
        }
        if case .deny(let reason) = decision {
            throw RPCError(code: .permissionDenied, message: "not allowed to \(action) of this person: \(reason)")
        }
        return principal
    }

    /// `authorize` for a call that names an entry by its id. A caller who may not read the
    /// person's record at all gets the answer an unknown id gets (NOT_FOUND, `notFound`), so
    /// that they cannot tell a real entry's id from a made-up one; the attempt is still
    /// logged in the person's access log as a denial. A caller who may read the record but
    /// not make this change is refused as such: they can see the entry anyway.
    func authorize(entry: RecordEntry, _ context: ServerContext, _ action: PersonAction, part: String, purpose: String,
                   notFound: String = "no such entry", unless refusal: ((Principal) -> String?)? = nil) async throws -> Principal {
        do {
            return try await authorize(context, person: entry.personID, action, part: part, purpose: purpose, unless: refusal)
        } catch let error as RPCError where error.code == .permissionDenied {
            if case .read = action { throw RPCError(code: .notFound, message: notFound) }
            let principal = try context.principal()
            let mayRead = try await identity.authorizer.decide(principal, .read(.record), person: entry.personID).isAllowed
            throw mayRead ? error : RPCError(code: .notFound, message: notFound)
        }
    }

    /// Why `principal` may not amend or mark `entry` in error although they may write to
    /// the record (nil if they may): only its author, or their organisation, may.
    static func revisionRefusal(_ entry: RecordEntry, by principal: Principal) -> String? {
        EntryRules.isAuthor(sourceKind: entry.sourceKind, authorID: entry.authorID, sourceOrganisation: entry.sourceOrganisationID,
                            principal: principal) ? nil : "only the entry's author (or their organisation) may revise it"
    }

    /// How the writer appears on what they write.
    func source(for principal: Principal, person: UUID) async throws -> EntrySource {
        guard let subject = principal.subjectID else { throw RPCError(code: .permissionDenied, message: "services cannot write records") }
        var ids = [subject]
        if let organisation = principal.organisationID { ids.append(organisation) }
        let names = try await identity.displayNames(ids)
        let name = names[subject] ?? "Unknown"
        switch principal.kind {
        case .serviceUser, .carer:
            let display = subject == person ? name : "\(name) (carer)"
            return EntrySource(kind: "self", organisationID: nil, authorID: subject, display: display)
        case .professional:
            let organisation = principal.organisationID.flatMap { names[$0] }
            return EntrySource(kind: "professional", organisationID: principal.organisationID, authorID: subject,
                               display: organisation.map { "\(name), \($0)" } ?? name)
        case .providerSystem:
            let organisation = principal.organisationID.flatMap { names[$0] } ?? "Provider system"
            return EntrySource(kind: "organisation", organisationID: principal.organisationID, authorID: subject, display: organisation)
        case .administrator, .service:
            throw RPCError(code: .permissionDenied, message: "\(principal.kind.rawValue)s cannot write records")
        }
    }

    var today: CalendarDate { CalendarDate(now()) }

    // MARK: - Entries

    public func addEntry(request: Wholecare_Records_V1_AddEntryRequest, context: ServerContext) async throws -> Wholecare_Records_V1_Entry {
        let person = try Validate.uuid(request.personID, field: "person_id")
        guard request.hasEntry else { throw RPCError.invalidArgument(field: "entry", "is required") }
        let entry = try RecordsProto.newEntry(request.entry, today: today)
        let principal = try await authorize(context, person: person, .write(.record), part: "entry:\(entry.kind)", purpose: request.purpose)
        let stored = try await store.addEntry(person: person, entry: entry, source: try await source(for: principal, person: person))
        return RecordsProto.entry(stored, viewer: principal)
    }

    public func amendEntry(request: Wholecare_Records_V1_AmendEntryRequest, context: ServerContext) async throws -> Wholecare_Records_V1_Entry {
        let id = try Validate.uuid(request.entryID, field: "entry_id")
        guard request.hasEntry else { throw RPCError.invalidArgument(field: "entry", "is required") }
        let replacement = try RecordsProto.newEntry(request.entry, today: today)
        guard let existing = try await store.entry(id: id) else { throw RPCError(code: .notFound, message: "no such entry") }
        // Authorised (and logged) before anything about the entry is compared, so that a
        // caller without access learns nothing of it from the answer.
        let principal = try await authorize(entry: existing, context, .write(.record), part: "entry:\(existing.kind)",
                                            purpose: request.purpose, unless: { Self.revisionRefusal(existing, by: $0) })
        guard replacement.kind == existing.kind else {
            throw RPCError.invalidArgument(field: "entry.kind", "an amendment keeps the entry's kind")
        }
        guard EntryRules.isRevisable(status: existing.status) else {
            throw RPCError(code: .failedPrecondition, message: "only the current version of an entry can be amended")
        }
        switch try await store.amend(id: id, with: replacement, source: try await source(for: principal, person: existing.personID)) {
        case .revised(let entry): return RecordsProto.entry(entry, viewer: principal)
        case .notCurrent: throw RPCError(code: .aborted, message: "the entry was changed meanwhile; amend its current version")
        }
    }

    public func markEnteredInError(request: Wholecare_Records_V1_MarkEnteredInErrorRequest, context: ServerContext) async throws -> Wholecare_Records_V1_Entry {
        let id = try Validate.uuid(request.entryID, field: "entry_id")
        let reason = try Validate.text(request.reason, field: "reason", max: 2000, multiline: true)
        guard let existing = try await store.entry(id: id) else { throw RPCError(code: .notFound, message: "no such entry") }
        let principal = try await authorize(entry: existing, context, .write(.record), part: "entry:\(existing.kind)",
                                            purpose: request.purpose, unless: { Self.revisionRefusal(existing, by: $0) })
        guard EntryRules.isRevisable(status: existing.status) else {
            throw RPCError(code: .failedPrecondition, message: "only the current version of an entry can be marked in error")
        }
        switch try await store.markEnteredInError(id: id, reason: reason) {
        case .revised(let entry): return RecordsProto.entry(entry, viewer: principal)
        case .notCurrent: throw RPCError(code: .failedPrecondition, message: "only the current version of an entry can be marked in error")
        }
    }

    public func getEntry(request: Wholecare_Records_V1_GetEntryRequest, context: ServerContext) async throws -> Wholecare_Records_V1_Entry {
        let id = try Validate.uuid(request.entryID, field: "entry_id")
        guard let entry = try await store.entry(id: id) else { throw RPCError(code: .notFound, message: "no such entry") }
        let principal = try await authorize(entry: entry, context, .read(.record), part: "entry", purpose: request.purpose)
        let progress = entry.kind == "goal" ? try await store.latestProgress(goalLineages: [entry.lineageID])[entry.lineageID] : nil
        return RecordsProto.entry(entry, progress: progress, viewer: principal)
    }

    public func getEntryHistory(request: Wholecare_Records_V1_GetEntryHistoryRequest, context: ServerContext) async throws -> Wholecare_Records_V1_GetEntryHistoryResponse {
        let id = try Validate.uuid(request.entryID, field: "entry_id")
        guard let entry = try await store.entry(id: id) else { throw RPCError(code: .notFound, message: "no such entry") }
        let principal = try await authorize(entry: entry, context, .read(.record), part: "entry_history", purpose: request.purpose)
        var response = Wholecare_Records_V1_GetEntryHistoryResponse()
        response.versions = try await store.history(lineage: entry.lineageID).map { RecordsProto.entry($0, viewer: principal) }
        return response
    }

    public func listEntries(request: Wholecare_Records_V1_ListEntriesRequest, context: ServerContext) async throws -> Wholecare_Records_V1_ListEntriesResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        var filter = RecordsStore.EntryFilter()
        filter.kinds = try request.kinds.map { kind in
            guard let name = RecordsProto.kindNames[kind] else { throw RPCError.invalidArgument(field: "kinds", "unknown kind") }
            return name
        }
        filter.statuses = try request.statuses.map { status in
            guard let name = RecordsProto.statusNames[status] else { throw RPCError.invalidArgument(field: "statuses", "unknown status") }
            return name
        }
        if request.source != .unspecified {
            guard let name = RecordsProto.sourceNames[request.source] else { throw RPCError.invalidArgument(field: "source", "unknown source") }
            filter.sourceKind = name
        }
        if !request.effectiveFrom.isEmpty { filter.from = try Validate.calendarDate(request.effectiveFrom, field: "effective_from") }
        if !request.effectiveTo.isEmpty { filter.to = try Validate.calendarDate(request.effectiveTo, field: "effective_to") }
        guard request.pageSize <= 200 else { throw RPCError.invalidArgument(field: "page_size", "must be at most 200") }
        filter.limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
        filter.cursor = request.cursor.isEmpty ? nil : request.cursor
        let principal = try await authorize(context, person: person, .read(.record), part: "entries", purpose: request.purpose)
        let page = try await store.entries(person: person, filter: filter)
        let goals = page.entries.filter { $0.kind == "goal" }.map(\.lineageID)
        let progress = try await store.latestProgress(goalLineages: goals)
        var response = Wholecare_Records_V1_ListEntriesResponse()
        response.entries = page.entries.map { RecordsProto.entry($0, progress: progress[$0.lineageID], viewer: principal) }
        response.nextCursor = page.next ?? ""
        return response
    }

    // MARK: - Summary, details, goals, medications

    public func getSummary(request: Wholecare_Records_V1_GetSummaryRequest, context: ServerContext) async throws -> Wholecare_Records_V1_Summary {
        try Wholecare_Records_V1_Summary(serializedBytes: try await encodedSummary(request: request, context: context))
    }

    /// The summary as protobuf bytes, written straight from the rows (`RecordsWire`); the
    /// served method answers with these (see `registerEncodedReplies`).
    func encodedSummary(request: Wholecare_Records_V1_GetSummaryRequest, context: ServerContext) async throws -> [UInt8] {
        let person = try Validate.uuid(request.personID, field: "person_id")
        let principal = try await authorize(context, person: person, .read(.record), part: "summary", purpose: request.purpose)
        if careTeams.isCaughtUp {
            // From records' copy, in the same round trip as the rest; shown to whoever the
            // shared policy lets see the care team, as identity would decide.
            let showTeam = try await identity.authorizer.decide(principal, .readCareTeam, person: person).isAllowed
            let rows = try await store.summaryRows(person: person, latest: 10, careTeam: showTeam)
            return try RecordsWire.summary(person: person, rows: rows, careTeam: [], store: store, viewer: principal)
        }
        async let team = careTeam(person: person)
        let rows = try await store.summaryRows(person: person, latest: 10)
        return try RecordsWire.summary(person: person, rows: rows, careTeam: try await team, store: store, viewer: principal)
    }

    /// Serves the replies this service writes as bytes itself. Call after registering the
    /// service (`router.register(service)`).
    public func registerEncodedReplies(into router: inout RPCRouter) {
        router.replace(Wholecare_Records_V1_Records.Methods.getSummary, encoded: { request, context in
            try await self.encodedSummary(request: request, context: context)
        })
    }

    /// The care team from identity, asked on the caller's behalf (until the care-team copy
    /// has caught up). Someone allowed to read the record but not the care team (a
    /// provider system) gets a summary without it.
    func careTeam(person: UUID) async throws -> [Wholecare_Records_V1_CareTeamMember] {
        var request = Wholecare_Identity_V1_ListCareTeamRequest()
        request.personID = person.lowercasedString
        do {
            return try await identity.identity.listCareTeam(request).members.map { member in
                var out = Wholecare_Records_V1_CareTeamMember()
                out.professionalID = member.professionalID
                out.name = member.professionalName
                out.role = RecordsProto.careTeamRole(coordinator: member.role == .careCoordinator)
                out.organisationID = member.organisationID
                return out
            }
        } catch let error as RPCError where error.code == .permissionDenied {
            return []
        }
    }

    public func getDetails(request: Wholecare_Records_V1_GetDetailsRequest, context: ServerContext) async throws -> Wholecare_Records_V1_PersonDetails {
        let person = try Validate.uuid(request.personID, field: "person_id")
        let principal = try await authorize(context, person: person, .read(.record), part: "details", purpose: request.purpose)
        return RecordsProto.details(try await store.currentDetails(person: person), person: person, viewer: principal)
    }

    public func updateDetails(request: Wholecare_Records_V1_UpdateDetailsRequest, context: ServerContext) async throws -> Wholecare_Records_V1_PersonDetails {
        let person = try Validate.uuid(request.personID, field: "person_id")
        guard request.hasDetails else { throw RPCError.invalidArgument(field: "details", "is required") }
        let document = try RecordsProto.document(request.details)
        guard request.expectedVersion >= 0 else { throw RPCError.invalidArgument(field: "expected_version", "must not be negative") }
        let principal = try await authorize(context, person: person, .write(.record), part: "details", purpose: request.purpose)
        guard let saved = try await store.saveDetails(person: person, document: document, expectedVersion: Int(request.expectedVersion),
                                                      source: try await source(for: principal, person: person)) else {
            throw RPCError(code: .aborted, message: "the details were changed meanwhile; reload them and apply your change again")
        }
        return RecordsProto.details(saved, person: person, viewer: principal)
    }

    public func listDetailsVersions(request: Wholecare_Records_V1_ListDetailsVersionsRequest, context: ServerContext) async throws -> Wholecare_Records_V1_ListDetailsVersionsResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        let principal = try await authorize(context, person: person, .read(.record), part: "details_history", purpose: request.purpose)
        var response = Wholecare_Records_V1_ListDetailsVersionsResponse()
        response.versions = try await store.detailsVersions(person: person).map { RecordsProto.details($0, person: person, viewer: principal) }
        return response
    }

    public func addGoalProgress(request: Wholecare_Records_V1_AddGoalProgressRequest, context: ServerContext) async throws -> Wholecare_Records_V1_GoalProgress {
        let id = try Validate.uuid(request.goalEntryID, field: "goal_entry_id")
        guard request.percent <= 100 else { throw RPCError.invalidArgument(field: "percent", "must be between 0 and 100") }
        let note = try Validate.text(request.note, field: "note", max: 5000, allowEmpty: true, multiline: true)
        guard let goal = try await store.entry(id: id) else { throw RPCError(code: .notFound, message: "no such goal") }
        // Authorised before the entry's kind and status are looked at (see amendEntry).
        let principal = try await authorize(entry: goal, context, .write(.record), part: "goal_progress", purpose: request.purpose,
                                            notFound: "no such goal")
        guard goal.kind == "goal" else { throw RPCError(code: .notFound, message: "no such goal") }
        guard goal.status != "superseded", goal.status != "entered_in_error" else {
            throw RPCError(code: .failedPrecondition, message: "record progress against the goal's current version")
        }
        let row = try await store.addGoalProgress(goalLineage: goal.lineageID, person: goal.personID, percent: Int(request.percent),
                                                  note: note.isEmpty ? nil : note, source: try await source(for: principal, person: goal.personID))
        return RecordsProto.goalProgress(row, goal: goal.id, viewer: principal)
    }

    public func listMedications(request: Wholecare_Records_V1_ListMedicationsRequest, context: ServerContext) async throws -> Wholecare_Records_V1_ListMedicationsResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        let principal = try await authorize(context, person: person, .read(.record), part: "medications", purpose: request.purpose)
        var response = Wholecare_Records_V1_ListMedicationsResponse()
        response.medications = try await store.medications(person: person).map { RecordsProto.entry($0, viewer: principal) }
        return response
    }

    // MARK: - Access log and FHIR

    /// Writes the refusals `refusals` has counted, one row per caller, person, action and
    /// part: those whose minute is over, or every one (`all`, at shutdown). What cannot be
    /// written now is kept for the next call. Returns how many rows were written and how
    /// many could not be. (If the connection drops just as a row commits, the row is
    /// written again next time: counts may come out high, never low.)
    @discardableResult
    public func writeHeldRefusals(all: Bool = false) async -> (written: Int, unwritten: Int) {
        var unwritten: [RefusalLog.Refusal] = []
        let due = refusals.due(all: all)
        for refusal in due {
            do {
                try await store.logAccess(refusal, allowed: false)
            } catch {
                unwritten.append(refusal)
            }
        }
        if !unwritten.isEmpty { refusals.retry(unwritten) }
        return (due.count - unwritten.count, unwritten.count)
    }

    public func listAccessLog(request: Wholecare_Records_V1_ListAccessLogRequest, context: ServerContext) async throws -> Wholecare_Records_V1_ListAccessLogResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        let principal = try context.principal()
        guard principal.subjectID == person, principal.isPerson else {
            throw RPCError(code: .permissionDenied, message: "only the person sees who looked at their record")
        }
        guard request.pageSize <= 200 else { throw RPCError.invalidArgument(field: "page_size", "must be at most 200") }
        let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
        var before: Int64?
        if !request.cursor.isEmpty {
            guard let value = Int64(request.cursor), value > 0 else { throw RPCError.invalidArgument(field: "cursor", "is not a cursor this service issued") }
            before = value
        }
        let rows = try await store.accessLog(person: person, limit: limit + 1, before: before)
        let page = Array(rows.prefix(limit))
        let ids = page.compactMap { UUID(uuidString: $0.accessorID) } + page.compactMap(\.organisationID)
        let names = (try? await identity.displayNames(ids)) ?? [:]
        var response = Wholecare_Records_V1_ListAccessLogResponse()
        response.entries = page.map { row in
            var entry = Wholecare_Records_V1_AccessLogEntry()
            entry.id = String(row.id)
            entry.at = Timestamp.format(row.at)
            entry.accessorID = row.accessorID
            entry.accessorName = UUID(uuidString: row.accessorID).flatMap { names[$0] } ?? row.accessorID
            entry.accessorKind = row.accessorKind
            entry.organisationID = row.organisationID?.lowercasedString ?? ""
            entry.organisationName = row.organisationID.flatMap { names[$0] } ?? ""
            entry.action = row.action
            entry.part = row.part
            entry.basis = row.basis
            entry.purpose = row.purpose
            entry.allowed = row.allowed
            entry.repeats = UInt32(clamping: row.repeats)
            entry.firstAt = row.firstAt.map(Timestamp.format) ?? ""
            return entry
        }
        if rows.count > limit, let last = page.last { response.nextCursor = String(last.id) }
        return response
    }

    public func exportFhir(request: Wholecare_Records_V1_ExportFhirRequest, context: ServerContext) async throws -> Wholecare_Records_V1_ExportFhirResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        try await authorize(context, person: person, .read(.record), part: "fhir_export", purpose: request.purpose)
        let details = try await store.currentDetails(person: person)
        let entries = try await store.allCurrentEntries(person: person)
        let goals = entries.filter { $0.kind == "goal" }.map(\.lineageID)
        let progress = try await store.latestProgress(goalLineages: goals)
        let withProgress = entries.map { entry -> RecordEntry in
            guard entry.kind == "goal", let latest = progress[entry.lineageID] else { return entry }
            var copy = entry
            copy.details["latest_percent"] = .number(Double(latest.percent))
            return copy
        }
        let name = (try? await identity.displayNames([person]))?[person] ?? details?.document.preferredName ?? "Unknown"
        var response = Wholecare_Records_V1_ExportFhirResponse()
        response.bundleJson = try FHIRExport.bundle(personID: person, personName: name, details: details?.document, entries: withProgress, now: now())
        return response
    }
}
