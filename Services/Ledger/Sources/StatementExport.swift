import Foundation
import RPC

/// A budget statement as CSV, and the series for a spend-against-time chart. No I/O.
public enum StatementExport {
    public struct Point: Sendable, Equatable {
        public var date: CalendarDate
        public var spent: Int64
        public var available: Int64
    }

    /// `transactions` in journal order from the start (for running balances); rows before
    /// `from` are summarised in an opening-balance line.
    public static func build(budget: BudgetInfo, transactions: [LedgerStore.TransactionRow], from: CalendarDate?) -> (csv: String, series: [Point]) {
        var lines = ["date,kind,description,invoice_reference,service_start,service_end,amount_pence,available_after_pence,spent_to_date_pence,counts_toward_cap_pence"]
        var available: Int64 = 0
        var spent: Int64 = 0
        var series: [Point] = []
        var openingWritten = from == nil
        for t in transactions {
            let intoBudget = t.postings.filter { $0.account == budget.accounts.budget }.reduce(0) { $0 + $1.amount }
            let toProviders = t.postings.filter { $0.kind == "provider" }.reduce(0) { $0 + $1.amount }
            available += intoBudget
            spent += toProviders
            let day = CalendarDate(t.createdAt)
            if let from, day < from { continue }
            if !openingWritten {
                lines.append("\(from!.description),opening_balance,Balance brought forward,,,,0,\(available - intoBudget),\(spent - toProviders),0")
                openingWritten = true
            }
            let description = t.memo.isEmpty ? describe(t.kind) : t.memo
            lines.append([day.description, t.kind, csvField(description), csvField(t.invoiceReference), t.serviceStart ?? "", t.serviceEnd ?? "",
                          String(intoBudget), String(available), String(spent), String(t.towardCap)].joined(separator: ","))
            if let last = series.last, last.date == day {
                series[series.count - 1] = Point(date: day, spent: spent, available: available)
            } else {
                series.append(Point(date: day, spent: spent, available: available))
            }
        }
        return (lines.joined(separator: "\r\n") + "\r\n", series)
    }

    static func describe(_ kind: String) -> String {
        switch kind {
        case "allocation": return "Allocation"
        case "top_up": return "Top-up"
        case "purchase": return "Care purchased"
        case "refund": return "Refund"
        case "transfer": return "Transfer"
        case "commitment": return "Money set aside for booked care"
        case "settlement": return "Booked care paid"
        case "release": return "Money set aside returned"
        case "reversal": return "Correction"
        default: return kind
        }
    }

    /// RFC 4180 quoting; cells that a spreadsheet would run as a formula are prefixed.
    static func csvField(_ text: String) -> String {
        var value = text
        if let first = value.first, "=+-@\t\r".contains(first) { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
