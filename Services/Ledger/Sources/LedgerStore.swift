import Foundation
import Postgres
import RPC
import Synchronization

/// Stored facts about a budget that never change (cached in memory).
public struct BudgetInfo: Sendable, Equatable {
    public var id: UUID
    public var personID: UUID
    public var funderOrganisationID: UUID
    public var accounts: BudgetAccounts
    public var name: String
}

/// A transaction about to be written.
public struct NewTransaction: Sendable {
    public var id = UUID.timeOrdered()
    public var kind: String
    public var budget: BudgetInfo
    public var amount: Int64
    public var memo = ""
    public var invoiceReference = ""
    public var providerOrganisationID: UUID?
    public var serviceStart: CalendarDate?
    public var serviceEnd: CalendarDate?
    public var eligible = false
    public var councilRate: Int64 = 0
    public var dailyLiving: Int64 = 0
    public var care = CareCapMeter.Contribution.none
    public var reversesID: UUID?
    /// The purchase a refund gives money back for, if it names one.
    public var refundsID: UUID?
    public var commitmentID: UUID?
    public var createdBy: String
    public var idempotencyKey: String

    public init(kind: String, budget: BudgetInfo, amount: Int64, createdBy: String, idempotencyKey: String) {
        self.kind = kind
        self.budget = budget
        self.amount = amount
        self.createdBy = createdBy
        self.idempotencyKey = idempotencyKey
    }
}

/// What to do to a commitment in the same statement.
public enum CommitmentChange: Sendable {
    case none
    case open(id: UUID, provider: UUID, amount: Int64, memo: String)
    /// Settle (paid > 0) or release (paid = 0) an open commitment of `open` pence.
    case close(id: UUID, open: Int64, paid: Int64)
}

public enum PostOutcome: Sendable, Equatable {
    case posted(UUID)
    /// The idempotency key was used before with the same request: the original transaction.
    case replayed(UUID)
    /// The key was used before with a different request.
    case keyReused
    case insufficientFunds
    case commitmentNotOpen
    /// A refund (or the reversal of a purchase) would give the budget back more than it
    /// paid the provider, or more than the purchase it refunds.
    case refundExceedsPayments
    /// A purchase with refunds that stand cannot be reversed.
    case purchaseHasRefunds
}

/// The ledger schema's SQL. Every posting is one statement: the idempotency key, the
/// balance checks and updates, the transaction, its postings and the care account all
/// commit together or not at all.
public struct LedgerStore: Sendable {
    public let db: PostgresClient
    private let cache = LedgerCache()
    private let coalescer: InvoiceCoalescer
    public let batchLanes: Int
    /// Invoices a batch writes at a time on each lane (see `postInvoiceBatch`).
    public let batchChunk: Int

    public static let contributionAccount = UUID(uuidString: "00000000-0000-4000-8000-00000000c001")!

    /// `invoiceWriters`: how many writes of single invoices may be in flight at once;
    /// invoices arriving while they are busy are committed together (see `InvoiceCoalescer`).
    /// `invoiceStallAfter`: how long every writer may be stuck on one write (waiting for a
    /// lock) before invoices stop queueing behind them.
    /// `batchLanes`: how many connections one invoice batch is written on at once (each
    /// lane writes its own people's invoices; see `postInvoiceBatch`).
    /// `batchChunk`: how many invoices a lane writes in one statement.
    public init(db: PostgresClient, invoiceWriters: Int = 1, invoiceStallAfter: Duration = .milliseconds(100), batchLanes: Int = 2,
                batchChunk: Int = 250) {
        self.db = db
        self.batchLanes = max(1, min(batchLanes, db.configuration.maxConnections / 2))
        self.batchChunk = max(1, min(batchChunk, 1000))
        self.coalescer = InvoiceCoalescer(writers: max(1, min(invoiceWriters, db.configuration.maxConnections)), maxBatch: 500,
                                          stallAfter: invoiceStallAfter, aroundLimit: max(1, db.configuration.maxConnections / 4))
    }

    /// The lane of a batch a person's invoices are written on (see `postInvoiceBatch`): the
    /// same for all of them.
    public static func lane(of person: UUID, lanes: Int) -> Int {
        guard lanes > 1 else { return 0 }
        let bytes = person.uuid
        return Int((UInt16(bytes.14) << 8 | UInt16(bytes.15)) % UInt16(lanes))
    }

    /// Posts one invoice (a purchase from a provider), committed together with other
    /// invoices that arrive while earlier ones are being written. The outcome is the
    /// invoice's own, as if it had been posted alone.
    public func postInvoice(_ item: BatchInvoice) async throws -> PostOutcome {
        try await coalescer.post(item, store: self)
    }

    /// Writes a group of invoices: one statement when every one fits its budget
    /// (`postInvoicesTogether`), otherwise invoice by invoice (`postBatch`).
    public func writeInvoices(_ items: [BatchInvoice]) async throws -> [Int: BatchItemOutcome] {
        guard !items.isEmpty else { return [:] }
        if let together = try await postInvoicesTogether(items) { return together }
        return try await postBatch(items)
    }

    /// How many groups of single invoices have been committed together, and how many
    /// invoices they held (for tests and diagnostics).
    public var invoiceGroups: (groups: Int, invoices: Int) {
        (coalescer.groupsWritten.load(ordering: .relaxed), coalescer.invoicesGrouped.load(ordering: .relaxed))
    }

    /// How many single invoices were posted on their own because the invoice writers were
    /// stuck waiting for a lock (for tests and diagnostics).
    public var invoicesPostedAroundStall: Int { coalescer.postedAroundStall.load(ordering: .relaxed) }

    /// How many single invoices are waiting for a writer right now (for tests and
    /// diagnostics).
    public var invoicesQueued: Int { coalescer.queued }

    // MARK: Accounts and budgets

    /// The account of a funder or provider organisation, if it has one.
    public func existingOrganisationAccount(kind: String, organisation: UUID) async throws -> UUID? {
        let key = "\(kind):\(organisation)"
        if let hit = cache.account(key) { return hit }
        guard let id = try await db.query("SELECT id FROM accounts WHERE kind = \(kind) AND organisation_id = \(organisation)")
            .first?.decode("id", as: UUID.self) else { return nil }
        cache.setAccount(key, id)
        return id
    }

    /// The account of a funder or provider organisation, created on first use (callers
    /// check first that the organisation exists: see `LedgerRPCService`).
    public func organisationAccount(kind: String, organisation: UUID) async throws -> UUID {
        if let id = try await existingOrganisationAccount(kind: kind, organisation: organisation) { return id }
        try await db.query("""
            INSERT INTO accounts (id, kind, organisation_id, name) VALUES (\(UUID()), \(kind), \(organisation), \(kind + " " + organisation.lowercasedString))
            ON CONFLICT (kind, organisation_id) WHERE kind IN ('funder', 'provider') DO NOTHING
            """)
        guard let id = try await existingOrganisationAccount(kind: kind, organisation: organisation) else {
            throw PostgresError(kind: .server, safeMessage: "an organisation account could not be opened")
        }
        return id
    }

    /// A key already used by this caller for another request.
    public struct IdempotencyConflict: Error {}

    /// Creates a budget, or (with an idempotency key the same caller already used for the
    /// same request) returns the one made then.
    public func createBudget(person: UUID, funder: UUID, name: String, overdraft: Int64, periodStart: CalendarDate?, periodEnd: CalendarDate?,
                             createdBy: String, idempotencyKey: String? = nil, requestHash: [UInt8] = []) async throws -> UUID {
        let funderAccount = try await organisationAccount(kind: "funder", organisation: funder)
        let id = UUID(), commitments = UUID()
        return try await db.withTransaction { session -> UUID in
            if let idempotencyKey {
                // Concurrent repeats of one key take turns here, so exactly one creates.
                try await session.query("SELECT pg_advisory_xact_lock(hashtextextended(\(createdBy + " " + idempotencyKey), 7))")
                if let row = try await session.query("""
                    SELECT id, request_hash FROM budgets WHERE created_by = \(createdBy) AND idempotency_key = \(idempotencyKey)
                    """).first {
                    guard try row.decode("request_hash", as: PostgresBytes?.self)?.bytes == requestHash else { throw IdempotencyConflict() }
                    return try row.decode("id")
                }
            }
            try await session.query("""
                INSERT INTO accounts (id, kind, name) VALUES (\(id), 'budget', \(name)), (\(commitments), 'commitments', \("Committed: " + name))
                """)
            try await session.query("UPDATE accounts SET budget_id = \(id) WHERE id = \(commitments)")
            try await session.query("""
                INSERT INTO budgets (id, person_id, funder_organisation_id, funder_account_id, commitments_account_id, name,
                                     overdraft_limit, period_start, period_end, created_by, idempotency_key, request_hash)
                VALUES (\(id), \(person), \(funder), \(funderAccount), \(commitments), \(name), \(overdraft),
                        \(periodStart?.description)::date, \(periodEnd?.description)::date, \(createdBy), \(idempotencyKey),
                        \(idempotencyKey == nil ? nil : PostgresBytes(requestHash)))
                """)
            return id
        }
    }

    public func budgetInfo(_ id: UUID) async throws -> BudgetInfo? {
        if let hit = cache.budget(id) { return hit }
        guard let row = try await db.query("""
            SELECT id, person_id, funder_organisation_id, funder_account_id, commitments_account_id, name FROM budgets WHERE id = \(id)
            """).first else { return nil }
        let info = BudgetInfo(
            id: id, personID: try row.decode("person_id"), funderOrganisationID: try row.decode("funder_organisation_id"),
            accounts: BudgetAccounts(budget: id, funder: try row.decode("funder_account_id"), commitments: try row.decode("commitments_account_id")),
            name: try row.decode("name"))
        cache.setBudget(info)
        return info
    }

    public struct BudgetRow: Sendable, Equatable {
        public var id: UUID
        public var personID: UUID
        public var funderOrganisationID: UUID
        public var name: String
        public var currency: String
        public var overdraftLimit: Int64
        public var allocated: Int64
        public var spent: Int64
        public var committed: Int64
        public var available: Int64
        public var transferredNet: Int64
        public var createdAt: Date
        public var periodStart: String?
        public var periodEnd: String?
    }

    static let budgetColumns = """
        id, person_id, funder_organisation_id, name, currency, overdraft_limit, allocated, spent, committed, available, transferred_net,
        created_at, period_start::text AS period_start, period_end::text AS period_end
        """

    static func budgetRow(_ row: PostgresRow) throws -> BudgetRow {
        BudgetRow(id: try row.decode("id"), personID: try row.decode("person_id"), funderOrganisationID: try row.decode("funder_organisation_id"),
                  name: try row.decode("name"), currency: try row.decode("currency"), overdraftLimit: try row.decode("overdraft_limit"),
                  allocated: try row.decode("allocated"), spent: try row.decode("spent"), committed: try row.decode("committed"),
                  available: try row.decode("available"), transferredNet: try row.decode("transferred_net"), createdAt: try row.decode("created_at"),
                  periodStart: try row.decode("period_start"), periodEnd: try row.decode("period_end"))
    }

    public func budget(_ id: UUID) async throws -> BudgetRow? {
        try await db.query("SELECT \(unsafeRaw: Self.budgetColumns) FROM budgets WHERE id = \(id)").first.map(Self.budgetRow)
    }

    public func budgets(person: UUID) async throws -> [BudgetRow] {
        try await db.query("SELECT \(unsafeRaw: Self.budgetColumns) FROM budgets WHERE person_id = \(person) ORDER BY created_at").map(Self.budgetRow)
    }

    // MARK: Posting

    /// Writes a transaction in one statement. See the type's documentation.
    public func post(_ t: NewTransaction, plan: LedgerRules.Plan, scope: String, requestHash: [UInt8],
                     commitment: CommitmentChange = .none) async throws -> PostOutcome {
        precondition(LedgerRules.isBalanced(plan), "an unbalanced plan reached the store")
        let query = postQuery(t, plan: plan, scope: scope, requestHash: requestHash, commitment: commitment)
        let row: PostgresRow
        do {
            row = try await runRetryingConflicts(query)
        } catch let error as PostgresError where error.sqlState == "P0001" {
            if error.serverMessage?.contains("commitment_not_open") == true { return .commitmentNotOpen }
            if error.serverMessage?.contains("refund_exceeds_payments") == true { return .refundExceedsPayments }
            if error.serverMessage?.contains("purchase_has_refunds") == true { return .purchaseHasRefunds }
            return .insufficientFunds
        } catch let error as PostgresError where error.sqlState == "23514" && error.constraint == "budgets_check" {
            return .insufficientFunds
        }
        if try row.decode("fresh", as: Int.self) == 1 { return .posted(t.id) }
        return try await replay(scope: scope, key: t.idempotencyKey, requestHash: requestHash)
    }

    /// The posting statement is atomic, so after a deadlock (40P01) or serialization
    /// failure (40001) it is safe to run again.
    func runRetryingConflicts(_ query: PostgresQuery) async throws -> PostgresRow {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await db.query(query)[0]
            } catch let error as PostgresError where error.isSerializationFailure && attempt < 6 {
                try await Task.sleep(for: .microseconds(Int64.random(in: 0...(2_000 << attempt))))
            }
        }
    }

    func replay(scope: String, key: String, requestHash: [UInt8]) async throws -> PostOutcome {
        guard let existing = try await db.query("""
            SELECT request_hash, transaction_id FROM idempotency_keys WHERE scope = \(scope) AND key = \(key)
            """).first else { return .keyReused }
        let stored = try existing.decode("request_hash", as: PostgresBytes.self).bytes
        return stored == requestHash ? .replayed(try existing.decode("transaction_id")) : .keyReused
    }

    func postQuery(_ t: NewTransaction, plan: LedgerRules.Plan, scope: String, requestHash: [UInt8], commitment: CommitmentChange) -> PostgresQuery {
        let deltaIDs = Array(plan.deltas.keys)
        let deltas = deltaIDs.map { plan.deltas[$0]! }
        var query: PostgresQuery = """
            WITH k AS (
                INSERT INTO idempotency_keys (scope, key, request_hash, transaction_id)
                VALUES (\(scope), \(t.idempotencyKey), \(PostgresBytes(requestHash)), \(t.id))
                ON CONFLICT DO NOTHING RETURNING 1 AS ok
            ),
            """
        switch commitment {
        case .close(let id, _, let paid):
            query.append("""
                 c AS (
                    UPDATE commitments SET status = \(paid > 0 ? "settled" : "released"), settled = \(paid)
                    WHERE id = \(id) AND status = 'open' AND EXISTS (SELECT 1 FROM k) RETURNING 1 AS ok
                ),
                """)
        default:
            query.append(" c AS (SELECT 1 AS ok),")
        }
        query.append("""
             d AS (
                SELECT * FROM unnest(\(deltaIDs)::uuid[], \(deltas.map(\.available))::int8[], \(deltas.map(\.allocated))::int8[],
                                     \(deltas.map(\.spent))::int8[], \(deltas.map(\.committed))::int8[], \(deltas.map(\.transferredNet))::int8[],
                                     \(deltaIDs.map { plan.checkFunds.contains($0) ? "t" : "f" })::bool[])
                    AS d(id, available, allocated, spent, committed, transferred, check_funds)
            ),
            lk AS (
                -- Several budgets (a transfer): lock them in id order so concurrent
                -- transfers between the same budgets cannot deadlock.
                SELECT budgets.id FROM budgets JOIN d ON d.id = budgets.id WHERE EXISTS (SELECT 1 FROM k)
                ORDER BY budgets.id FOR UPDATE OF budgets
            ),
            b AS (
                UPDATE budgets SET available = budgets.available + d.available, allocated = budgets.allocated + d.allocated,
                    spent = budgets.spent + d.spent, committed = budgets.committed + d.committed,
                    transferred_net = budgets.transferred_net + d.transferred
                FROM d
                WHERE budgets.id = d.id AND budgets.id IN (SELECT id FROM lk) AND EXISTS (SELECT 1 FROM c)
                  AND (NOT d.check_funds OR budgets.available + d.available >= -budgets.overdraft_limit)
                RETURNING budgets.id
            ),
            t AS (
                INSERT INTO transactions (id, kind, budget_id, person_id, amount, memo, invoice_reference, provider_organisation_id,
                    service_start, service_end, eligible, council_rate, daily_living, eligible_toward_cap, daily_living_excluded,
                    above_council_rate, reverses_id, refunds_id, commitment_id, idempotency_key, created_by)
                SELECT \(t.id), \(t.kind), \(t.budget.id), \(t.budget.personID), \(t.amount), \(t.memo), \(t.invoiceReference),
                    \(t.providerOrganisationID), \(t.serviceStart?.description)::date, \(t.serviceEnd?.description)::date, \(t.eligible),
                    \(t.councilRate), \(t.dailyLiving), \(t.care.towardCap), \(t.care.dailyLivingExcluded), \(t.care.aboveCouncilRate),
                    \(t.reversesID), \(t.refundsID), \(t.commitmentID), \(t.idempotencyKey), \(t.createdBy)
                WHERE (SELECT count(*) FROM b) = \(deltaIDs.count)
                RETURNING id
            ),
            p AS (
                INSERT INTO postings (transaction_id, line, account_id, amount)
                SELECT t.id, x.line, x.account, x.amount
                FROM t, unnest(\(plan.postings.map(\.account))::uuid[], \(plan.postings.map(\.amount))::int8[]) WITH ORDINALITY
                    AS x(account, amount, line)
                RETURNING 1
            ),
            ca AS (
                INSERT INTO care_accounts (person_id, eligible_total, daily_living_total, above_rate_total)
                SELECT \(t.budget.personID), \(t.care.towardCap), \(t.care.dailyLivingExcluded), \(t.care.aboveCouncilRate) FROM t
                WHERE \(t.care != .none)
                ON CONFLICT (person_id) DO UPDATE SET eligible_total = care_accounts.eligible_total + EXCLUDED.eligible_total,
                    daily_living_total = care_accounts.daily_living_total + EXCLUDED.daily_living_total,
                    above_rate_total = care_accounts.above_rate_total + EXCLUDED.above_rate_total, updated_at = now()
                RETURNING 1
            )
            """)
        if case .open(let id, let provider, let amount, let memo) = commitment {
            query.append("""
                , nc AS (
                    INSERT INTO commitments (id, budget_id, provider_organisation_id, amount, memo, transaction_id)
                    SELECT \(id), \(t.budget.id), \(provider), \(amount), \(memo), t.id FROM t RETURNING 1
                )
                """)
        }
        query.append("""
             SELECT (SELECT count(*) FROM k)::int8 AS fresh,
                CASE WHEN (SELECT count(*) FROM k) = 1 AND (SELECT count(*) FROM t) = 0
                     THEN ledger_refuse(CASE WHEN (SELECT count(*) FROM c) = 0 THEN 'commitment_not_open' ELSE 'insufficient_funds' END)
                     ELSE 0 END AS refused
            """)
        return query
    }

    // MARK: Reading transactions

    public struct TransactionRow: Sendable, Equatable {
        public var id: UUID
        public var seq: Int64
        public var kind: String
        public var budgetID: UUID
        public var personID: UUID
        public var amount: Int64
        public var memo: String
        public var invoiceReference: String
        public var providerOrganisationID: UUID?
        public var serviceStart: String?
        public var serviceEnd: String?
        public var eligible: Bool
        public var councilRate: Int64
        public var dailyLiving: Int64
        public var towardCap: Int64
        public var dailyLivingExcluded: Int64
        public var aboveCouncilRate: Int64
        public var reversesID: UUID?
        public var reversedByID: UUID?
        public var commitmentID: UUID?
        public var idempotencyKey: String
        public var createdBy: String
        public var createdAt: Date
        public var postings: [(account: UUID, kind: String, name: String, amount: Int64)]

        public static func == (lhs: TransactionRow, rhs: TransactionRow) -> Bool { lhs.id == rhs.id && lhs.seq == rhs.seq }
    }

    static let transactionSelect = """
        SELECT t.id, t.seq, t.kind, t.budget_id, t.person_id, t.amount, t.memo, t.invoice_reference, t.provider_organisation_id,
               t.service_start::text AS service_start, t.service_end::text AS service_end, t.eligible, t.council_rate, t.daily_living,
               t.eligible_toward_cap, t.daily_living_excluded, t.above_council_rate, t.reverses_id, t.commitment_id, t.idempotency_key,
               t.created_by, t.created_at, r.id AS reversed_by_id,
               ARRAY(SELECT p.account_id::text || '|' || a.kind || '|' || p.amount::text || '|' || a.name
                     FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.transaction_id = t.id ORDER BY p.line) AS postings
        FROM transactions t LEFT JOIN transactions r ON r.reverses_id = t.id
        """

    static func transaction(_ row: PostgresRow) throws -> TransactionRow {
        let postings: [String] = try row.decode("postings")
        return TransactionRow(
            id: try row.decode("id"), seq: try row.decode("seq"), kind: try row.decode("kind"), budgetID: try row.decode("budget_id"),
            personID: try row.decode("person_id"), amount: try row.decode("amount"), memo: try row.decode("memo"),
            invoiceReference: try row.decode("invoice_reference"), providerOrganisationID: try row.decode("provider_organisation_id"),
            serviceStart: try row.decode("service_start"), serviceEnd: try row.decode("service_end"), eligible: try row.decode("eligible"),
            councilRate: try row.decode("council_rate"), dailyLiving: try row.decode("daily_living"),
            towardCap: try row.decode("eligible_toward_cap"), dailyLivingExcluded: try row.decode("daily_living_excluded"),
            aboveCouncilRate: try row.decode("above_council_rate"), reversesID: try row.decode("reverses_id"),
            reversedByID: try row.decode("reversed_by_id"), commitmentID: try row.decode("commitment_id"),
            idempotencyKey: try row.decode("idempotency_key"), createdBy: try row.decode("created_by"), createdAt: try row.decode("created_at"),
            postings: postings.map { text in
                let parts = text.split(separator: "|", maxSplits: 3, omittingEmptySubsequences: false)
                return (UUID(uuidString: String(parts[0]))!, String(parts[1]), String(parts[3]), Int64(parts[2])!)
            })
    }

    public func transaction(_ id: UUID) async throws -> TransactionRow? {
        try await db.query("\(unsafeRaw: Self.transactionSelect) WHERE t.id = \(id)").first.map(Self.transaction)
    }

    public func transactions(ids: [UUID]) async throws -> [UUID: TransactionRow] {
        guard !ids.isEmpty else { return [:] }
        var out: [UUID: TransactionRow] = [:]
        for row in try await db.query("\(unsafeRaw: Self.transactionSelect) WHERE t.id = ANY(\(ids)::uuid[])") {
            let t = try Self.transaction(row)
            out[t.id] = t
        }
        return out
    }

    /// Newest first; `before` is the `seq` of the last row of the previous page.
    public func transactions(budget: UUID, limit: Int, before: Int64?) async throws -> [TransactionRow] {
        var query: PostgresQuery = "\(unsafeRaw: Self.transactionSelect) WHERE t.budget_id = \(budget)"
        if let before { query.append(" AND t.seq < \(before)") }
        query.append(" ORDER BY t.seq DESC LIMIT \(limit)")
        return try await db.query(query).map(Self.transaction)
    }

    public func transactionsInPeriod(budget: UUID, from: CalendarDate?, to: CalendarDate?) async throws -> [TransactionRow] {
        var query: PostgresQuery = "\(unsafeRaw: Self.transactionSelect) WHERE t.budget_id = \(budget)"
        if let from { query.append(" AND t.created_at >= \(from.date)") }
        if let to { query.append(" AND t.created_at < \(to.adding(days: 1).date)") }
        query.append(" ORDER BY t.seq")
        return try await db.query(query).map(Self.transaction)
    }

    // MARK: Commitments

    public struct CommitmentRow: Sendable, Equatable {
        public var id: UUID
        public var budgetID: UUID
        public var providerOrganisationID: UUID
        public var amount: Int64
        public var settled: Int64
        public var status: String
        public var memo: String
        public var transactionID: UUID
        public var createdAt: Date
    }

    static func commitment(_ row: PostgresRow) throws -> CommitmentRow {
        CommitmentRow(id: try row.decode("id"), budgetID: try row.decode("budget_id"),
                      providerOrganisationID: try row.decode("provider_organisation_id"), amount: try row.decode("amount"),
                      settled: try row.decode("settled"), status: try row.decode("status"), memo: try row.decode("memo"),
                      transactionID: try row.decode("transaction_id"), createdAt: try row.decode("created_at"))
    }

    public func commitment(_ id: UUID) async throws -> CommitmentRow? {
        try await db.query("""
            SELECT id, budget_id, provider_organisation_id, amount, settled, status, memo, transaction_id, created_at FROM commitments WHERE id = \(id)
            """).first.map(Self.commitment)
    }

    public func commitments(budget: UUID) async throws -> [CommitmentRow] {
        try await db.query("""
            SELECT id, budget_id, provider_organisation_id, amount, settled, status, memo, transaction_id, created_at FROM commitments
            WHERE budget_id = \(budget) ORDER BY created_at DESC
            """).map(Self.commitment)
    }

    // MARK: Care account

    public func capPolicies() async throws -> [(id: UUID, from: CalendarDate, cap: Int64, name: String)] {
        try await db.query("SELECT id, effective_from::text AS f, cap_pence, name FROM cap_policies ORDER BY effective_from").map { row in
            (try row.decode("id"), CalendarDate(try row.decode("f", as: String.self))!, try row.decode("cap_pence"), try row.decode("name"))
        }
    }

    public func addCapPolicy(from: CalendarDate, cap: Int64, name: String) async throws -> UUID? {
        let id = UUID()
        do {
            try await db.query("INSERT INTO cap_policies (id, effective_from, cap_pence, name) VALUES (\(id), \(from.description)::date, \(cap), \(name))")
            return id
        } catch let error as PostgresError where error.isUniqueViolation {
            return nil
        }
    }

    public struct CareJournal: Sendable {
        public var lines: [(date: CalendarDate, towardCap: Int64, dailyLiving: Int64, aboveRate: Int64, at: Date, seq: Int64)]
        public var stored: (eligible: Int64, dailyLiving: Int64, aboveRate: Int64)
    }

    /// The person's care facts from the journal, in service-date order, and the stored totals.
    public func careJournal(person: UUID) async throws -> CareJournal {
        let rows = try await db.query("""
            SELECT COALESCE(service_start, created_at::date)::text AS d, eligible_toward_cap, daily_living_excluded, above_council_rate,
                   created_at, seq
            FROM transactions WHERE person_id = \(person) AND (eligible_toward_cap <> 0 OR daily_living_excluded <> 0 OR above_council_rate <> 0)
            ORDER BY COALESCE(service_start, created_at::date), seq
            """)
        let lines = try rows.map { row in
            (CalendarDate(try row.decode("d", as: String.self))!, try row.decode("eligible_toward_cap", as: Int64.self),
             try row.decode("daily_living_excluded", as: Int64.self), try row.decode("above_council_rate", as: Int64.self),
             try row.decode("created_at", as: Date.self), try row.decode("seq", as: Int64.self))
        }
        let stored = try await db.query("""
            SELECT eligible_total, daily_living_total, above_rate_total FROM care_accounts WHERE person_id = \(person)
            """).first.map { (try $0.decode("eligible_total", as: Int64.self), try $0.decode("daily_living_total", as: Int64.self),
                              try $0.decode("above_rate_total", as: Int64.self)) } ?? (0, 0, 0)
        return CareJournal(lines: lines, stored: stored)
    }

    public func storeStatement(person: UUID, kind: String, body: String) async throws -> (UUID, Date) {
        let id = UUID()
        let row = try await db.query("""
            INSERT INTO care_statements (id, person_id, kind, body) VALUES (\(id), \(person), \(kind), \(body)::jsonb) RETURNING issued_at
            """)[0]
        return (id, try row.decode("issued_at"))
    }

    public func statements(person: UUID) async throws -> [(id: UUID, kind: String, issuedAt: Date, body: String)] {
        try await db.query("""
            SELECT id, kind, issued_at, body::text AS body FROM care_statements WHERE person_id = \(person) ORDER BY issued_at DESC
            """).map { (try $0.decode("id"), try $0.decode("kind"), try $0.decode("issued_at"), try $0.decode("body")) }
    }

    /// People with care activity whose last statement is over a year old (or who have none).
    public func peopleDueAnnualStatement() async throws -> [UUID] {
        try await db.query("""
            SELECT c.person_id FROM care_accounts c
            WHERE NOT EXISTS (SELECT 1 FROM care_statements s
                              WHERE s.person_id = c.person_id AND s.kind = 'annual' AND s.issued_at > now() - interval '1 year')
            LIMIT 500
            """).map { try $0.decode("person_id") }
    }

    // MARK: Invariants

    /// Recomputes a budget's aggregates from its postings (for checks and tests).
    public func recomputedBudget(_ id: UUID) async throws -> BudgetDelta {
        let row = try await db.query("""
            WITH bp AS (
                SELECT p.amount, p.account_id = \(id) AS own, a.kind AS account_kind, t.budget_id = \(id) AS own_transaction,
                       COALESCE(o.kind, t.kind) AS category
                FROM postings p JOIN transactions t ON t.id = p.transaction_id JOIN accounts a ON a.id = p.account_id
                LEFT JOIN transactions o ON o.id = t.reverses_id
                WHERE t.budget_id = \(id) OR p.account_id = \(id)
            )
            SELECT
              COALESCE((SELECT sum(p.amount) FROM postings p WHERE p.account_id = \(id)), 0)::int8 AS available,
              COALESCE((SELECT sum(p.amount) FROM postings p JOIN budgets b ON b.commitments_account_id = p.account_id WHERE b.id = \(id)), 0)::int8 AS committed,
              COALESCE((SELECT sum(amount) FROM bp WHERE own AND category IN ('allocation', 'top_up')), 0)::int8 AS allocated,
              COALESCE((SELECT sum(amount) FROM bp WHERE own_transaction AND account_kind = 'provider'), 0)::int8 AS spent,
              COALESCE((SELECT sum(amount) FROM bp WHERE own AND category = 'transfer'), 0)::int8 AS transferred
            """)[0]
        return BudgetDelta(available: try row.decode("available"), allocated: try row.decode("allocated"), spent: try row.decode("spent"),
                           committed: try row.decode("committed"), transferredNet: try row.decode("transferred"))
    }

    /// Sum of all postings (must be 0) and the number of unbalanced transactions (must be 0).
    public func journalBalance() async throws -> (total: Int64, unbalanced: Int) {
        let row = try await db.query("""
            SELECT COALESCE((SELECT sum(amount) FROM postings), 0)::int8 AS total,
                   (SELECT count(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id HAVING sum(amount) <> 0) u)::int8 AS unbalanced
            """)[0]
        return (try row.decode("total"), try row.decode("unbalanced"))
    }
}

/// Immutable facts cached across requests (budget accounts, organisation accounts).
final class LedgerCache: Sendable {
    private let budgets = Mutex<[UUID: BudgetInfo]>([:])
    private let accounts = Mutex<[String: UUID]>([:])

    func budget(_ id: UUID) -> BudgetInfo? { budgets.withLock { $0[id] } }
    func setBudget(_ info: BudgetInfo) { budgets.withLock { if $0.count < 100_000 { $0[info.id] = info } } }
    func account(_ key: String) -> UUID? { accounts.withLock { $0[key] } }
    func setAccount(_ key: String, _ id: UUID) { accounts.withLock { if $0.count < 100_000 { $0[key] = id } } }
}
