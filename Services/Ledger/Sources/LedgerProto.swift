import Contracts
import Foundation
import RPC

/// Translation from stored rows to the ledger contract.
enum LedgerProto {
    static func budget(_ b: LedgerStore.BudgetRow) -> Wholecare_Ledger_V1_Budget {
        var out = Wholecare_Ledger_V1_Budget()
        out.id = b.id.uuidString.lowercased()
        out.personID = b.personID.uuidString.lowercased()
        out.funderOrganisationID = b.funderOrganisationID.uuidString.lowercased()
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
        out.id = t.id.uuidString.lowercased()
        out.kind = t.kind
        out.budgetID = t.budgetID.uuidString.lowercased()
        out.postings = t.postings.map { p in
            var posting = Wholecare_Ledger_V1_Posting()
            posting.accountID = p.account.uuidString.lowercased()
            posting.accountKind = p.kind
            posting.accountName = p.name
            posting.amountPence = p.amount
            return posting
        }
        out.memo = t.memo
        out.invoiceReference = t.invoiceReference
        out.providerOrganisationID = t.providerOrganisationID?.uuidString.lowercased() ?? ""
        out.serviceStart = t.serviceStart ?? ""
        out.serviceEnd = t.serviceEnd ?? ""
        var care = Wholecare_Ledger_V1_CareFacts()
        care.eligible = t.eligible
        care.councilRatePence = t.councilRate
        care.dailyLivingPence = t.dailyLiving
        out.care = care
        out.amountPence = t.amount
        out.reversesID = t.reversesID?.uuidString.lowercased() ?? ""
        out.reversedByID = t.reversedByID?.uuidString.lowercased() ?? ""
        out.createdAt = Timestamp.format(t.createdAt)
        out.createdBy = t.createdBy
        out.eligibleTowardCapPence = t.towardCap
        out.idempotencyKey = t.idempotencyKey
        return out
    }

    static func commitment(_ c: LedgerStore.CommitmentRow) -> Wholecare_Ledger_V1_Commitment {
        var out = Wholecare_Ledger_V1_Commitment()
        out.id = c.id.uuidString.lowercased()
        out.budgetID = c.budgetID.uuidString.lowercased()
        out.providerOrganisationID = c.providerOrganisationID.uuidString.lowercased()
        out.amountPence = c.amount
        out.settledPence = c.settled
        out.status = c.status
        out.memo = c.memo
        out.createdAt = Timestamp.format(c.createdAt)
        out.transactionID = c.transactionID.uuidString.lowercased()
        return out
    }

    static func policy(_ p: (id: UUID, from: CalendarDate, cap: Int64, name: String)) -> Wholecare_Ledger_V1_CapPolicy {
        var out = Wholecare_Ledger_V1_CapPolicy()
        out.id = p.id.uuidString.lowercased()
        out.effectiveFrom = p.from.description
        out.capPence = p.cap
        out.name = p.name
        return out
    }
}

/// Requests without their idempotency key, for the request hash.
extension Wholecare_Ledger_V1_AllocateRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_TopUpRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_PostInvoiceRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_RefundRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_TransferRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_CommitRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_SettleCommitmentRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_ReleaseCommitmentRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
extension Wholecare_Ledger_V1_ReverseRequest { var withoutKey: Self { var c = self; c.idempotencyKey = ""; return c } }
