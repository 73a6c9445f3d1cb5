import Contracts
import Foundation
import LedgerService
import Postgres
import RPC
import ServiceTestSupport
import TestSupport
import Testing

@Suite("Budget ledger")
struct LedgerTests {
    @Test("allocate, invoice, refund: the budget shows allocated, spent, committed and available")
    func basicFlow() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 1_000_000)
            let invoice = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 250_000),
                                                         options: LedgerHarness.bearer(p.provider))
            #expect(invoice.kind == "purchase")
            #expect(invoice.postings.reduce(0) { $0 + $1.amountPence } == 0)
            var refund = Wholecare_Ledger_V1_RefundRequest()
            refund.budgetID = budget
            refund.providerOrganisationID = p.agency
            refund.amountPence = 50_000
            refund.refundsTransactionID = invoice.id
            refund.idempotencyKey = "refund-1"
            _ = try await h.ledger.refund(refund, options: LedgerHarness.bearer(p.provider))
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            let b = try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(b.allocatedPence == 1_000_000)
            #expect(b.spentPence == 200_000)
            #expect(b.committedPence == 0)
            #expect(b.availablePence == 800_000)
        }
    }

    @Test("a posting that would overdraw is refused with FAILED_PRECONDITION and writes nothing; an overdraft limit is honoured")
    func overdraft() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let before = try await h.transactionCount()
            let refused = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 100_001),
                                               options: LedgerHarness.bearer(p.provider))
            }
            #expect(refused?.code == .failedPrecondition)
            #expect(try await h.transactionCount() == before)
            // The same key can be used again once there is money (the refusal stored nothing).
            let withOverdraft = try await h.budget(for: p, allocate: 100_000, overdraft: 5_000, name: "With overdraft")
            _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: withOverdraft, provider: p.agency, amount: 104_000),
                                               options: LedgerHarness.bearer(p.provider))
            await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: withOverdraft, provider: p.agency, amount: 2_000),
                                               options: LedgerHarness.bearer(p.provider))
            }
        }
    }

    @Test("money goes only to organisations identity knows: a made-up provider or funder id is refused and opens no account")
    func unknownOrganisationsRefused() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let accountsBefore = try await h.db.query("SELECT count(*) AS n FROM accounts")[0].decode("n", as: Int.self)
            // The person paying from their own budget (a direct payment) names a provider.
            let madeUp = UUID().uuidString
            let refused = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: madeUp, amount: 1_000),
                                               options: LedgerHarness.bearer(p.person.accessToken))
            }
            #expect(refused?.code == .invalidArgument)
            #expect(refused?.message.contains("provider_organisation_id") == true)
            // Nor is a person (or any account) an organisation to pay.
            let aPerson = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.coordinatorID, amount: 1_000),
                                               options: LedgerHarness.bearer(p.person.accessToken))
            }
            #expect(aPerson?.code == .invalidArgument)
            var create = Wholecare_Ledger_V1_CreateBudgetRequest()
            create.personID = p.personID
            create.funderOrganisationID = UUID().uuidString
            create.name = "Nobody's money"
            let noFunder = await #expect(throws: RPCError.self) { try await h.ledger.createBudget(create, options: LedgerHarness.bearer(p.coordinator)) }
            #expect(noFunder?.code == .invalidArgument)
            #expect(try await h.db.query("SELECT count(*) AS n FROM accounts")[0].decode("n", as: Int.self) == accountsBefore)
            // A real organisation is fine, the first time and after.
            for _ in 0..<2 {
                _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.lonelyAgency, amount: 1_000),
                                                   options: LedgerHarness.bearer(p.person.accessToken))
            }
        }
    }

    @Test("a bank-style run of concurrent transfers never loses, creates or overspends money")
    func concurrentTransfers() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            var budgets: [String] = []
            for i in 0..<4 { budgets.append(try await h.budget(for: p, allocate: 100_000, name: "Budget \(i)")) }
            let ids = budgets
            let token = p.finance
            let ledger = h.ledger
            let refusals = try await withThrowingTaskGroup(of: Int.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var refused = 0
                        var rng = SystemRandomNumberGenerator()
                        for n in 0..<40 {
                            let from = Int.random(in: 0..<ids.count, using: &rng)
                            var to = Int.random(in: 0..<ids.count, using: &rng)
                            if to == from { to = (to + 1) % ids.count }
                            var transfer = Wholecare_Ledger_V1_TransferRequest()
                            transfer.fromBudgetID = ids[from]
                            transfer.toBudgetID = ids[to]
                            transfer.amountPence = Int64.random(in: 1...60_000, using: &rng)
                            transfer.idempotencyKey = "w\(worker)-\(n)"
                            do {
                                _ = try await ledger.transfer(transfer, options: LedgerHarness.bearer(token))
                            } catch let error as RPCError where error.code == .failedPrecondition {
                                refused += 1
                            }
                        }
                        return refused
                    }
                }
                return try await group.reduce(0, +)
            }
            var total: Int64 = 0
            for id in ids {
                let b = try await h.read(budget: id, token: p.coordinator)
                #expect(b.availablePence >= 0)
                total += b.availablePence
            }
            #expect(total == 400_000, "money was created or lost")
            #expect(refusals < 320, "every transfer was refused")
        }
    }

    @Test("the same idempotency key sent concurrently yields one transaction; a different body is refused")
    func idempotencyRace() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 1_000_000)
            let request = LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 12_345, key: "race-key")
            let ledger = h.ledger
            let token = p.provider
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<12 { group.addTask { try await ledger.postInvoice(request, options: LedgerHarness.bearer(token)).id } }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(ids.count == 1)
            #expect(try await h.transactionCount() == 2)  // the allocation and one invoice
            var different = request
            different.amountPence = 54_321
            let reused = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(different, options: LedgerHarness.bearer(p.provider))
            }
            #expect(reused?.code == .alreadyExists)
            // Keys are per caller: another caller's identical key is independent.
            var mine = Wholecare_Ledger_V1_TopUpRequest()
            mine.budgetID = budget
            mine.amountPence = 500
            mine.idempotencyKey = "race-key"
            _ = try await h.ledger.topUp(mine, options: LedgerHarness.bearer(p.person.accessToken))
            // A money-moving call without a key is refused.
            var noKey = request
            noKey.idempotencyKey = ""
            let missing = await #expect(throws: RPCError.self) { try await h.ledger.postInvoice(noKey, options: LedgerHarness.bearer(p.provider)) }
            #expect(missing?.metadata["field"] == "idempotency_key")
        }
    }

    @Test("creating a budget honours its idempotency key: concurrent repeats make one budget; another request with the key is refused")
    func budgetIdempotency() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            var create = Wholecare_Ledger_V1_CreateBudgetRequest()
            create.personID = p.personID
            create.funderOrganisationID = p.council
            create.name = "Personal budget 2027/28"
            create.idempotencyKey = "budget-2027"
            let ledger = h.ledger, token = p.coordinator, request = create
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<6 { group.addTask { try await ledger.createBudget(request, options: LedgerHarness.bearer(token)).id } }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(ids.count == 1)
            var list = Wholecare_Ledger_V1_ListBudgetsRequest()
            list.personID = p.personID
            let budgets = try await h.ledger.listBudgets(list, options: LedgerHarness.bearer(p.coordinator)).budgets
            #expect(budgets.filter { $0.name == "Personal budget 2027/28" }.count == 1)
            var renamed = create
            renamed.name = "Something else"
            let reused = await #expect(throws: RPCError.self) { try await h.ledger.createBudget(renamed, options: LedgerHarness.bearer(p.coordinator)) }
            #expect(reused?.code == .alreadyExists)
            // Without a key, each call makes a budget (creating one moves no money).
            create.idempotencyKey = ""
            let first = try await h.ledger.createBudget(create, options: LedgerHarness.bearer(p.coordinator)).id
            let second = try await h.ledger.createBudget(create, options: LedgerHarness.bearer(p.coordinator)).id
            #expect(first != second && !ids.contains(first))
        }
    }

    @Test("a batch posts each invoice on its own: refusals do not stop the others, and replays return the original")
    func batch() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let earlier = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 1_000, key: "inv-0"),
                                                         options: LedgerHarness.bearer(p.provider))
            var batch = Wholecare_Ledger_V1_PostInvoiceBatchRequest()
            batch.invoices = [
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 1_000, key: "inv-0"),        // replay
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 40_000, key: "inv-1"),
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 70_000, key: "inv-2"),       // would overdraw
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 9_999, key: "inv-0b"),
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 0, key: "inv-3"),            // invalid
                LedgerHarness.invoice(budget: budget, provider: p.lonelyAgency, amount: 10, key: "inv-4"),     // not its organisation
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 2_000, key: "inv-1"),        // key twice in batch
            ]
            let response = try await h.ledger.postInvoiceBatch(batch, options: LedgerHarness.bearer(p.provider))
            let statuses = response.results.map { RPCError.Code(rawValue: Int($0.status)) }
            #expect(statuses == [.ok, .ok, .failedPrecondition, .ok, .invalidArgument, .permissionDenied, .invalidArgument])
            #expect(response.results[0].replayed)
            #expect(response.results[0].transaction.id == earlier.id)
            #expect(response.results[4].field == "amount_pence")
            #expect(response.posted == 3)
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            #expect(try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken)).availablePence == 100_000 - 1_000 - 40_000 - 9_999)
            // The refused invoice's key stored nothing: it can be posted later.
            var retry = batch
            retry.invoices = [LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 40_000, key: "inv-2")]
            #expect(try await h.ledger.postInvoiceBatch(retry, options: LedgerHarness.bearer(p.provider)).posted == 1)
            // Sent again, a batch is answered from its stored keys: the originals, and a
            // refusal for a key reused with another body; no money moves.
            var again = Wholecare_Ledger_V1_PostInvoiceBatchRequest()
            again.invoices = [
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 1_000, key: "inv-0"),
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 40_000, key: "inv-1"),
                LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 5, key: "inv-0b"),
            ]
            let second = try await h.ledger.postInvoiceBatch(again, options: LedgerHarness.bearer(p.provider))
            #expect(second.results.map { RPCError.Code(rawValue: Int($0.status)) } == [.ok, .ok, .alreadyExists])
            #expect(second.results[0].replayed && second.results[1].replayed)
            #expect(second.results[0].transaction.id == earlier.id)
            #expect(second.results[1].transaction.id == response.results[1].transaction.id)
            #expect(try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken)).availablePence
                    == 100_000 - 1_000 - 40_000 - 9_999 - 40_000)
        }
    }

    @Test("a large batch for many people, written on parallel connections, decides every budget's invoices in batch order")
    func batchAcrossPeopleKeepsEachBudgetsOrder() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let i = h.identity
            // People whose invoices go on different lanes (at least one on each).
            var budgets: [(person: String, budget: String)] = []
            var lanesUsed: Set<Int> = []
            var n = 0
            while budgets.count < 4 || (lanesUsed.count < 2 && n < 40) {
                n += 1
                let person = try await i.register("billed\(n)@example.org", name: "Billed \(n)")
                var assign = Wholecare_Identity_V1_AssignCareRelationshipRequest()
                assign.personID = person.account.id
                assign.professionalID = p.coordinatorID
                assign.role = .careCoordinator
                _ = try await i.api.assignCareRelationship(assign, options: IdentityHarness.bearer(p.admin))
                var consent = Wholecare_Identity_V1_GrantConsentRequest()
                consent.granteeOrganisationID = p.agency
                consent.categories = [.budget]
                _ = try await i.api.grantConsent(consent, options: IdentityHarness.bearer(person.accessToken))
                var create = Wholecare_Ledger_V1_CreateBudgetRequest()
                create.personID = person.account.id
                create.funderOrganisationID = p.council
                create.name = "Personal budget"
                let budget = try await h.ledger.createBudget(create, options: LedgerHarness.bearer(p.coordinator)).id
                _ = try await h.allocate(budget, 1_000_000, token: p.coordinator)
                budgets.append((person.account.id, budget))
                lanesUsed.insert(LedgerStore.lane(of: UUID(uuidString: person.account.id)!, lanes: h.store.batchLanes))
            }
            #expect(h.store.batchLanes == 2 && lanesUsed.count == 2)
            // 900 invoices, the people interleaved, amounts varying so that which invoice
            // fits depends on what came before it for the same budget.
            let amounts: [Int64] = [30_000, 45_000, 20_000, 9_000, 1_000, 3_000, 50_000, 700, 12_000]
            var batch = Wholecare_Ledger_V1_PostInvoiceBatchRequest()
            var expected: [RPCError.Code] = []
            var available = Dictionary(uniqueKeysWithValues: budgets.map { ($0.budget, Int64(1_000_000)) })
            for k in 0..<900 {
                let budget = budgets[(k * 7 + k / 5) % budgets.count].budget
                let amount = amounts[(k * 5 + k / 3) % amounts.count] / Int64(1 + k / 300)
                batch.invoices.append(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: amount, key: "run-\(k)"))
                if amount <= available[budget]! {
                    available[budget]! -= amount
                    expected.append(.ok)
                } else {
                    expected.append(.failedPrecondition)
                }
            }
            #expect(expected.filter { $0 == .ok }.count > 200 && expected.contains(.failedPrecondition))
            let response = try await h.ledger.postInvoiceBatch(batch, options: LedgerHarness.bearer(p.provider))
            #expect(response.results.map { RPCError.Code(rawValue: Int($0.status)) } == expected,
                    "each budget's invoices were decided in the batch's order")
            #expect(Int(response.posted) == expected.filter { $0 == .ok }.count)
            for (_, budget) in budgets {
                var get = Wholecare_Ledger_V1_GetBudgetRequest()
                get.budgetID = budget
                #expect(try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator)).availablePence == available[budget]!)
            }
            // Every posted invoice carries its own transaction, once.
            let ids = response.results.filter { $0.status == 0 }.map(\.transaction.id)
            #expect(Set(ids).count == ids.count)
        }
    }

    @Test("commitments reserve money; settling pays part and releases the rest; releasing returns it")
    func commitments() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            var commit = Wholecare_Ledger_V1_CommitRequest()
            commit.budgetID = budget
            commit.providerOrganisationID = p.agency
            commit.amountPence = 30_000
            commit.idempotencyKey = "c1"
            let first = try await h.ledger.commit(commit, options: LedgerHarness.bearer(p.provider))
            commit.idempotencyKey = "c2"
            commit.amountPence = 20_000
            let second = try await h.ledger.commit(commit, options: LedgerHarness.bearer(p.coordinator))
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            var b = try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(b.committedPence == 50_000)
            #expect(b.availablePence == 50_000)
            var settle = Wholecare_Ledger_V1_SettleCommitmentRequest()
            settle.commitmentID = first.id
            settle.amountPence = 25_000
            settle.serviceStart = "2026-11-03"
            settle.care.eligible = true
            settle.care.councilRatePence = 25_000
            settle.idempotencyKey = "s1"
            // Someone who may not settle it gets the same refusal whatever amount they try,
            // so the answer does not tell them the amount reserved.
            for (amount, caller) in [(25_000, p.financeElsewhere), (30_001, p.financeElsewhere), (30_001, p.stranger.accessToken)] {
                var probe = settle
                probe.amountPence = Int64(amount)
                probe.idempotencyKey = "probe-\(amount)"
                let refused = await #expect(throws: RPCError.self) {
                    try await h.ledger.settleCommitment(probe, options: LedgerHarness.bearer(caller))
                }
                #expect(refused?.code == .permissionDenied)
            }
            _ = try await h.ledger.settleCommitment(settle, options: LedgerHarness.bearer(p.provider))
            let again = await #expect(throws: RPCError.self) {
                var twice = settle
                twice.idempotencyKey = "s1-again"
                return try await h.ledger.settleCommitment(twice, options: LedgerHarness.bearer(p.provider))
            }
            #expect(again?.code == .failedPrecondition)
            var release = Wholecare_Ledger_V1_ReleaseCommitmentRequest()
            release.commitmentID = second.id
            release.idempotencyKey = "r1"
            _ = try await h.ledger.releaseCommitment(release, options: LedgerHarness.bearer(p.coordinator))
            b = try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(b.committedPence == 0)
            #expect(b.spentPence == 25_000)
            #expect(b.availablePence == 75_000)
            var list = Wholecare_Ledger_V1_ListCommitmentsRequest()
            list.budgetID = budget
            let statuses = try await h.ledger.listCommitments(list, options: LedgerHarness.bearer(p.person.accessToken)).commitments.map(\.status)
            #expect(Set(statuses) == ["settled", "released"])
        }
    }

    @Test("history is never edited: corrections are reversals, once, and the database refuses edits")
    func reversals() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let invoice = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 30_000, rate: 20_000),
                                                         options: LedgerHarness.bearer(p.provider))
            var reverse = Wholecare_Ledger_V1_ReverseRequest()
            reverse.transactionID = invoice.id
            reverse.reason = "Duplicate invoice"
            reverse.idempotencyKey = "rev-1"
            let byProvider = await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.provider)) }
            #expect(byProvider?.code == .permissionDenied)
            let reversal = try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance))
            #expect(reversal.reversesID == invoice.id)
            #expect(reversal.eligibleTowardCapPence == -20_000)
            // Idempotent replay of the same reversal; a second, different reversal is refused.
            #expect(try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance)).id == reversal.id)
            reverse.idempotencyKey = "rev-2"
            let twice = await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance)) }
            #expect(twice?.code == .failedPrecondition)
            reverse.transactionID = reversal.id
            reverse.idempotencyKey = "rev-3"
            await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance)) }
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            let b = try await h.ledger.getBudget(get, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(b.availablePence == 100_000)
            #expect(b.spentPence == 0)
            let edit = await #expect(throws: PostgresError.self) { try await h.db.query("UPDATE transactions SET amount = 1") }
            #expect(edit?.sqlState == "42501")
            let erase = await #expect(throws: PostgresError.self) { try await h.db.query("DELETE FROM postings") }
            #expect(erase?.sqlState == "42501")
            // An unbalanced transaction cannot be committed, even written by hand.
            let unbalanced = await #expect(throws: PostgresError.self) {
                try await h.db.withTransaction { s in
                    try await s.query("INSERT INTO postings (transaction_id, line, account_id, amount) VALUES (\(UUID(uuidString: invoice.id)!), 99, \(UUID(uuidString: budget)!), 1)")
                }
            }
            #expect(unbalanced?.sqlState == "23514")
            // Nor can balanced lines that sum to zero only by also adding lines elsewhere.
            let spread = await #expect(throws: PostgresError.self) {
                try await h.db.query("""
                    INSERT INTO postings (transaction_id, line, account_id, amount)
                    VALUES (\(UUID(uuidString: invoice.id)!), 97, \(UUID(uuidString: budget)!), 5),
                           (\(UUID(uuidString: reversal.id)!), 97, \(UUID(uuidString: budget)!), -5)
                    """)
            }
            #expect(spread?.sqlState == "23514")
            // References are checked by the database: lines need a real transaction and
            // real accounts, transactions a real budget; accounts and budgets stay.
            let account = UUID(uuidString: budget)!
            let missing = UUID()
            let orphan = await #expect(throws: PostgresError.self) {
                try await h.db.query("""
                    INSERT INTO postings (transaction_id, line, account_id, amount)
                    VALUES (\(missing), 1, \(account), 5), (\(missing), 2, \(account), -5)
                    """)
            }
            #expect(orphan?.sqlState == "23503", "lines of a transaction that does not exist")
            let transactionID = UUID()
            let nowhere = await #expect(throws: PostgresError.self) {
                try await h.db.query("""
                    WITH t AS (
                        INSERT INTO transactions (id, kind, budget_id, person_id, amount, idempotency_key, created_by)
                        VALUES (\(transactionID), 'allocation', \(account), \(UUID(uuidString: p.personID)!), 5, 'by-hand', 'test')
                        RETURNING id)
                    INSERT INTO postings (transaction_id, line, account_id, amount)
                    VALUES (\(transactionID), 1, \(account), 5), (\(transactionID), 2, \(UUID()), -5)
                    """)
            }
            #expect(nowhere?.sqlState == "23503", "a line naming an unknown account")
            // A transaction needs its lines, written by the same statement (a single line
            // cannot balance, as no line is zero).
            let linesBefore = try await h.db.query("SELECT count(*) AS n FROM postings").first!.decode("n", as: Int.self)
            let bare = await #expect(throws: PostgresError.self) {
                try await h.db.withTransaction { s in
                    try await s.query("""
                        INSERT INTO transactions (id, kind, budget_id, person_id, amount, idempotency_key, created_by)
                        VALUES (\(transactionID), 'allocation', \(account), \(UUID(uuidString: p.personID)!), 5, 'by-hand', 'test')
                        """)
                    try await s.query("""
                        INSERT INTO postings (transaction_id, line, account_id, amount)
                        VALUES (\(transactionID), 1, \(account), 5), (\(transactionID), 2, \(account), -5)
                        """)
                }
            }
            #expect(bare?.sqlState == "23514", "a transaction without lines")
            #expect(bare?.serverMessage?.contains("at least two postings") == true)
            #expect(try await h.db.query("SELECT count(*) AS n FROM postings").first!.decode("n", as: Int.self) == linesBefore)
            #expect(try await h.db.query("SELECT count(*) AS n FROM transactions WHERE id = \(transactionID)").first!.decode("n", as: Int.self) == 0)
            let noBudget = await #expect(throws: PostgresError.self) {
                try await h.db.query("""
                    INSERT INTO transactions (id, kind, budget_id, person_id, amount, idempotency_key, created_by)
                    VALUES (\(UUID()), 'allocation', \(UUID()), \(UUID(uuidString: p.personID)!), 5, 'by-hand-2', 'test')
                    """)
            }
            #expect(noBudget?.sqlState == "23503")
            for statement in ["DELETE FROM budgets", "DELETE FROM accounts", "UPDATE accounts SET id = gen_random_uuid()", "TRUNCATE accounts CASCADE"] {
                let refused = await #expect(throws: PostgresError.self) { try await h.db.query(PostgresQuery(unsafeSQL: statement)) }
                #expect(refused?.sqlState == "42501", "\(statement)")
            }
        }
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        let name: String, field: String
        let mutate: @Sendable (inout Wholecare_Ledger_V1_PostInvoiceRequest) -> Void
        var testDescription: String { name }
    }

    static let bad: [Bad] = [
        Bad(name: "zero amount", field: "amount_pence") { $0.amountPence = 0 },
        Bad(name: "negative amount", field: "amount_pence") { $0.amountPence = -500 },
        Bad(name: "amount near Int64.max", field: "amount_pence") { $0.amountPence = .max },
        Bad(name: "unknown budget", field: "budget_id") { $0.budgetID = UUID().uuidString },
        Bad(name: "budget id not a UUID", field: "budget_id") { $0.budgetID = "budget-1" },
        Bad(name: "no service date", field: "service_start") { $0.serviceStart = "" },
        Bad(name: "service end before start", field: "service_end") { $0.serviceEnd = "2026-10-01" },
        Bad(name: "daily living above the amount", field: "care.daily_living_pence") { $0.care.dailyLivingPence = $0.amountPence + 1 },
        Bad(name: "negative council rate", field: "care.council_rate_pence") { $0.care.councilRatePence = -1 },
        Bad(name: "missing invoice reference", field: "invoice_reference") { $0.invoiceReference = "" },
    ]

    @Test("bad input is refused with INVALID_ARGUMENT naming the field, and nothing is written", arguments: bad)
    func badInput(_ bad: Bad) async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            var request = LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 10_000)
            bad.mutate(&request)
            let before = try await h.transactionCount()
            let error = await #expect(throws: RPCError.self) { try await h.ledger.postInvoice(request, options: LedgerHarness.bearer(p.provider)) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.metadata["field"] == bad.field, "\(error?.message ?? "")")
            #expect(try await h.transactionCount() == before)
        }
    }

    @Test("authorization: who reads, allocates and invoices (docs/security.md)")
    func authorization() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            for (who, token, allowed) in [("person", p.person.accessToken, true), ("coordinator", p.coordinator, true),
                                          ("provider with consent", p.provider, true), ("carer without budget scope", p.carer.accessToken, false),
                                          ("stranger", p.stranger.accessToken, false), ("provider without consent", p.providerNoConsent, false),
                                          ("administrator", p.admin, false), ("finance of another council", p.financeElsewhere, false)] {
                do {
                    _ = try await h.ledger.getBudget(get, options: LedgerHarness.bearer(token))
                    #expect(allowed, "\(who) read the budget")
                } catch let error as RPCError {
                    #expect(!allowed && error.code == .permissionDenied, "\(who): \(error)")
                }
            }
            for (who, token, allowed) in [("coordinator", p.coordinator, true), ("funder's finance", p.finance, true),
                                          ("person", p.person.accessToken, false), ("provider", p.provider, false),
                                          ("other council's finance", p.financeElsewhere, false)] {
                do {
                    _ = try await h.allocate(budget, 100, token: token)
                    #expect(allowed, "\(who) allocated")
                } catch let error as RPCError {
                    #expect(!allowed && error.code == .permissionDenied, "\(who): \(error)")
                }
            }
            // A provider invoices only as its own organisation and only with consent.
            let asOther = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.lonelyAgency, amount: 100),
                                               options: LedgerHarness.bearer(p.provider))
            }
            #expect(asOther?.code == .permissionDenied)
            let noConsent = await #expect(throws: RPCError.self) {
                try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.lonelyAgency, amount: 100),
                                               options: LedgerHarness.bearer(p.providerNoConsent))
            }
            #expect(noConsent?.code == .permissionDenied)
        }
    }

    @Test("the care account meters invoices toward the cap, is verified against the journal, and statements carry the fields")
    func careAccountAndStatements() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 10_000_000)
            // A care-home invoice: £1,200 of which £230 daily living; council rate £1,000.
            _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 120_000, date: "2026-10-05",
                                                                    rate: 100_000, dailyLiving: 23_000), options: LedgerHarness.bearer(p.provider))
            // Not eligible: does not count.
            _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 5_000, date: "2026-10-06",
                                                                    eligible: false), options: LedgerHarness.bearer(p.provider))
            var request = Wholecare_Ledger_V1_GetCareAccountRequest()
            request.personID = p.personID
            let account = try await h.ledger.getCareAccount(request, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(account.capPence == 7_400_000)
            #expect(account.accruedPence == 77_000)
            #expect(account.remainingPence == 7_400_000 - 77_000)
            #expect(account.dailyLivingExcludedPence == 23_000)
            #expect(account.aboveCouncilRatePence == 20_000)
            #expect(account.verified)
            #expect(account.cumulativeByMonth["2026-10"] == 77_000)

            var issue = Wholecare_Ledger_V1_IssueCareStatementRequest()
            issue.personID = p.personID
            let first = try await h.ledger.issueCareStatement(issue, options: LedgerHarness.bearer(p.coordinator))
            #expect(first.accruedPence == 77_000)
            #expect(first.capPence == 7_400_000)
            #expect(first.dailyLivingExcludedPence == 23_000)
            #expect(first.kind == "on_demand")
            var list = Wholecare_Ledger_V1_ListCareStatementsRequest()
            list.personID = p.personID
            #expect(try await h.ledger.listCareStatements(list, options: LedgerHarness.bearer(p.person.accessToken)).statements.count == 1)

            // A lower cap from a date only applies to care from that date.
            var policy = Wholecare_Ledger_V1_AddCapPolicyRequest()
            policy.effectiveFrom = "2026-11-01"
            policy.capPence = 8_600_000
            policy.name = "£86,000 cap"
            let refused = await #expect(throws: RPCError.self) { try await h.ledger.addCapPolicy(policy, options: LedgerHarness.bearer(p.coordinator)) }
            #expect(refused?.code == .permissionDenied)
            _ = try await h.ledger.addCapPolicy(policy, options: LedgerHarness.bearer(p.admin))
            #expect(try await h.ledger.getCareAccount(request, options: LedgerHarness.bearer(p.person.accessToken)).capPence == 8_600_000)

            // Tampering with the stored running totals is detected.
            try await h.db.query("UPDATE care_accounts SET eligible_total = eligible_total + 1")
            #expect(try await h.ledger.getCareAccount(request, options: LedgerHarness.bearer(p.person.accessToken)).verified == false)
            try await h.db.query("UPDATE care_accounts SET eligible_total = eligible_total - 1")
        }
    }

    @Test("the statement exports as CSV with running balances and a spend series; cells cannot smuggle formulas")
    func csvExport() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            var invoice = LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 30_000)
            invoice.memo = "=HYPERLINK(\"http://evil\"), home care, \"week 1\""
            _ = try await h.ledger.postInvoice(invoice, options: LedgerHarness.bearer(p.provider))
            var request = Wholecare_Ledger_V1_ExportStatementRequest()
            request.budgetID = budget
            let export = try await h.ledger.exportStatement(request, options: LedgerHarness.bearer(p.person.accessToken))
            let lines = export.csv.split(separator: "\r\n")
            #expect(lines.count == 3)
            #expect(lines[0].hasPrefix("date,kind,description"))
            #expect(lines[1].contains(",allocation,Allocation,"))
            #expect(lines[2].contains("\"'=HYPERLINK(\"\"http://evil\"\"), home care, \"\"week 1\"\"\""))
            #expect(lines[2].hasSuffix(",-30000,70000,30000,30000"))
            #expect(export.series.last?.availablePence == 70_000)
            #expect(export.series.last?.spentCumulativePence == 30_000)
        }
    }
}
