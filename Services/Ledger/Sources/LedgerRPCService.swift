import Auth
import Contracts
import Foundation
import Logging
import Postgres
import RPC
import SwiftProtobuf
import WholeCareCrypto

/// The ledger RPCs: validation, authorization, idempotency, translation.
public struct LedgerRPCService: Wholecare_Ledger_V1_Ledger.ServiceProtocol {
    let store: LedgerStore
    let authorizer: Authorizer
    /// Which of these ids are organisations identity knows: the ledger opens an account
    /// only for those, so made-up ids (or people's) cannot be paid or fill it.
    let knownOrganisations: @Sendable ([UUID]) async throws -> Set<UUID>
    let now: @Sendable () -> Date

    public init(store: LedgerStore, authorizer: Authorizer, knownOrganisations: @escaping @Sendable ([UUID]) async throws -> Set<UUID>,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.authorizer = authorizer
        self.knownOrganisations = knownOrganisations
        self.now = now
    }

    /// With an identity link: its authorizer, and the organisations it lists.
    public init(store: LedgerStore, identity: IdentityLink, now: @escaping @Sendable () -> Date = { Date() }) {
        self.init(store: store, authorizer: identity.authorizer, knownOrganisations: { try await identity.organisations($0) }, now: now)
    }

    // MARK: - Helpers

    /// The ledger account of a provider or funder organisation, opened on first use if
    /// identity knows the organisation; otherwise INVALID_ARGUMENT naming `field`.
    func organisationAccount(kind: String, _ organisation: UUID, field: String) async throws -> UUID {
        if let id = try await store.existingOrganisationAccount(kind: kind, organisation: organisation) { return id }
        guard try await knownOrganisations([organisation]).contains(organisation) else {
            throw RPCError.invalidArgument(field: field, "is not an organisation WholeCare knows")
        }
        return try await store.organisationAccount(kind: kind, organisation: organisation)
    }

    /// The budget a call names. For calls that move money an unknown budget is bad input
    /// (INVALID_ARGUMENT naming the field); for reads it is NOT_FOUND.
    func budget(_ text: String, field: String = "budget_id", forWrite: Bool = true) async throws -> BudgetInfo {
        let id = try Validate.uuid(text, field: field)
        guard let info = try await store.budgetInfo(id) else {
            if forWrite { throw RPCError.invalidArgument(field: field, "no such budget") }
            throw RPCError(code: .notFound, message: "no such budget")
        }
        return info
    }

    /// The idempotency key from the request field or the `idempotency-key` metadata.
    func idempotencyKey(_ field: String, _ context: ServerContext) throws -> String {
        let key = field.isEmpty ? (context.metadata[MetadataKey.idempotencyKey] ?? "") : field
        guard !key.isEmpty else {
            throw RPCError.invalidArgument(field: "idempotency_key", "is required for calls that move money (or send idempotency-key metadata)")
        }
        guard Validate.isIdempotencyKey(key) else {
            throw RPCError.invalidArgument(field: "idempotency_key", "must be at most 200 printable ASCII characters, without spaces")
        }
        return key
    }

    /// A hash of the request without its key: the same key with another body is refused.
    static func requestHash<M: SwiftProtobuf.Message>(_ message: M, method: String) throws -> [UInt8] {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let bytes: [UInt8] = try message.serializedBytes(options: options)
        return Digest.sha256(Array(method.utf8) + [0] + bytes)
    }

    static func scope(_ principal: Principal) -> String { "\(principal.kind.rawValue):\(principal.subject)" }

    func require(_ principal: Principal, _ action: PersonAction, _ budget: BudgetInfo) async throws {
        try await authorizer.require(principal, action, person: budget.personID)
    }

    /// Provider systems act only as their own organisation.
    static func requireOwnOrganisation(_ principal: Principal, _ organisation: UUID) throws {
        if principal.kind == .providerSystem, principal.organisationID != organisation {
            throw RPCError(code: .permissionDenied, message: "provider systems post only as their own organisation")
        }
    }

    /// Allowed for the budget's care coordinator or the funder's finance staff, or (with
    /// `alternative`) another action's holders.
    func requireAny(_ principal: Principal, _ actions: [PersonAction], _ budget: BudgetInfo) async throws {
        var last: (any Error)?
        for action in actions {
            do {
                try await authorizer.require(principal, action, person: budget.personID)
                return
            } catch {
                last = error
            }
        }
        throw last ?? RPCError(code: .permissionDenied, message: "not allowed")
    }

    func finish(_ outcome: PostOutcome, posted t: NewTransaction? = nil, plan: LedgerRules.Plan? = nil) async throws -> Wholecare_Ledger_V1_Transaction {
        switch outcome {
        case .posted(let id) where t != nil && plan != nil && t!.id == id:
            // Just written: answer from what was written, without reading it back.
            return LedgerProto.transaction(t!, plan: plan!, createdAt: now())
        case .posted(let id), .replayed(let id):
            guard let row = try await store.transaction(id) else { throw RPCError(code: .internal, message: "internal error") }
            return LedgerProto.transaction(row)
        case .keyReused:
            throw RPCError(code: .alreadyExists, message: "this idempotency key was already used with a different request")
        case .insufficientFunds:
            throw RPCError(code: .failedPrecondition, message: "not enough available money in the budget (beyond its permitted overdraft)")
        case .commitmentNotOpen:
            throw RPCError(code: .failedPrecondition, message: "the commitment is no longer open")
        case .refundExceedsPayments:
            throw RPCError(code: .failedPrecondition, message: "this would give the budget back more than it paid: "
                + "refunds may not exceed what the budget paid the provider, nor the purchase they refund, "
                + "and a reversed purchase cannot be refunded")
        case .purchaseHasRefunds:
            throw RPCError(code: .failedPrecondition, message: "this purchase has refunds: reverse them first")
        }
    }

    static func date(_ text: String, field: String) throws -> CalendarDate? {
        text.isEmpty ? nil : try Validate.calendarDate(text, field: field)
    }

    // MARK: - Budgets

    public func createBudget(request: Wholecare_Ledger_V1_CreateBudgetRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Budget {
        let principal = try context.principal()
        let person = try Validate.uuid(request.personID, field: "person_id")
        let funder = try Validate.uuid(request.funderOrganisationID, field: "funder_organisation_id")
        let name = try Validate.text(request.name, field: "name", max: 200)
        guard request.overdraftLimitPence >= 0, request.overdraftLimitPence <= LedgerRules.maximumAmount else {
            throw RPCError.invalidArgument(field: "overdraft_limit_pence", "must be between 0 and \(LedgerRules.maximumAmount)")
        }
        let start = try Self.date(request.periodStart, field: "period_start")
        let end = try Self.date(request.periodEnd, field: "period_end")
        if let start, let end, end < start { throw RPCError.invalidArgument(field: "period_end", "must not be before period_start") }
        try await authorizer.require(principal, .allocateBudget(funder: funder), person: person)
        _ = try await organisationAccount(kind: "funder", funder, field: "funder_organisation_id")
        // Optional here (creating a budget moves no money), honoured when given.
        let keyText = request.idempotencyKey.isEmpty ? (context.metadata[MetadataKey.idempotencyKey] ?? "") : request.idempotencyKey
        let key = keyText.isEmpty ? nil : try idempotencyKey(keyText, context)
        let id: UUID
        do {
            id = try await store.createBudget(person: person, funder: funder, name: name, overdraft: request.overdraftLimitPence,
                                              periodStart: start, periodEnd: end, createdBy: Self.scope(principal), idempotencyKey: key,
                                              requestHash: try Self.requestHash(request.withoutKey, method: "CreateBudget"))
        } catch is LedgerStore.IdempotencyConflict {
            throw RPCError(code: .alreadyExists, message: "this idempotency key was already used with a different request")
        }
        return LedgerProto.budget(try await store.budget(id)!)
    }

    public func getBudget(request: Wholecare_Ledger_V1_GetBudgetRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Budget {
        let info = try await budget(request.budgetID, forWrite: false)
        try await require(try context.principal(), .read(.budget), info)
        return LedgerProto.budget(try await store.budget(info.id)!)
    }

    public func listBudgets(request: Wholecare_Ledger_V1_ListBudgetsRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ListBudgetsResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        try await authorizer.require(try context.principal(), .read(.budget), person: person)
        var response = Wholecare_Ledger_V1_ListBudgetsResponse()
        response.budgets = try await store.budgets(person: person).map(LedgerProto.budget)
        return response
    }

    // MARK: - Money in

    public func allocate(request: Wholecare_Ledger_V1_AllocateRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let info = try await budget(request.budgetID)
        let amount = try LedgerRules.amount(request.amountPence)
        let memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try await require(principal, .allocateBudget(funder: info.funderOrganisationID), info)
        var t = NewTransaction(kind: "allocation", budget: info, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = memo
        let plan = LedgerRules.allocation(info.accounts, amount: amount)
        return try await finish(try await store.post(t, plan: plan, scope: Self.scope(principal),
                                                     requestHash: try Self.requestHash(request.withoutKey, method: "Allocate")), posted: t, plan: plan)
    }

    public func topUp(request: Wholecare_Ledger_V1_TopUpRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let info = try await budget(request.budgetID)
        let amount = try LedgerRules.amount(request.amountPence)
        let memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try await requireAny(principal, [.write(.budget), .allocateBudget(funder: info.funderOrganisationID)], info)
        var t = NewTransaction(kind: "top_up", budget: info, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = memo
        return try await finish(try await store.post(
            t, plan: LedgerRules.topUp(info.accounts, contribution: LedgerStore.contributionAccount, amount: amount),
            scope: Self.scope(principal), requestHash: try Self.requestHash(request.withoutKey, method: "TopUp")))
    }

    // MARK: - Invoices and purchases

    /// Validates and authorises one invoice into a transaction and its plan.
    func prepareInvoice(_ request: Wholecare_Ledger_V1_PostInvoiceRequest, principal: Principal, key: String) async throws
        -> (NewTransaction, LedgerRules.Plan) {
        let info = try await budget(request.budgetID)
        let provider = try Validate.uuid(request.providerOrganisationID, field: "provider_organisation_id")
        let amount = try LedgerRules.amount(request.amountPence)
        let reference = try Validate.text(request.invoiceReference, field: "invoice_reference", max: 100)
        let start = try Validate.calendarDate(request.serviceStart, field: "service_start")
        let end = try Self.date(request.serviceEnd, field: "service_end") ?? start
        guard end >= start else { throw RPCError.invalidArgument(field: "service_end", "must not be before service_start") }
        guard start <= CalendarDate(now()).adding(days: 1) else { throw RPCError.invalidArgument(field: "service_start", "must not be in the future") }
        let memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        let care = request.care
        guard care.councilRatePence >= 0, care.councilRatePence <= LedgerRules.maximumAmount else {
            throw RPCError.invalidArgument(field: "care.council_rate_pence", "must be between 0 and \(LedgerRules.maximumAmount)")
        }
        guard care.dailyLivingPence >= 0, care.dailyLivingPence <= amount else {
            throw RPCError.invalidArgument(field: "care.daily_living_pence", "must be between 0 and the invoice amount")
        }
        if care.eligible, care.councilRatePence == 0 {
            throw RPCError.invalidArgument(field: "care.council_rate_pence", "is required when the care meets eligible needs")
        }
        guard request.commitmentID.isEmpty else {
            throw RPCError.invalidArgument(field: "commitment_id", "settle commitments with SettleCommitment")
        }
        try Self.requireOwnOrganisation(principal, provider)
        if principal.kind == .providerSystem {
            try await require(principal, .postInvoice, info)
        } else {
            try await requireAny(principal, [.write(.budget), .allocateBudget(funder: info.funderOrganisationID)], info)
        }
        let providerAccount = try await organisationAccount(kind: "provider", provider, field: "provider_organisation_id")
        var t = NewTransaction(kind: "purchase", budget: info, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = memo
        t.invoiceReference = reference
        t.providerOrganisationID = provider
        t.serviceStart = start
        t.serviceEnd = end
        t.eligible = care.eligible
        t.councilRate = care.councilRatePence
        t.dailyLiving = care.dailyLivingPence
        t.care = CareCapMeter.contribution(amount: amount, eligible: care.eligible, councilRate: care.councilRatePence, dailyLiving: care.dailyLivingPence)
        return (t, LedgerRules.purchase(info.accounts, provider: providerAccount, amount: amount))
    }

    public func postInvoice(request: Wholecare_Ledger_V1_PostInvoiceRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let key = try idempotencyKey(request.idempotencyKey, context)
        let (t, plan) = try await prepareInvoice(request, principal: principal, key: key)
        let item = BatchInvoice(index: 0, transaction: t, plan: plan,
                                requestHash: try Self.requestHash(request.withoutKey, method: "PostInvoice"), scope: Self.scope(principal))
        return try await finish(try await store.postInvoice(item), posted: t, plan: plan)
    }

    public func postInvoiceBatch(request: Wholecare_Ledger_V1_PostInvoiceBatchRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_PostInvoiceBatchResponse {
        let principal = try context.principal()
        guard !request.invoices.isEmpty else { throw RPCError.invalidArgument(field: "invoices", "give at least one invoice") }
        guard request.invoices.count <= 1000 else { throw RPCError.invalidArgument(field: "invoices", "at most 1,000 invoices per batch") }
        var results = request.invoices.map { invoice -> Wholecare_Ledger_V1_BatchItemResult in
            var result = Wholecare_Ledger_V1_BatchItemResult()
            result.idempotencyKey = invoice.idempotencyKey
            return result
        }
        var seenKeys: Set<String> = []
        let scope = Self.scope(principal)
        // Answers a written chunk: fresh postings from what was written, replays read back.
        func answer(_ items: [BatchInvoice], _ outcomes: [Int: BatchItemOutcome]) async throws {
            let replayedIDs = outcomes.values.compactMap { outcome -> UUID? in
                if case .replayed(let id) = outcome { return id } else { return nil }
            }
            let rows = try await store.transactions(ids: replayedIDs)
            let written = Dictionary(uniqueKeysWithValues: items.map { ($0.index, $0) })
            let postedAt = Timestamp.format(now())
            for (index, outcome) in outcomes {
                switch outcome {
                case .posted:
                    results[index].status = 0
                    if let item = written[index] {
                        results[index].transaction = LedgerProto.transaction(item.transaction, plan: item.plan, createdAt: postedAt)
                    }
                case .replayed(let id):
                    results[index].status = 0
                    if let row = rows[id] { results[index].transaction = LedgerProto.transaction(row) }
                    results[index].replayed = true
                case .keyReused:
                    results[index].status = UInt32(RPCError.Code.alreadyExists.rawValue)
                    results[index].message = "this idempotency key was already used with a different request"
                case .insufficientFunds:
                    results[index].status = UInt32(RPCError.Code.failedPrecondition.rawValue)
                    results[index].message = "not enough available money in the budget (beyond its permitted overdraft)"
                }
            }
        }
        // Written in rounds of chunks, so that while one round is being written the next is
        // validated and the one before answered: a large batch keeps both the service and
        // the database busy instead of taking turns. The people billed are split between
        // `lanes` database connections, each writing its own people's chunks in batch
        // order: a budget and a care account are only ever written by one lane, so lanes
        // never wait for each other's locks, and funds are checked in the batch's order for
        // every budget. Each invoice stands on its own, so the chunks commit separately; if
        // writing one fails the call fails (its lane writes nothing after it), and sending
        // the batch again replays what was written.
        let lanes = store.batchLanes
        var laneTails: [Task<[Int: BatchItemOutcome], any Error>?] = Array(repeating: nil, count: lanes)
        var writing: [(items: [BatchInvoice], task: Task<[Int: BatchItemOutcome], any Error>)] = []
        do {
            for start in stride(from: 0, to: request.invoices.count, by: store.batchChunk * lanes) {
                var byLane: [[BatchInvoice]] = Array(repeating: [], count: lanes)
                for index in start..<min(start + store.batchChunk * lanes, request.invoices.count) {
                    let invoice = request.invoices[index]
                    do {
                        guard !invoice.idempotencyKey.isEmpty else {
                            throw RPCError.invalidArgument(field: "idempotency_key", "every invoice in a batch needs its own key")
                        }
                        let key = try idempotencyKey(invoice.idempotencyKey, context)
                        guard seenKeys.insert(key).inserted else {
                            throw RPCError.invalidArgument(field: "idempotency_key", "appears twice in this batch")
                        }
                        let (t, plan) = try await prepareInvoice(invoice, principal: principal, key: key)
                        byLane[LedgerStore.lane(of: t.budget.personID, lanes: lanes)].append(
                            BatchInvoice(index: index, transaction: t, plan: plan,
                                         requestHash: try Self.requestHash(invoice.withoutKey, method: "PostInvoice"), scope: scope))
                    } catch {
                        let status = RPCRouter.status(for: error, context: context)
                        results[index].status = UInt32(status.code.rawValue)
                        results[index].message = status.message
                        results[index].field = status.metadata[MetadataKey.field] ?? ""
                    }
                }
                let previousRound = writing
                writing = []
                let store = store
                for (lane, items) in byLane.enumerated() where !items.isEmpty {
                    let before = laneTails[lane]
                    let task = Task {
                        // The lane's chunks go one after another; after a failure, none.
                        _ = try await before?.value
                        return try await store.writeInvoices(items)
                    }
                    laneTails[lane] = task
                    writing.append((items, task))
                }
                for previous in previousRound { try await answer(previous.items, try await previous.task.value) }
            }
            for last in writing { try await answer(last.items, try await last.task.value) }
        } catch {
            // Nothing is still being written when the caller hears of the failure.
            for tail in laneTails { _ = try? await tail?.value }
            throw error
        }
        var response = Wholecare_Ledger_V1_PostInvoiceBatchResponse()
        response.results = results
        response.posted = UInt32(results.filter { $0.status == 0 }.count)
        response.refused = UInt32(results.count) - response.posted
        return response
    }

    public func refund(request: Wholecare_Ledger_V1_RefundRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let info = try await budget(request.budgetID)
        let provider = try Validate.uuid(request.providerOrganisationID, field: "provider_organisation_id")
        let amount = try LedgerRules.amount(request.amountPence)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try Self.requireOwnOrganisation(principal, provider)
        try await requireAny(principal, [.postInvoice, .allocateBudget(funder: info.funderOrganisationID)], info)
        var t = NewTransaction(kind: "refund", budget: info, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        t.invoiceReference = try Validate.text(request.invoiceReference, field: "invoice_reference", max: 100, allowEmpty: true)
        t.providerOrganisationID = provider
        if !request.refundsTransactionID.isEmpty {
            // The care account gives back the same share of what the purchase counted.
            let original = try Validate.uuid(request.refundsTransactionID, field: "refunds_transaction_id")
            guard let purchase = try await store.transaction(original), purchase.kind == "purchase" || purchase.kind == "settlement",
                  purchase.budgetID == info.id, purchase.providerOrganisationID == provider else {
                throw RPCError.invalidArgument(field: "refunds_transaction_id", "must be a purchase from this provider on this budget")
            }
            guard amount <= purchase.amount else { throw RPCError.invalidArgument(field: "amount_pence", "must not exceed the purchase refunded") }
            func share(_ value: Int64) -> Int64 { -(value * amount / max(purchase.amount, 1)) }
            t.care = CareCapMeter.Contribution(towardCap: share(purchase.towardCap), dailyLivingExcluded: share(purchase.dailyLivingExcluded),
                                               aboveCouncilRate: share(purchase.aboveCouncilRate))
            t.serviceStart = purchase.serviceStart.flatMap(CalendarDate.init)
            t.refundsID = purchase.id
        }
        let providerAccount = try await organisationAccount(kind: "provider", provider, field: "provider_organisation_id")
        return try await finish(try await store.post(t, plan: LedgerRules.refund(info.accounts, provider: providerAccount, amount: amount),
                                                     scope: Self.scope(principal), requestHash: try Self.requestHash(request.withoutKey, method: "Refund")))
    }

    public func transfer(request: Wholecare_Ledger_V1_TransferRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let from = try await budget(request.fromBudgetID, field: "from_budget_id")
        let to = try await budget(request.toBudgetID, field: "to_budget_id")
        guard from.id != to.id else { throw RPCError.invalidArgument(field: "to_budget_id", "must differ from from_budget_id") }
        let amount = try LedgerRules.amount(request.amountPence)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try await require(principal, .allocateBudget(funder: from.funderOrganisationID), from)
        try await require(principal, .allocateBudget(funder: to.funderOrganisationID), to)
        var t = NewTransaction(kind: "transfer", budget: from, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        return try await finish(try await store.post(t, plan: LedgerRules.transfer(from: from.accounts, to: to.accounts, amount: amount),
                                                     scope: Self.scope(principal), requestHash: try Self.requestHash(request.withoutKey, method: "Transfer")))
    }

    // MARK: - Commitments

    public func commit(request: Wholecare_Ledger_V1_CommitRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Commitment {
        let principal = try context.principal()
        let info = try await budget(request.budgetID)
        let provider = try Validate.uuid(request.providerOrganisationID, field: "provider_organisation_id")
        let amount = try LedgerRules.amount(request.amountPence)
        let memo = try Validate.text(request.memo, field: "memo", max: 500, allowEmpty: true)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try Self.requireOwnOrganisation(principal, provider)
        try await requireAny(principal, [.postInvoice, .write(.budget), .allocateBudget(funder: info.funderOrganisationID)], info)
        // The provider's account is opened now, so that settling never meets an unknown one.
        _ = try await organisationAccount(kind: "provider", provider, field: "provider_organisation_id")
        var t = NewTransaction(kind: "commitment", budget: info, amount: amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = memo
        t.providerOrganisationID = provider
        let commitmentID = UUID()
        t.commitmentID = commitmentID
        let transaction = try await finish(try await store.post(
            t, plan: LedgerRules.commitment(info.accounts, amount: amount), scope: Self.scope(principal),
            requestHash: try Self.requestHash(request.withoutKey, method: "Commit"),
            commitment: .open(id: commitmentID, provider: provider, amount: amount, memo: memo)))
        guard let id = UUID(uuidString: transaction.id), let row = try await store.transaction(id), let cid = row.commitmentID,
              let commitment = try await store.commitment(cid) else { throw RPCError(code: .internal, message: "internal error") }
        return LedgerProto.commitment(commitment)
    }

    func openCommitment(_ text: String) async throws -> (LedgerStore.CommitmentRow, BudgetInfo) {
        let id = try Validate.uuid(text, field: "commitment_id")
        guard let commitment = try await store.commitment(id), let info = try await store.budgetInfo(commitment.budgetID) else {
            throw RPCError(code: .notFound, message: "no such commitment")
        }
        return (commitment, info)
    }

    public func settleCommitment(request: Wholecare_Ledger_V1_SettleCommitmentRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let (commitment, info) = try await openCommitment(request.commitmentID)
        // Who may settle it is decided before anything about it is compared, so that a
        // caller without access learns nothing of it (not its amount) from the answer.
        try Self.requireOwnOrganisation(principal, commitment.providerOrganisationID)
        try await requireAny(principal, [.postInvoice, .allocateBudget(funder: info.funderOrganisationID)], info)
        let paid = try LedgerRules.amount(request.amountPence)
        guard paid <= commitment.amount else { throw RPCError.invalidArgument(field: "amount_pence", "must not exceed the commitment") }
        let key = try idempotencyKey(request.idempotencyKey, context)
        let start = try Validate.calendarDate(request.serviceStart, field: "service_start")
        let end = try Self.date(request.serviceEnd, field: "service_end") ?? start
        guard end >= start else { throw RPCError.invalidArgument(field: "service_end", "must not be before service_start") }
        guard request.care.dailyLivingPence >= 0, request.care.dailyLivingPence <= paid, request.care.councilRatePence >= 0,
              request.care.councilRatePence <= LedgerRules.maximumAmount else {
            throw RPCError.invalidArgument(field: "care", "daily living must be within the amount, the council rate not negative")
        }
        var t = NewTransaction(kind: "settlement", budget: info, amount: paid, createdBy: Self.scope(principal), idempotencyKey: key)
        t.invoiceReference = try Validate.text(request.invoiceReference, field: "invoice_reference", max: 100, allowEmpty: true)
        t.providerOrganisationID = commitment.providerOrganisationID
        t.serviceStart = start
        t.serviceEnd = end
        t.commitmentID = commitment.id
        t.eligible = request.care.eligible
        t.councilRate = request.care.councilRatePence
        t.dailyLiving = request.care.dailyLivingPence
        t.care = CareCapMeter.contribution(amount: paid, eligible: request.care.eligible, councilRate: request.care.councilRatePence,
                                           dailyLiving: request.care.dailyLivingPence)
        let providerAccount = try await store.organisationAccount(kind: "provider", organisation: commitment.providerOrganisationID)
        return try await finish(try await store.post(
            t, plan: LedgerRules.settlement(info.accounts, provider: providerAccount, open: commitment.amount, paid: paid),
            scope: Self.scope(principal), requestHash: try Self.requestHash(request.withoutKey, method: "SettleCommitment"),
            commitment: .close(id: commitment.id, open: commitment.amount, paid: paid)))
    }

    public func releaseCommitment(request: Wholecare_Ledger_V1_ReleaseCommitmentRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let (commitment, info) = try await openCommitment(request.commitmentID)
        let key = try idempotencyKey(request.idempotencyKey, context)
        try Self.requireOwnOrganisation(principal, commitment.providerOrganisationID)
        try await requireAny(principal, [.postInvoice, .write(.budget), .allocateBudget(funder: info.funderOrganisationID)], info)
        var t = NewTransaction(kind: "release", budget: info, amount: commitment.amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.commitmentID = commitment.id
        return try await finish(try await store.post(
            t, plan: LedgerRules.release(info.accounts, open: commitment.amount), scope: Self.scope(principal),
            requestHash: try Self.requestHash(request.withoutKey, method: "ReleaseCommitment"),
            commitment: .close(id: commitment.id, open: commitment.amount, paid: 0)))
    }

    public func listCommitments(request: Wholecare_Ledger_V1_ListCommitmentsRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ListCommitmentsResponse {
        let info = try await budget(request.budgetID, forWrite: false)
        try await require(try context.principal(), .read(.budget), info)
        var response = Wholecare_Ledger_V1_ListCommitmentsResponse()
        response.commitments = try await store.commitments(budget: info.id).map(LedgerProto.commitment)
        return response
    }

    // MARK: - Reversal and listing

    public func reverse(request: Wholecare_Ledger_V1_ReverseRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_Transaction {
        let principal = try context.principal()
        let id = try Validate.uuid(request.transactionID, field: "transaction_id")
        let reason = try Validate.text(request.reason, field: "reason", max: 500)
        let key = try idempotencyKey(request.idempotencyKey, context)
        guard let original = try await store.transaction(id), let info = try await store.budgetInfo(original.budgetID) else {
            throw RPCError(code: .notFound, message: "no such transaction")
        }
        try await require(principal, .allocateBudget(funder: info.funderOrganisationID), info)
        guard original.kind != "reversal" else { throw RPCError(code: .failedPrecondition, message: "a reversal cannot itself be reversed") }
        guard !["commitment", "settlement", "release"].contains(original.kind) else {
            throw RPCError(code: .failedPrecondition, message: "commitments are corrected by releasing them, not by reversal")
        }
        guard original.reversedByID == nil else {
            // Idempotent replays land here too: answer with the reversal if the key matches.
            if let outcome = try? await store.replay(scope: Self.scope(principal), key: key,
                                                     requestHash: try Self.requestHash(request.withoutKey, method: "Reverse")),
               case .replayed = outcome {
                return try await finish(outcome)
            }
            throw RPCError(code: .failedPrecondition, message: "the transaction has already been reversed")
        }
        // Every budget the original touched, by its accounts.
        var budgets: [UUID: BudgetAccounts] = [info.id: info.accounts]
        for posting in original.postings where posting.kind == "budget" {
            if let other = try await store.budgetInfo(posting.account), other.id != info.id {
                // A reversal moves money in every budget the original touched (a transfer's
                // other side): the caller needs the same right over each of them.
                try await require(principal, .allocateBudget(funder: other.funderOrganisationID), other)
                budgets[other.id] = other.accounts
            }
        }
        let postings = original.postings.map { PlannedPosting(account: $0.account, amount: $0.amount) }
        let plan = LedgerRules.reversal(of: postings, deltas: LedgerRules.deltas(kind: original.kind, postings: postings, budgets: budgets))
        var t = NewTransaction(kind: "reversal", budget: info, amount: original.amount, createdBy: Self.scope(principal), idempotencyKey: key)
        t.memo = reason
        t.reversesID = original.id
        t.providerOrganisationID = original.providerOrganisationID
        t.serviceStart = original.serviceStart.flatMap(CalendarDate.init)
        t.care = CareCapMeter.Contribution(towardCap: -original.towardCap, dailyLivingExcluded: -original.dailyLivingExcluded,
                                           aboveCouncilRate: -original.aboveCouncilRate)
        do {
            return try await finish(try await store.post(t, plan: plan, scope: Self.scope(principal),
                                                         requestHash: try Self.requestHash(request.withoutKey, method: "Reverse")))
        } catch let error as PostgresError where error.isUniqueViolation {
            // Another reversal of the same transaction won the race.
            throw RPCError(code: .failedPrecondition, message: "the transaction has already been reversed")
        }
    }

    public func listTransactions(request: Wholecare_Ledger_V1_ListTransactionsRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ListTransactionsResponse {
        let info = try await budget(request.budgetID, forWrite: false)
        guard request.pageSize <= 500 else { throw RPCError.invalidArgument(field: "page_size", "must be at most 500") }
        var before: Int64?
        if !request.cursor.isEmpty {
            guard let value = Int64(request.cursor), value > 0 else { throw RPCError.invalidArgument(field: "cursor", "is not a cursor this service issued") }
            before = value
        }
        try await require(try context.principal(), .read(.budget), info)
        let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
        let rows = try await store.transactions(budget: info.id, limit: limit + 1, before: before)
        var response = Wholecare_Ledger_V1_ListTransactionsResponse()
        response.transactions = rows.prefix(limit).map(LedgerProto.transaction)
        if rows.count > limit, let last = rows.prefix(limit).last { response.nextCursor = String(last.seq) }
        return response
    }

    // MARK: - Care account

    func careAccount(person: UUID) async throws -> (Wholecare_Ledger_V1_CareAccount, CareCapMeter.Reading, [(UUID, CalendarDate, Int64, String)]) {
        let policies = try await store.capPolicies()
        let journal = try await store.careJournal(person: person)
        let today = CalendarDate(now())
        let meterPolicies = policies.map { CareCapMeter.Policy(effectiveFrom: $0.from, cap: $0.cap) }
        let reading = CareCapMeter.meter(journal.lines.map { CareCapMeter.Line(serviceDate: $0.date, towardCap: $0.towardCap) },
                                         policies: meterPolicies)
        let current = policies.last { $0.from <= today } ?? policies[0]
        var account = Wholecare_Ledger_V1_CareAccount()
        account.personID = person.lowercasedString
        account.policy = LedgerProto.policy(current)
        account.capPence = current.cap
        account.accruedPence = min(reading.accrued, current.cap)
        account.remainingPence = max(0, current.cap - account.accruedPence)
        account.capReached = account.accruedPence >= current.cap
        account.weeklyRatePence = CareCapMeter.weeklyRate(reading, today: today)
        account.projectedCapDate = CareCapMeter.projectedCapDate(accrued: account.accruedPence, cap: current.cap,
                                                                 weeklyRate: account.weeklyRatePence, today: today)?.description ?? ""
        account.dailyLivingExcludedPence = journal.lines.reduce(0) { $0 + $1.dailyLiving }
        account.aboveCouncilRatePence = journal.lines.reduce(0) { $0 + $1.aboveRate }
        // The stored running totals must agree with the journal.
        let eligible = journal.lines.reduce(Int64(0)) { $0 + $1.towardCap }
        account.verified = eligible == journal.stored.eligible && account.dailyLivingExcludedPence == journal.stored.dailyLiving
            && account.aboveCouncilRatePence == journal.stored.aboveRate
        for step in reading.steps {
            account.cumulativeByMonth[String(step.date.description.prefix(7))] = step.accrued
        }
        return (account, reading, policies)
    }

    public func getCareAccount(request: Wholecare_Ledger_V1_GetCareAccountRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_CareAccount {
        let person = try Validate.uuid(request.personID, field: "person_id")
        try await authorizer.require(try context.principal(), .read(.budget), person: person)
        let (account, _, _) = try await careAccount(person: person)
        if !account.verified {
            context.logger.error("care account totals disagree with the journal", metadata: ["person": "\(person)"])
        }
        return account
    }

    public func issueCareStatement(request: Wholecare_Ledger_V1_IssueCareStatementRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_CareStatement {
        let person = try Validate.uuid(request.personID, field: "person_id")
        // Issuing stores a statement, so it takes "write budget" (the person, a carer with
        // budget:write, their care coordinator or team): reading the budget is not enough.
        try await authorizer.require(try context.principal(), .write(.budget), person: person)
        return try await issueStatement(person: person, kind: "on_demand")
    }

    /// Builds, stores and returns a statement (also used by the annual job).
    public func issueStatement(person: UUID, kind: String) async throws -> Wholecare_Ledger_V1_CareStatement {
        let (account, _, _) = try await careAccount(person: person)
        let previous = try await store.statements(person: person).first
        var statement = Wholecare_Ledger_V1_CareStatement()
        statement.personID = person.lowercasedString
        statement.kind = kind
        statement.capPence = account.capPence
        statement.accruedPence = account.accruedPence
        statement.remainingPence = account.remainingPence
        statement.weeklyRatePence = account.weeklyRatePence
        statement.dailyLivingExcludedPence = account.dailyLivingExcludedPence
        statement.projectedCapDate = account.projectedCapDate
        statement.periodEnd = CalendarDate(now()).description
        if let previous {
            statement.periodStart = CalendarDate(previous.issuedAt).description
            statement.adjustmentsSinceLastPence = try await adjustments(person: person, since: previous.issuedAt)
        } else {
            statement.periodStart = ""
            statement.adjustmentsSinceLastPence = try await adjustments(person: person, since: nil)
        }
        let (id, issued) = try await store.storeStatement(person: person, kind: kind, body: try statement.jsonString())
        statement.id = id.lowercasedString
        statement.issuedAt = Timestamp.format(issued)
        return statement
    }

    /// Net change to what counts from refunds and reversals since a date.
    func adjustments(person: UUID, since: Date?) async throws -> Int64 {
        let since = since ?? Date(timeIntervalSince1970: 0)
        return try await store.db.query("""
            SELECT COALESCE(sum(eligible_toward_cap), 0)::int8 AS n FROM transactions
            WHERE person_id = \(person) AND kind IN ('refund', 'reversal') AND created_at > \(since)
            """)[0].decode("n")
    }

    public func listCareStatements(request: Wholecare_Ledger_V1_ListCareStatementsRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ListCareStatementsResponse {
        let person = try Validate.uuid(request.personID, field: "person_id")
        try await authorizer.require(try context.principal(), .read(.budget), person: person)
        var response = Wholecare_Ledger_V1_ListCareStatementsResponse()
        response.statements = try await store.statements(person: person).compactMap { stored in
            guard var statement = try? Wholecare_Ledger_V1_CareStatement(jsonString: stored.body) else { return nil }
            statement.id = stored.id.lowercasedString
            statement.issuedAt = Timestamp.format(stored.issuedAt)
            statement.kind = stored.kind
            return statement
        }
        return response
    }

    // MARK: - Export and policy

    public func exportStatement(request: Wholecare_Ledger_V1_ExportStatementRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ExportStatementResponse {
        let info = try await budget(request.budgetID, forWrite: false)
        let from = try Self.date(request.from, field: "from")
        let to = try Self.date(request.to, field: "to")
        if let from, let to, to < from { throw RPCError.invalidArgument(field: "to", "must not be before from") }
        try await require(try context.principal(), .read(.budget), info)
        let rows = try await store.transactionsInPeriod(budget: info.id, from: nil, to: to)
        let export = StatementExport.build(budget: info, transactions: rows, from: from)
        var response = Wholecare_Ledger_V1_ExportStatementResponse()
        response.csv = export.csv
        response.series = export.series.map { point in
            var p = Wholecare_Ledger_V1_SeriesPoint()
            p.date = point.date.description
            p.spentCumulativePence = point.spent
            p.availablePence = point.available
            return p
        }
        return response
    }

    public func addCapPolicy(request: Wholecare_Ledger_V1_AddCapPolicyRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_CapPolicy {
        let principal = try context.principal()
        guard principal.isPlatformAdministrator else {
            throw RPCError(code: .permissionDenied, message: "only platform administrators set the care cap policy")
        }
        let from = try Validate.calendarDate(request.effectiveFrom, field: "effective_from")
        guard request.capPence > 0, request.capPence <= 100_000_000_00 else {
            throw RPCError.invalidArgument(field: "cap_pence", "must be a positive amount up to £100,000,000")
        }
        let name = try Validate.text(request.name, field: "name", max: 200)
        guard let id = try await store.addCapPolicy(from: from, cap: request.capPence, name: name) else {
            throw RPCError(code: .alreadyExists, message: "a policy already starts on that date")
        }
        return LedgerProto.policy((id, from, request.capPence, name))
    }

    public func listCapPolicies(request: Wholecare_Ledger_V1_ListCapPoliciesRequest, context: ServerContext) async throws -> Wholecare_Ledger_V1_ListCapPoliciesResponse {
        _ = try context.principal()
        var response = Wholecare_Ledger_V1_ListCapPoliciesResponse()
        response.policies = try await store.capPolicies().map(LedgerProto.policy)
        return response
    }
}

