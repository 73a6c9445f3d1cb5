import Contracts
import Foundation
import LedgerService
import Postgres
import RPC
import ServiceTestSupport
import TestSupport
import Testing

/// Single invoices that arrive while another is being written are committed together
/// (`InvoiceCoalescer`); each must still behave exactly as if it had been posted alone.
/// The harness checks the double-entry and budget invariants after each test.
@Suite("Budget ledger: invoices committed together")
struct GroupCommitTests {
    @Test("concurrent invoices against one budget: exactly those that fit are posted, the rest refused, nothing overspent")
    func concurrentInvoicesShareCommits() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 100_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency
            // 40 invoices of £30 against £1,000: 33 fit, 7 must be refused.
            let results = try await withThrowingTaskGroup(of: String?.self) { group in
                for n in 0..<40 {
                    group.addTask {
                        let request = LedgerHarness.invoice(budget: budget, provider: agency, amount: 3_000, key: "together-\(n)", rate: 2_500)
                        do {
                            return try await ledger.postInvoice(request, options: LedgerHarness.bearer(token)).id
                        } catch let error as RPCError where error.code == .failedPrecondition {
                            return nil
                        }
                    }
                }
                return try await group.reduce(into: [String?]()) { $0.append($1) }
            }
            let posted = results.compactMap { $0 }
            #expect(posted.count == 33)
            #expect(Set(posted).count == 33, "every posted invoice has its own transaction")
            #expect(try await h.transactionCount() == 34)  // the allocation and 33 invoices
            var get = Wholecare_Ledger_V1_GetBudgetRequest()
            get.budgetID = budget
            let b = try await ledger.getBudget(get, options: LedgerHarness.bearer(p.coordinator))
            #expect(b.availablePence == 1_000)
            #expect(b.spentPence == 99_000)
            // The care account counted each posted invoice at the council rate, once.
            let journal = try await h.store.careJournal(person: UUID(uuidString: p.personID)!)
            #expect(journal.stored.eligible == 33 * 2_500)
            #expect(journal.lines.reduce(0) { $0 + $1.towardCap } == 33 * 2_500)
            // Every posted invoice reads back as written.
            for id in posted {
                let t = try #require(try await h.store.transaction(UUID(uuidString: id)!))
                #expect(t.amount == 3_000 && t.kind == "purchase" && t.postings.count == 2)
            }
        }
    }

    @Test("a key sent twice at the same time while others are in flight makes one transaction; both callers get it")
    func repeatedKeysAmongConcurrentInvoices() async throws {
        try await LedgerHarness.with { h in
            let p = try await h.people()
            let budget = try await h.budget(for: p, allocate: 10_000_000)
            let ledger = h.ledger, token = p.provider, agency = p.agency
            let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for n in 0..<30 {
                    let key = "pair-\(n / 2)"
                    group.addTask {
                        let request = LedgerHarness.invoice(budget: budget, provider: agency, amount: Int64(1_000 + n / 2), key: key)
                        return (n / 2, try await ledger.postInvoice(request, options: LedgerHarness.bearer(token)).id)
                    }
                }
                return try await group.reduce(into: [Int: Set<String>]()) { $0[$1.0, default: []].insert($1.1) }
            }
            #expect(answers.count == 15)
            #expect(answers.values.allSatisfy { $0.count == 1 }, "both callers of a key got the same transaction")
            #expect(try await h.transactionCount() == 16)
            // While others are in flight, a key reused with another body is still refused.
            let reused = await #expect(throws: RPCError.self) {
                async let other = ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 777, key: "fresh-key"),
                                                     options: LedgerHarness.bearer(token))
                _ = try await ledger.postInvoice(LedgerHarness.invoice(budget: budget, provider: agency, amount: 999, key: "pair-0"),
                                                 options: LedgerHarness.bearer(token))
                _ = try await other
            }
            #expect(reused?.code == .alreadyExists)
        }
    }
}
