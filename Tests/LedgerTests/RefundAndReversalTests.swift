import Contracts
import Foundation
import LedgerService
import RPC
import ServiceTestSupport
import TestSupport
import Testing

/// Money can only go back where it came from: refunds and reversals never return more
/// than was paid, and a correction needs rights over every budget it touches.
@Suite("Budget ledger: refunds and reversals")
struct RefundAndReversalTests {
    static func refund(_ budget: String, provider: String, amount: Int64, of purchase: String? = nil,
                       key: String = UUID().uuidString) -> Wholecare_Ledger_V1_RefundRequest {
        var request = Wholecare_Ledger_V1_RefundRequest()
        request.budgetID = budget
        request.providerOrganisationID = provider
        request.amountPence = amount
        request.refundsTransactionID = purchase ?? ""
        request.idempotencyKey = key
        return request
    }

    @Test("a purchase is refunded at most once over; a provider never paid refunds nothing; a partly refunded purchase cannot be reversed")
    func refundsStayWithinWhatWasPaid() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let provider = LedgerHarness.bearer(p.provider)
            let purchase = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 30_000, rate: 20_000),
                                                          options: provider)
            _ = try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 20_000, of: purchase.id), options: provider)
            let before = try await h.transactionCount()
            let meterBefore = try await h.store.careJournal(person: UUID(uuidString: p.personID)!).stored.eligible

            // £150 more of a £300 purchase already refunded £200: refused, nothing written.
            let over = await #expect(throws: RPCError.self) {
                try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 15_000, of: purchase.id), options: provider)
            }
            #expect(over?.code == .failedPrecondition)
            #expect(over?.message.contains("more than it paid") == true)
            #expect(try await h.transactionCount() == before)
            #expect(try await h.store.careJournal(person: UUID(uuidString: p.personID)!).stored.eligible == meterBefore)
            // The last £100 is fine; then not a penny more, linked or not.
            _ = try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 10_000, of: purchase.id), options: provider)
            let unlinked = await #expect(throws: RPCError.self) {
                try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 1), options: provider)
            }
            #expect(unlinked?.code == .failedPrecondition)

            // The coordinator may record refunds from any provider, but not from one this
            // budget never paid.
            let neverPaid = await #expect(throws: RPCError.self) {
                try await h.ledger.refund(Self.refund(budget, provider: p.lonelyAgency, amount: 500), options: LedgerHarness.bearer(p.coordinator))
            }
            #expect(neverPaid?.code == .failedPrecondition)

            // A purchase partly refunded: reversing it would return the refund twice.
            let second = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 10_000), options: provider)
            _ = try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 4_000, of: second.id), options: provider)
            var reverse = LedgerHarness.reversal(of: second.id, reason: "Posted twice", key: "rev-second")
            let reversal = await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance)) }
            #expect(reversal?.code == .failedPrecondition)
            // A reversed purchase cannot be refunded.
            let third = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 5_000), options: provider)
            reverse.transactionID = third.id
            reverse.idempotencyKey = "rev-third"
            _ = try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance))
            let ofReversed = await #expect(throws: RPCError.self) {
                try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 1_000, of: third.id), options: provider)
            }
            #expect(ofReversed?.code == .failedPrecondition)

            // A refund linked to one purchase may not exceed it, even while other purchases
            // from the same provider would cover it.
            let fourth = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 20_000), options: provider)
            _ = try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 10_000, of: fourth.id), options: provider)
            let beyondPurchase = await #expect(throws: RPCError.self) {
                try await h.ledger.refund(Self.refund(budget, provider: p.agency, amount: 15_000, of: fourth.id), options: provider)
            }
            #expect(beyondPurchase?.code == .failedPrecondition)

            // The budget: £1,000 allocated; £300 + £100 + £50 + £200 bought; £300 + £40 +
            // £100 refunded; £50 reversed.
            let b = try await h.read(budget: budget, token: p.coordinator)
            #expect(b.availablePence == 100_000 - 30_000 - 10_000 - 5_000 - 20_000 + 30_000 + 4_000 + 10_000 + 5_000)
            #expect(b.spentPence == 16_000)
        }
    }

    @Test("a refunded purchase cannot be reversed even while other payments to the provider would cover it; once its refund is reversed, it can")
    func reversingARefundedPurchase() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let provider = LedgerHarness.bearer(p.provider)
            let first = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 10_000), options: provider)
            _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 10_000), options: provider)
            let refund = try await h.ledger.refund(RefundAndReversalTests.refund(budget, provider: p.agency, amount: 10_000, of: first.id),
                                                   options: provider)
            var reverse = LedgerHarness.reversal(of: first.id, reason: "Posted in error", key: "rev-first")
            let refused = await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance)) }
            #expect(refused?.code == .failedPrecondition)
            #expect(refused?.message.contains("reverse them first") == true)
            #expect(try await h.read(budget: budget, token: p.coordinator).availablePence == 90_000)
            // Undo the refund first; then the purchase itself can be reversed.
            let undoRefund = LedgerHarness.reversal(of: refund.id, reason: "Refund recorded in error", key: "rev-refund")
            _ = try await h.ledger.reverse(undoRefund, options: LedgerHarness.bearer(p.finance))
            reverse.idempotencyKey = "rev-first-again"
            _ = try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.finance))
            let b = try await h.read(budget: budget, token: p.coordinator)
            #expect(b.availablePence == 90_000)
            #expect(b.spentPence == 10_000)
        }
    }

    @Test("refunds of one purchase sent at once: exactly those that fit it are posted")
    func concurrentRefunds() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency
            let purchase = try await ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 30_000),
                                                        options: LedgerHarness.bearer(token))
            let posted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for n in 0..<8 {
                    group.addTask {
                        do {
                            _ = try await ledger.refund(Self.refund(budget, provider: agency, amount: 10_000, of: purchase.id, key: "r-\(n)"),
                                                        options: LedgerHarness.bearer(token))
                            return true
                        } catch let error as RPCError where error.code == .failedPrecondition {
                            return false
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(posted == 3)
            let b = try await h.read(budget: budget, token: p.coordinator)
            #expect(b.availablePence == 100_000)
            #expect(b.spentPence == 0)
        }
    }

    @Test("reversing a transfer needs rights over both budgets it moved money between")
    func reversalNeedsEveryBudget() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let ours = try await h.budget(for: p, allocate: 50_000)
            var create = Wholecare_Ledger_V1_CreateBudgetRequest()
            create.personID = p.personID
            create.funderOrganisationID = p.elsewhere
            create.name = "Southshire budget"
            let theirs = try await h.ledger.createBudget(create, options: LedgerHarness.bearer(p.coordinator)).id
            var transfer = Wholecare_Ledger_V1_TransferRequest()
            transfer.fromBudgetID = ours
            transfer.toBudgetID = theirs
            transfer.amountPence = 20_000
            transfer.idempotencyKey = "move"
            let moved = try await h.ledger.transfer(transfer, options: LedgerHarness.bearer(p.coordinator))
            let before = try await h.transactionCount()
            let reverse = LedgerHarness.reversal(of: moved.id, reason: "Wrong budget", key: "undo")
            // Northshire's finance staff may correct Northshire's budget, not take money
            // out of Southshire's; and the other way round.
            for token in [p.finance, p.financeElsewhere] {
                let denied = await #expect(throws: RPCError.self) { try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(token)) }
                #expect(denied?.code == .permissionDenied)
            }
            #expect(try await h.transactionCount() == before)
            // The care coordinator, who may allocate both, may.
            _ = try await h.ledger.reverse(reverse, options: LedgerHarness.bearer(p.coordinator))
            #expect(try await h.read(budget: theirs, token: p.coordinator).availablePence == 0)
            #expect(try await h.read(budget: ours, token: p.coordinator).availablePence == 50_000)
        }
    }

    @Test("an on-demand care statement needs write budget; the person may, a provider system with budget consent may not")
    func issuingStatements() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 50_000)
            _ = try await h.ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: p.agency, amount: 10_000),
                                               options: LedgerHarness.bearer(p.provider))
            var issue = Wholecare_Ledger_V1_IssueCareStatementRequest()
            issue.personID = p.personID
            let denied = await #expect(throws: RPCError.self) {
                try await h.ledger.issueCareStatement(issue, options: LedgerHarness.bearer(p.provider))
            }
            #expect(denied?.code == .permissionDenied)
            let mine = try await h.ledger.issueCareStatement(issue, options: LedgerHarness.bearer(p.person.accessToken))
            #expect(mine.kind == "on_demand")
            // An on-demand statement does not stand in for the annual one.
            let due = try await h.store.peopleDueAnnualStatement()
            #expect(due.contains(UUID(uuidString: p.personID)!))
        }
    }
}
