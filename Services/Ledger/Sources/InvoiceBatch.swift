import Foundation
import Postgres
import RPC

/// One validated, authorised invoice of a batch.
public struct BatchInvoice: Sendable {
    public var index: Int
    public var transaction: NewTransaction
    public var plan: LedgerRules.Plan
    public var requestHash: [UInt8]
    /// Whose idempotency keys these are (the caller: see `LedgerRPCService.scope`).
    public var scope: String
}

/// An item's idempotency key within its caller's scope.
struct ScopedKey: Hashable, Sendable {
    var scope: String
    var key: String
}

extension BatchInvoice {
    var scopedKey: ScopedKey { ScopedKey(scope: scope, key: transaction.idempotencyKey) }
    /// The budget an invoice draws on.
    var budgetID: UUID { transaction.budget.id }
}

public enum BatchItemOutcome: Sendable, Equatable {
    case posted(UUID)
    case replayed(UUID)
    case keyReused
    case insufficientFunds
}

extension LedgerStore {
    /// Posts many invoices in one database transaction with a handful of set-based
    /// statements. Each invoice is all-or-nothing on its own: an invoice that would
    /// overdraw its budget (given the ones before it in the batch), or whose key was used
    /// with a different body, is left out and the others are posted. Items may come from
    /// different callers (each has its own key scope); no scoped key may appear twice.
    ///
    /// The statements run back to back on one pool thread (`withBlockingTransaction`).
    public func postBatch(_ items: [BatchInvoice]) async throws -> [Int: BatchItemOutcome] {
        guard !items.isEmpty else { return [:] }
        return try await db.withBlockingTransaction { session in
            var outcomes: [Int: BatchItemOutcome] = [:]
            // 1. Claim the idempotency keys (sorted, so concurrent batches lock in one order).
            // Keys are ASCII, so byte order (COLLATE "C") is the order every writer uses.
            // Claims are matched by transaction id: a key given twice is claimed once.
            let claimed = Set(try session.query("""
                INSERT INTO idempotency_keys (scope, key, request_hash, transaction_id)
                SELECT s, k, decode(h, 'hex'), t
                FROM unnest(\(items.map(\.scope))::text[], \(items.map(\.transaction.idempotencyKey))::text[],
                            \(items.map { Hex.encode($0.requestHash) })::text[], \(items.map(\.transaction.id))::uuid[]) AS x(s, k, h, t)
                ORDER BY s COLLATE "C", k COLLATE "C"
                ON CONFLICT DO NOTHING RETURNING transaction_id
                """).map { try $0.decode("transaction_id", as: UUID.self) })
            // 2. Keys used before: the original result, or a refusal.
            let repeats = items.filter { !claimed.contains($0.transaction.id) }
            if !repeats.isEmpty {
                let keys = repeats.map(\.scopedKey)
                let existing = try Self.storedKeys(keys, rows: try session.query(Self.storedKeysQuery(keys)))
                for item in repeats {
                    if let stored = existing[item.scopedKey], stored.hash == item.requestHash {
                        outcomes[item.index] = .replayed(stored.tx)
                    } else {
                        outcomes[item.index] = .keyReused
                    }
                }
            }
            let fresh = items.filter { claimed.contains($0.transaction.id) }.sorted { $0.index < $1.index }
            guard !fresh.isEmpty else { return outcomes }
            // 3. Lock the budgets involved, in id order, and check funds invoice by invoice.
            let budgetIDs = Array(Set(fresh.flatMap { $0.plan.deltas.keys })).sorted { $0.lowercasedString < $1.lowercasedString }
            var room: [UUID: Int64] = [:]
            for row in try session.query("""
                SELECT id, available + overdraft_limit AS room FROM budgets WHERE id = ANY(\(budgetIDs)::uuid[]) ORDER BY id FOR UPDATE
                """) {
                room[try row.decode("id")] = try row.decode("room")
            }
            var accepted: [BatchInvoice] = []
            var refusedKeys: [ScopedKey] = []
            for item in fresh {
                // A budget that was not found refuses the invoice (checked first: no
                // arithmetic on a missing balance).
                let fits = item.plan.deltas.keys.allSatisfy { room[$0] != nil } && item.plan.deltas.allSatisfy { budget, delta in
                    !item.plan.checkFunds.contains(budget) || room[budget]! + delta.available >= 0
                }
                if fits {
                    for (budget, delta) in item.plan.deltas { room[budget]! += delta.available }
                    accepted.append(item)
                    outcomes[item.index] = .posted(item.transaction.id)
                } else {
                    refusedKeys.append(item.scopedKey)
                    outcomes[item.index] = .insufficientFunds
                }
            }
            if !refusedKeys.isEmpty {
                try session.query("""
                    DELETE FROM idempotency_keys i USING unnest(\(refusedKeys.map(\.scope))::text[], \(refusedKeys.map(\.key))::text[]) AS r(scope, key)
                    WHERE i.scope = r.scope AND i.key = r.key
                    """)
            }
            guard !accepted.isEmpty else { return outcomes }
            // 4. Write the accepted invoices: transactions, postings, budget totals, care accounts.
            // Transactions and their lines in one statement: the database checks, after each
            // statement, that every new transaction has balanced lines.
            let t = accepted.map(\.transaction)
            let postings = accepted.flatMap { item in item.plan.postings.enumerated().map { (item.transaction.id, Int64($0.offset + 1), $0.element) } }
            var write: PostgresQuery = "WITH t AS ("
            write.append(Self.insertTransactions(t))
            write.append("""
                 RETURNING 1)
                INSERT INTO postings (transaction_id, line, account_id, amount)
                SELECT * FROM unnest(\(postings.map(\.0))::uuid[], \(postings.map(\.1))::int8[]::int2[], \(postings.map(\.2.account))::uuid[],
                                     \(postings.map(\.2.amount))::int8[])
                """)
            try session.query(write)
            var totals: [UUID: BudgetDelta] = [:]
            for item in accepted {
                for (budget, delta) in item.plan.deltas {
                    var sum = totals[budget] ?? BudgetDelta()
                    sum.available += delta.available
                    sum.allocated += delta.allocated
                    sum.spent += delta.spent
                    sum.committed += delta.committed
                    sum.transferredNet += delta.transferredNet
                    totals[budget] = sum
                }
            }
            let ids = Array(totals.keys)
            try session.query("""
                UPDATE budgets SET available = budgets.available + d.available, allocated = budgets.allocated + d.allocated,
                    spent = budgets.spent + d.spent, committed = budgets.committed + d.committed, transferred_net = budgets.transferred_net + d.transferred
                FROM unnest(\(ids)::uuid[], \(ids.map { totals[$0]!.available })::int8[], \(ids.map { totals[$0]!.allocated })::int8[],
                            \(ids.map { totals[$0]!.spent })::int8[], \(ids.map { totals[$0]!.committed })::int8[],
                            \(ids.map { totals[$0]!.transferredNet })::int8[]) AS d(id, available, allocated, spent, committed, transferred)
                WHERE budgets.id = d.id
                """)
            var care: [UUID: CareCapMeter.Contribution] = [:]
            for item in t {
                var sum = care[item.budget.personID] ?? .none
                sum.towardCap += item.care.towardCap
                sum.dailyLivingExcluded += item.care.dailyLivingExcluded
                sum.aboveCouncilRate += item.care.aboveCouncilRate
                care[item.budget.personID] = sum
            }
            // Only people whose care account changes, locked in id order (as every writer does).
            let people = care.keys.filter { care[$0]! != .none }
            guard !people.isEmpty else { return outcomes }
            try session.query("""
                INSERT INTO care_accounts (person_id, eligible_total, daily_living_total, above_rate_total)
                SELECT * FROM unnest(\(people)::uuid[], \(people.map { care[$0]!.towardCap })::int8[],
                                     \(people.map { care[$0]!.dailyLivingExcluded })::int8[], \(people.map { care[$0]!.aboveCouncilRate })::int8[])
                    AS c(person_id, eligible, daily_living, above_rate)
                ORDER BY person_id
                ON CONFLICT (person_id) DO UPDATE SET eligible_total = care_accounts.eligible_total + EXCLUDED.eligible_total,
                    daily_living_total = care_accounts.daily_living_total + EXCLUDED.daily_living_total,
                    above_rate_total = care_accounts.above_rate_total + EXCLUDED.above_rate_total, updated_at = now()
                """)
            return outcomes
        }
    }
}

extension LedgerStore {
    /// `INSERT INTO transactions … SELECT … FROM unnest(…) AS y(…)` for new purchase-like
    /// transactions, one array per column; callers may append a `WHERE` on `y`.
    static func insertTransactions(_ t: [NewTransaction]) -> PostgresQuery {
        """
        INSERT INTO transactions (id, kind, budget_id, person_id, amount, memo, invoice_reference, provider_organisation_id,
            service_start, service_end, eligible, council_rate, daily_living, eligible_toward_cap, daily_living_excluded,
            above_council_rate, idempotency_key, created_by)
        SELECT id, kind, budget_id, person_id, amount, memo, invoice_reference, NULLIF(provider, '')::uuid,
            NULLIF(service_start, '')::date, NULLIF(service_end, '')::date, eligible, council_rate, daily_living,
            toward_cap, daily_living_excluded, above_rate, key, created_by
        FROM unnest(\(t.map(\.id))::uuid[], \(t.map(\.kind))::text[], \(t.map(\.budget.id))::uuid[],
            \(t.map(\.budget.personID))::uuid[], \(t.map(\.amount))::int8[], \(t.map(\.memo))::text[],
            \(t.map(\.invoiceReference))::text[], \(t.map { $0.providerOrganisationID?.lowercasedString ?? "" })::text[],
            \(t.map { $0.serviceStart?.description ?? "" })::text[], \(t.map { $0.serviceEnd?.description ?? "" })::text[],
            \(t.map { $0.eligible ? "t" : "f" })::bool[], \(t.map(\.councilRate))::int8[], \(t.map(\.dailyLiving))::int8[],
            \(t.map(\.care.towardCap))::int8[], \(t.map(\.care.dailyLivingExcluded))::int8[], \(t.map(\.care.aboveCouncilRate))::int8[],
            \(t.map(\.idempotencyKey))::text[], \(t.map(\.createdBy))::text[])
            AS y(id, kind, budget_id, person_id, amount, memo, invoice_reference, provider, service_start, service_end, eligible,
                 council_rate, daily_living, toward_cap, daily_living_excluded, above_rate, key, created_by)
        """
    }

    /// Posts invoices (from any callers) in one statement, when every fresh one fits its
    /// budget: the idempotency keys, budget locks (in id order) and totals, transactions,
    /// postings and care accounts, one round trip and one commit for all of them. Returns
    /// nil, having written nothing, when any invoice would overdraw its budget or is not a
    /// plain purchase; `postBatch` then decides invoice by invoice. Items must not repeat a
    /// scoped key.
    func postInvoicesTogether(_ items: [BatchInvoice]) async throws -> [Int: BatchItemOutcome]? {
        var budgets: [UUID] = [], available: [Int64] = [], spent: [Int64] = []
        for item in items {
            guard item.plan.deltas.count == 1, let (budget, delta) = item.plan.deltas.first,
                  delta.allocated == 0, delta.committed == 0, delta.transferredNet == 0, item.transaction.reversesID == nil,
                  item.transaction.commitmentID == nil else { return nil }
            budgets.append(budget)
            available.append(delta.available)
            spent.append(delta.spent)
        }
        let t = items.map(\.transaction)
        let postings = items.flatMap { item in item.plan.postings.enumerated().map { (item.transaction.id, Int64($0.offset + 1), $0.element) } }
        var query: PostgresQuery = """
            WITH x AS (
                SELECT * FROM unnest(\(t.map(\.id))::uuid[], \(items.map(\.scope))::text[], \(t.map(\.idempotencyKey))::text[],
                                     \(items.map { Hex.encode($0.requestHash) })::text[], \(budgets)::uuid[], \(available)::int8[], \(spent)::int8[])
                    AS x(id, scope, key, hash, budget_id, available, spent)
            ),
            k AS (
                INSERT INTO idempotency_keys (scope, key, request_hash, transaction_id)
                SELECT scope, key, decode(hash, 'hex'), id FROM x ORDER BY scope COLLATE "C", key COLLATE "C"
                ON CONFLICT DO NOTHING RETURNING transaction_id
            ),
            s AS (
                SELECT x.budget_id, sum(x.available)::int8 AS available, sum(x.spent)::int8 AS spent
                FROM x JOIN k ON k.transaction_id = x.id GROUP BY x.budget_id
            ),
            lk AS (
                SELECT budgets.id, budgets.available + s.available >= -budgets.overdraft_limit AS fits
                FROM budgets JOIN s ON s.budget_id = budgets.id ORDER BY budgets.id FOR UPDATE OF budgets
            ),
            ok AS (
                SELECT count(*) = (SELECT count(*) FROM s) AND COALESCE(bool_and(fits), true) AS ok FROM lk
            ),
            b AS (
                UPDATE budgets SET available = budgets.available + s.available, spent = budgets.spent + s.spent
                FROM s WHERE budgets.id = s.budget_id AND (SELECT ok FROM ok)
                RETURNING 1
            ),
            t AS (
            """
        query.append(Self.insertTransactions(t))
        query.append("""
                WHERE y.id IN (SELECT transaction_id FROM k) AND (SELECT ok FROM ok)
                RETURNING id, person_id, eligible_toward_cap, daily_living_excluded, above_council_rate
            ),
            p AS (
                INSERT INTO postings (transaction_id, line, account_id, amount)
                SELECT q.tx, q.line, q.account, q.amount
                FROM unnest(\(postings.map(\.0))::uuid[], \(postings.map(\.1))::int8[]::int2[], \(postings.map(\.2.account))::uuid[],
                            \(postings.map(\.2.amount))::int8[]) AS q(tx, line, account, amount)
                WHERE q.tx IN (SELECT id FROM t)
                RETURNING 1
            ),
            ca AS (
                INSERT INTO care_accounts (person_id, eligible_total, daily_living_total, above_rate_total)
                SELECT person_id, sum(eligible_toward_cap), sum(daily_living_excluded), sum(above_council_rate) FROM t
                WHERE eligible_toward_cap <> 0 OR daily_living_excluded <> 0 OR above_council_rate <> 0
                GROUP BY person_id ORDER BY person_id
                ON CONFLICT (person_id) DO UPDATE SET eligible_total = care_accounts.eligible_total + EXCLUDED.eligible_total,
                    daily_living_total = care_accounts.daily_living_total + EXCLUDED.daily_living_total,
                    above_rate_total = care_accounts.above_rate_total + EXCLUDED.above_rate_total, updated_at = now()
                RETURNING 1
            )
            SELECT ARRAY(SELECT transaction_id FROM k)::text[] AS fresh, (SELECT count(*) FROM t)::int8 AS written,
                CASE WHEN (SELECT ok FROM ok) THEN 0 ELSE ledger_refuse('insufficient_funds') END AS refused
            """)
        let row: PostgresRow
        do {
            row = try await runRetryingConflicts(query)
        } catch let error as PostgresError where error.sqlState == "P0001" || (error.sqlState == "23514" && error.constraint == "budgets_check") {
            return nil
        }
        let fresh = Set(try row.decode("fresh", as: [String].self).compactMap { UUID(hyphenated: $0) })
        guard try row.decode("written", as: Int.self) == fresh.count else {
            throw PostgresError(kind: .server, safeMessage: "a grouped posting wrote an unexpected number of transactions")
        }
        var outcomes: [Int: BatchItemOutcome] = [:]
        for item in items where fresh.contains(item.transaction.id) { outcomes[item.index] = .posted(item.transaction.id) }
        let repeats = items.filter { !fresh.contains($0.transaction.id) }
        if !repeats.isEmpty {
            // Keys used before (a retried request): the original transaction, or a refusal.
            let stored = try await storedKeys(repeats.map(\.scopedKey))
            for item in repeats {
                if let original = stored[item.scopedKey], original.hash == item.requestHash {
                    outcomes[item.index] = .replayed(original.tx)
                } else {
                    outcomes[item.index] = .keyReused
                }
            }
        }
        return outcomes
    }

    /// The request hash and transaction stored for each of these keys, in one query.
    func storedKeys(_ keys: [ScopedKey]) async throws -> [ScopedKey: (hash: [UInt8], tx: UUID)] {
        try Self.storedKeys(keys, rows: try await db.query(Self.storedKeysQuery(keys)))
    }

    static func storedKeysQuery(_ keys: [ScopedKey]) -> PostgresQuery {
        """
        SELECT i.scope, i.key, i.request_hash, i.transaction_id
        FROM unnest(\(keys.map(\.scope))::text[], \(keys.map(\.key))::text[]) AS r(scope, key)
        JOIN idempotency_keys i ON i.scope = r.scope AND i.key = r.key
        """
    }

    static func storedKeys(_ keys: [ScopedKey], rows: PostgresRows) throws -> [ScopedKey: (hash: [UInt8], tx: UUID)] {
        var existing: [ScopedKey: (hash: [UInt8], tx: UUID)] = [:]
        for row in rows {
            existing[ScopedKey(scope: try row.decode("scope"), key: try row.decode("key"))] =
                (try row.decode("request_hash", as: PostgresBytes.self).bytes, try row.decode("transaction_id"))
        }
        return existing
    }
}
