import Foundation
import Postgres
import RPC

/// One validated, authorised invoice of a batch.
public struct BatchInvoice: Sendable {
    public var index: Int
    public var transaction: NewTransaction
    public var plan: LedgerRules.Plan
    public var requestHash: [UInt8]
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
    /// with a different body, is left out and the others are posted.
    public func postBatch(_ items: [BatchInvoice], scope: String) async throws -> [Int: BatchItemOutcome] {
        guard !items.isEmpty else { return [:] }
        return try await db.withTransaction { session in
            var outcomes: [Int: BatchItemOutcome] = [:]
            // 1. Claim the idempotency keys (sorted, so concurrent batches lock in one order).
            let sorted = items.sorted { $0.transaction.idempotencyKey < $1.transaction.idempotencyKey }
            let claimed = Set(try await session.query("""
                INSERT INTO idempotency_keys (scope, key, request_hash, transaction_id)
                SELECT \(scope), k, decode(h, 'hex'), t
                FROM unnest(\(sorted.map(\.transaction.idempotencyKey))::text[], \(sorted.map { hex($0.requestHash) })::text[],
                            \(sorted.map(\.transaction.id))::uuid[]) AS x(k, h, t)
                ON CONFLICT DO NOTHING RETURNING key
                """).map { try $0.decode("key", as: String.self) })
            // 2. Keys used before: the original result, or a refusal.
            let repeats = items.filter { !claimed.contains($0.transaction.idempotencyKey) }
            if !repeats.isEmpty {
                var existing: [String: (hash: [UInt8], tx: UUID)] = [:]
                for row in try await session.query("""
                    SELECT key, request_hash, transaction_id FROM idempotency_keys
                    WHERE scope = \(scope) AND key = ANY(\(repeats.map(\.transaction.idempotencyKey))::text[])
                    """) {
                    existing[try row.decode("key")] = (try row.decode("request_hash", as: PostgresBytes.self).bytes, try row.decode("transaction_id"))
                }
                for item in repeats {
                    if let stored = existing[item.transaction.idempotencyKey], stored.hash == item.requestHash {
                        outcomes[item.index] = .replayed(stored.tx)
                    } else {
                        outcomes[item.index] = .keyReused
                    }
                }
            }
            let fresh = items.filter { claimed.contains($0.transaction.idempotencyKey) }.sorted { $0.index < $1.index }
            guard !fresh.isEmpty else { return outcomes }
            // 3. Lock the budgets involved, in id order, and check funds invoice by invoice.
            let budgetIDs = Array(Set(fresh.flatMap { $0.plan.deltas.keys })).sorted { $0.uuidString < $1.uuidString }
            var room: [UUID: Int64] = [:]
            for row in try await session.query("""
                SELECT id, available + overdraft_limit AS room FROM budgets WHERE id = ANY(\(budgetIDs)::uuid[]) ORDER BY id FOR UPDATE
                """) {
                room[try row.decode("id")] = try row.decode("room")
            }
            var accepted: [BatchInvoice] = []
            var refusedKeys: [String] = []
            for item in fresh {
                let fits = item.plan.deltas.allSatisfy { budget, delta in
                    !item.plan.checkFunds.contains(budget) || (room[budget] ?? .min) + delta.available >= 0
                } && item.plan.deltas.keys.allSatisfy { room[$0] != nil }
                if fits {
                    for (budget, delta) in item.plan.deltas { room[budget]! += delta.available }
                    accepted.append(item)
                    outcomes[item.index] = .posted(item.transaction.id)
                } else {
                    refusedKeys.append(item.transaction.idempotencyKey)
                    outcomes[item.index] = .insufficientFunds
                }
            }
            if !refusedKeys.isEmpty {
                try await session.query("DELETE FROM idempotency_keys WHERE scope = \(scope) AND key = ANY(\(refusedKeys)::text[])")
            }
            guard !accepted.isEmpty else { return outcomes }
            // 4. Write the accepted invoices: transactions, postings, budget totals, care accounts.
            let t = accepted.map(\.transaction)
            try await session.query("""
                INSERT INTO transactions (id, kind, budget_id, person_id, amount, memo, invoice_reference, provider_organisation_id,
                    service_start, service_end, eligible, council_rate, daily_living, eligible_toward_cap, daily_living_excluded,
                    above_council_rate, idempotency_key, created_by)
                SELECT id, kind, budget_id, person_id, amount, memo, invoice_reference, NULLIF(provider, '')::uuid,
                    NULLIF(service_start, '')::date, NULLIF(service_end, '')::date, eligible, council_rate, daily_living,
                    toward_cap, daily_living_excluded, above_rate, key, created_by
                FROM unnest(\(t.map(\.id))::uuid[], \(t.map(\.kind))::text[], \(t.map(\.budget.id))::uuid[],
                    \(t.map(\.budget.personID))::uuid[], \(t.map(\.amount))::int8[], \(t.map(\.memo))::text[],
                    \(t.map(\.invoiceReference))::text[], \(t.map { $0.providerOrganisationID?.uuidString ?? "" })::text[],
                    \(t.map { $0.serviceStart?.description ?? "" })::text[], \(t.map { $0.serviceEnd?.description ?? "" })::text[],
                    \(t.map { $0.eligible ? "t" : "f" })::bool[], \(t.map(\.councilRate))::int8[], \(t.map(\.dailyLiving))::int8[],
                    \(t.map(\.care.towardCap))::int8[], \(t.map(\.care.dailyLivingExcluded))::int8[], \(t.map(\.care.aboveCouncilRate))::int8[],
                    \(t.map(\.idempotencyKey))::text[], \(t.map(\.createdBy))::text[])
                    AS x(id, kind, budget_id, person_id, amount, memo, invoice_reference, provider, service_start, service_end, eligible,
                         council_rate, daily_living, toward_cap, daily_living_excluded, above_rate, key, created_by)
                """)
            let postings = accepted.flatMap { item in item.plan.postings.enumerated().map { (item.transaction.id, Int64($0.offset + 1), $0.element) } }
            try await session.query("""
                INSERT INTO postings (transaction_id, line, account_id, amount)
                SELECT * FROM unnest(\(postings.map(\.0))::uuid[], \(postings.map(\.1))::int8[]::int2[], \(postings.map(\.2.account))::uuid[],
                                     \(postings.map(\.2.amount))::int8[])
                """)
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
            try await session.query("""
                UPDATE budgets SET available = budgets.available + d.available, allocated = budgets.allocated + d.allocated,
                    spent = budgets.spent + d.spent, committed = budgets.committed + d.committed, transferred_net = budgets.transferred_net + d.transferred
                FROM unnest(\(ids)::uuid[], \(ids.map { totals[$0]!.available })::int8[], \(ids.map { totals[$0]!.allocated })::int8[],
                            \(ids.map { totals[$0]!.spent })::int8[], \(ids.map { totals[$0]!.committed })::int8[],
                            \(ids.map { totals[$0]!.transferredNet })::int8[]) AS d(id, available, allocated, spent, committed, transferred)
                WHERE budgets.id = d.id
                """)
            var care: [UUID: CareCapMeter.Contribution] = [:]
            for item in t {
                var sum = care[item.budget.personID] ?? CareCapMeter.Contribution(towardCap: 0, dailyLivingExcluded: 0, aboveCouncilRate: 0)
                sum.towardCap += item.care.towardCap
                sum.dailyLivingExcluded += item.care.dailyLivingExcluded
                sum.aboveCouncilRate += item.care.aboveCouncilRate
                care[item.budget.personID] = sum
            }
            let people = Array(care.keys)
            try await session.query("""
                INSERT INTO care_accounts (person_id, eligible_total, daily_living_total, above_rate_total)
                SELECT * FROM unnest(\(people)::uuid[], \(people.map { care[$0]!.towardCap })::int8[],
                                     \(people.map { care[$0]!.dailyLivingExcluded })::int8[], \(people.map { care[$0]!.aboveCouncilRate })::int8[])
                ON CONFLICT (person_id) DO UPDATE SET eligible_total = care_accounts.eligible_total + EXCLUDED.eligible_total,
                    daily_living_total = care_accounts.daily_living_total + EXCLUDED.daily_living_total,
                    above_rate_total = care_accounts.above_rate_total + EXCLUDED.above_rate_total, updated_at = now()
                """)
            return outcomes
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}
