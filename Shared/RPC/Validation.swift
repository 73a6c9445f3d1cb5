import Foundation

/// Input checks that answer INVALID_ARGUMENT naming the field. Messages never echo the
/// value (it may be personal data).
public enum Validate {
    public static func uuid(_ text: String, field: String) throws -> UUID {
        guard text.count == 36, let id = UUID(uuidString: text) else {
            throw RPCError.invalidArgument(field: field, "must be an id (a UUID)")
        }
        return id
    }

    public static func optionalUUID(_ text: String, field: String) throws -> UUID? {
        text.isEmpty ? nil : try uuid(text, field: field)
    }

    /// Trimmed, non-empty text of at most `max` characters without control characters.
    public static func text(_ text: String, field: String, max: Int, allowEmpty: Bool = false, multiline: Bool = false) throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty && !allowEmpty { throw RPCError.invalidArgument(field: field, "is required") }
        guard trimmed.count <= max else { throw RPCError.invalidArgument(field: field, "must be at most \(max) characters") }
        let forbidden = trimmed.unicodeScalars.contains { scalar in
            scalar.properties.generalCategory == .control && !(multiline && (scalar == "\n" || scalar == "\t" || scalar == "\r"))
        }
        guard !forbidden else { throw RPCError.invalidArgument(field: field, "must not contain control characters") }
        return trimmed
    }

    /// A plausible e-mail address, lower-cased.
    public static func email(_ text: String, field: String = "email") throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = trimmed.split(separator: "@", omittingEmptySubsequences: false)
        guard trimmed.count >= 3, trimmed.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[0].count <= 64,
              parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !trimmed.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        else { throw RPCError.invalidArgument(field: field, "must be an e-mail address") }
        return trimmed
    }

    /// An RFC 3339 timestamp.
    public static func timestamp(_ text: String, field: String) throws -> Date {
        guard let date = Timestamp.parse(text) else {
            throw RPCError.invalidArgument(field: field, "must be an RFC 3339 timestamp such as 2026-11-26T09:30:00Z")
        }
        return date
    }

    /// Empty, or an RFC 3339 timestamp in the future.
    public static func optionalFutureDate(_ text: String, field: String, now: Date) throws -> Date? {
        guard !text.isEmpty else { return nil }
        let date = try timestamp(text, field: field)
        guard date > now else { throw RPCError.invalidArgument(field: field, "must be in the future") }
        return date
    }

    /// A calendar date `YYYY-MM-DD` between 1900 and 2200.
    public static func calendarDate(_ text: String, field: String) throws -> CalendarDate {
        guard let date = CalendarDate(text), (1900...2200).contains(date.year) else {
            throw RPCError.invalidArgument(field: field, "must be a date like 2026-11-26")
        }
        return date
    }
}

/// RFC 3339 timestamps as the contracts carry them.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parse(_ text: String) -> Date? {
        guard !text.isEmpty, text.count <= 40 else { return nil }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }
}

/// A date without a time (service dates, supply dates), `YYYY-MM-DD`.
public struct CalendarDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        var components = DateComponents()
        components.year = year
        components.month = month
        components.day = day
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components),
              calendar.component(.day, from: date) == day, calendar.component(.month, from: date) == month
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.count == 10, parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2])
        else { return nil }
        self.init(year: y, month: m, day: d)
    }

    public init(_ date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        self.year = c.year!
        self.month = c.month!
        self.day = c.day!
    }

    /// Midnight UTC at the start of the day.
    public var date: Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: DateComponents(year: year, month: month, day: day))!
    }

    public func adding(days: Int) -> CalendarDate { CalendarDate(date.addingTimeInterval(TimeInterval(days) * 86_400)) }

    public func days(until other: CalendarDate) -> Int {
        Int((other.date.timeIntervalSince(date) / 86_400).rounded())
    }

    public var description: String {
        String(format: "%04d-%02d-%02d", year, month, day)
    }

    public static func < (lhs: CalendarDate, rhs: CalendarDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }
}
