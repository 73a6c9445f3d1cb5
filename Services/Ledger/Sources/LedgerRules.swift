import Foundation
import RPC

/// A posting to make: an account and a signed amount (+ into it, − out of it).
public struct PlannedPosting: Sendable, Equatable {
    public var account: UUID
    public var amount: Int64
}

/// Changes to a budget's cached aggregates that a transaction makes.
public struct BudgetDelta: Sendable, Equatable {
    public var available: Int64 = 0
    public var allocated: Int64 = 0
    public var spent: Int64 = 0
    public var committed: Int64 = 0
    public var transferredNet: Int64 = 0

    public var negated: BudgetDelta {
        BudgetDelta(available: -available, allocated: -allocated, spent: -spent, committed: -committed, transferredNet: -transferredNet)
    }
}

/// The accounts a budget's transactions touch.
public struct BudgetAccounts: Sendable, Equatable {
    public var budget: UUID
    public var funder: UUID
    public var commitments: UUID
}

/// How each kind of transaction moves money (no I/O). Every plan's postings sum to zero.
public enum LedgerRules {
    /// The largest single amount accepted: £100 million, far beyond any care invoice,
    /// and far from Int64 overflow when summed.
    public static let maximumAmount: Int64 = 10_000_000_000

    public static func amount(_ value: Int64, field: String = "amount_pence") throws -> Int64 {
        guard value > 0 else { throw RPCError.invalidArgument(field: field, "must be a positive number of pence") }
        guard value <= maximumAmount else { throw RPCError.invalidArgument(field: field, "must be at most \(maximumAmount) pence") }
        return value
    }

    public struct Plan: Sendable, Equatable {
        public var postings: [PlannedPosting]
        public var deltas: [UUID: BudgetDelta]
        /// Budgets whose available balance must stay within the overdraft.
        public var checkFunds: Set<UUID>
    }

    public static func allocation(_ a: BudgetAccounts, amount: Int64) -> Plan {
        Plan(postings: [.init(account: a.funder, amount: -amount), .init(account: a.budget, amount: amount)],
             deltas: [a.budget: BudgetDelta(available: amount, allocated: amount)], checkFunds: [])
    }

    public static func topUp(_ a: BudgetAccounts, contribution: UUID, amount: Int64) -> Plan {
        Plan(postings: [.init(account: contribution, amount: -amount), .init(account: a.budget, amount: amount)],
             deltas: [a.budget: BudgetDelta(available: amount, allocated: amount)], checkFunds: [])
    }

    public static func purchase(_ a: BudgetAccounts, provider: UUID, amount: Int64) -> Plan {
        Plan(postings: [.init(account: a.budget, amount: -amount), .init(account: provider, amount: amount)],
             deltas: [a.budget: BudgetDelta(available: -amount, spent: amount)], checkFunds: [a.budget])
    }

    public static func refund(_ a: BudgetAccounts, provider: UUID, amount: Int64) -> Plan {
        Plan(postings: [.init(account: provider, amount: -amount), .init(account: a.budget, amount: amount)],
             deltas: [a.budget: BudgetDelta(available: amount, spent: -amount)], checkFunds: [])
    }

    public static func transfer(from: BudgetAccounts, to: BudgetAccounts, amount: Int64) -> Plan {
        Plan(postings: [.init(account: from.budget, amount: -amount), .init(account: to.budget, amount: amount)],
             deltas: [from.budget: BudgetDelta(available: -amount, transferredNet: -amount),
                      to.budget: BudgetDelta(available: amount, transferredNet: amount)],
             checkFunds: [from.budget])
    }

    public static func commitment(_ a: BudgetAccounts, amount: Int64) -> Plan {
        Plan(postings: [.init(account: a.budget, amount: -amount), .init(account: a.commitments, amount: amount)],
             deltas: [a.budget: BudgetDelta(available: -amount, committed: amount)], checkFunds: [a.budget])
    }

    /// Pays `paid` of an open commitment of `open` pence; the rest goes back to the budget.
    public static func settlement(_ a: BudgetAccounts, provider: UUID, open: Int64, paid: Int64) -> Plan {
        var postings: [PlannedPosting] = [.init(account: a.commitments, amount: -open), .init(account: provider, amount: paid)]
        if open > paid { postings.append(.init(account: a.budget, amount: open - paid)) }
        return Plan(postings: postings,
                    deltas: [a.budget: BudgetDelta(available: open - paid, spent: paid, committed: -open)], checkFunds: [])
    }

    public static func release(_ a: BudgetAccounts, open: Int64) -> Plan {
        Plan(postings: [.init(account: a.commitments, amount: -open), .init(account: a.budget, amount: open)],
             deltas: [a.budget: BudgetDelta(available: open, committed: -open)], checkFunds: [])
    }

    /// The exact opposite of an earlier transaction. It must not take a budget's
    /// available money below its overdraft (reversing an allocation already spent).
    public static func reversal(of postings: [PlannedPosting], deltas: [UUID: BudgetDelta]) -> Plan {
        let negated = deltas.mapValues(\.negated)
        return Plan(postings: postings.map { PlannedPosting(account: $0.account, amount: -$0.amount) }, deltas: negated,
                    checkFunds: Set(negated.filter { $0.value.available < 0 }.keys))
    }

    /// Recovers the budget deltas of a stored transaction from its kind and postings (for
    /// reversals).
    public static func deltas(kind: String, postings: [PlannedPosting], budgets: [UUID: BudgetAccounts]) -> [UUID: BudgetDelta] {
        var out: [UUID: BudgetDelta] = [:]
        for (budgetID, accounts) in budgets {
            var d = BudgetDelta()
            let intoBudget = postings.filter { $0.account == accounts.budget }.reduce(0) { $0 + $1.amount }
            let intoCommitments = postings.filter { $0.account == accounts.commitments }.reduce(0) { $0 + $1.amount }
            d.available = intoBudget
            d.committed = intoCommitments
            switch kind {
            case "allocation", "top_up": d.allocated = intoBudget
            case "purchase", "refund": d.spent = -intoBudget
            case "transfer": d.transferredNet = intoBudget
            case "settlement": d.spent = -(intoBudget + intoCommitments)
            default: break
            }
            out[budgetID] = d
        }
        return out
    }

    /// Checks the double-entry invariant of a plan.
    public static func isBalanced(_ plan: Plan) -> Bool {
        plan.postings.count >= 2 && plan.postings.reduce(Int64(0)) { $0 + $1.amount } == 0
    }
}
