import Contracts
import Foundation
import RPC

/// Translation from stored rows to the ledger contract.
enum LedgerProto {
    static func budget(_ b: LedgerStore.BudgetRow) -> Wholecare_Ledger_V1_Budget {
        var out = Wholecare_Ledger_V1_Budget()
        out.id = b.id.lowercasedString
        out.personID = b.personID.lowercasedString
        out.funderOrganisationID = b.funderOrganisationID.lowercasedString
        out.name = b.name
        out.currency = b.currency
        out.overdraftLimitPence = b.overdraftLimit
        out.allocatedPence = b.allocated
        out.spentPence = b.spent
        out.committedPence = b.committed
        out.availablePence = b.available
        out.transferredNetPence = b.transferredNet
        out.createdAt = Timestamp.format(b.createdAt)
        out.periodStart = b.periodStart ?? ""
        out.periodEnd = b.periodEnd ?? ""
        return out
    }

    static func transaction(_ t: LedgerStore.TransactionRow) -> Wholecare_Ledger_V1_Transaction {
        var out = Wholecare_Ledger_V1_Transaction()
        out.id = t.id.lowercasedString
        out.kind = t.kind
        out.budgetID = t.budgetID.lowercasedString
        out.postings = t.postings.map { p in
            var posting = Wholecare_Ledger_V1_Posting()
            posting.accountID = p.account.lowercasedString
            posting.accountKind = p.kind
            posting.accountName = p.name
            posting.amountPence = p.amount
            return posting
        }
        out.memo = t.memo
        out.invoiceReference = t.invoiceReference
        out.providerOrganisationID = t.providerOrganisationID?.lowercasedString ?? ""
        out.serviceStart = t.serviceStart ?? ""
        out.serviceEnd = t.serviceEnd ?? ""
        var care = Wholecare_Ledger_V1_CareFacts()
        care.eligible = t.eligible
        care.councilRatePence = t.councilRate
        care.dailyLivingPence = t.dailyLiving
        out.care = care
        out.amountPence = t.amount
        out.reversesID = t.reversesID?.lowercasedString ?? ""
        out.reversedByID = t.reversedByID?.lowercasedString ?? ""
        out.createdAt = Timestamp.format(t.createdAt)
        out.createdBy = t.createdBy
        out.eligibleTowardCapPence = t.towardCap
        out.idempotencyKey = t.idempotencyKey
        return out
    }

    /// A transaction as written (same shape as one read back from the store).
    static func transaction(_ t: NewTransaction, plan: LedgerRules.Plan, createdAt: Date) -> Wholecare_Ledger_V1_Transaction {
        transaction(t, plan: plan, createdAt: Timestamp.format(createdAt))
    }

    /// The same, with the time already formatted (a batch's invoices share it).
    static func transaction(_ t: NewTransaction, plan: LedgerRules.Plan, createdAt: String) -> Wholecare_Ledger_V1_Transaction {
        var out = Wholecare_Ledger_V1_Transaction()
        out.id = t.id.lowercasedString
        out.kind = t.kind
        out.budgetID = t.budget.id.lowercasedString
        out.postings = plan.postings.map { p in
            var posting = Wholecare_Ledger_V1_Posting()
            posting.accountID = p.account.lowercasedString
            posting.amountPence = p.amount
            switch p.account {
            case t.budget.accounts.budget:
                posting.accountKind = "budget"
                posting.accountName = t.budget.name
            case t.budget.accounts.commitments:
                posting.accountKind = "commitments"
                posting.accountName = "Committed: " + t.budget.name
            case t.budget.accounts.funder:
                posting.accountKind = "funder"
                posting.accountName = "funder " + t.budget.funderOrganisationID.lowercasedString
            case LedgerStore.contributionAccount:
                posting.accountKind = "contribution"
                posting.accountName = "Contributions from people"
            default:
                posting.accountKind = "provider"
                posting.accountName = "provider " + (t.providerOrganisationID?.lowercasedString ?? "")
            }
            return posting
        }
        out.memo = t.memo
        out.invoiceReference = t.invoiceReference
        out.providerOrganisationID = t.providerOrganisationID?.lowercasedString ?? ""
        out.serviceStart = t.serviceStart?.description ?? ""
        out.serviceEnd = t.serviceEnd?.description ?? ""
        var care = Wholecare_Ledger_V1_CareFacts()
        care.eligible = t.eligible
        care.councilRatePence = t.councilRate
        care.dailyLivingPence = t.dailyLiving
        out.care = care
        out.amountPence = t.amount
        out.reversesID = t.reversesID?.lowercasedString ?? ""
        out.createdAt = createdAt
        out.createdBy = t.createdBy
        out.eligibleTowardCapPence = t.care.towardCap
        out.idempotencyKey = t.idempotencyKey
        return out
    }

    static func commitment(_ c: LedgerStore.CommitmentRow) -> Wholecare_Ledger_V1_Commitment {
        var out = Wholecare_Ledger_V1_Commitment()
        out.id = c.id.lowercasedString
        out.budgetID = c.budgetID.lowercasedString
        out.providerOrganisationID = c.providerOrganisationID.lowercasedString
        out.amountPence = c.amount
        out.settledPence = c.settled
        out.status = c.status
        out.memo = c.memo
        out.createdAt = Timestamp.format(c.createdAt)
        out.transactionID = c.transactionID.lowercasedString
        return out
    }

    static func policy(_ p: (id: UUID, from: CalendarDate, cap: Int64, name: String)) -> Wholecare_Ledger_V1_CapPolicy {
        var out = Wholecare_Ledger_V1_CapPolicy()
        out.id = p.id.lowercasedString
        out.effectiveFrom = p.from.description
        out.capPence = p.cap
        out.name = p.name
        return out
    }
}

/// Requests without their idempotency key, for the request hash.
extension Wholecare_Ledger_V1_CreateBudgetRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_AllocateRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_TopUpRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_PostInvoiceRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_RefundRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_TransferRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_CommitRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_SettleCommitmentRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_ReleaseCommitmentRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_ReverseRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
