import Foundation
@_exported import UUIDText

/// Input checks that answer INVALID_ARGUMENT naming the field. Messages never echo the
/// value (it may be personal data).
public enum Validate {
    public static func uuid(_ text: String, field: String) throws -> UUID {
        guard let id = UUID(hyphenated: text) else {
            throw RPCError.invalidArgument(field: field, "must be an id (a UUID)")
        }
        return id
    }

    public static func optionalUUID(_ text: String, field: String) throws -> UUID? {
        text.isEmpty ? nil : try uuid(text, field: field)
    }

    /// Trimmed, non-empty text of at most `max` characters without control characters.
    public static func text(_ text: String, field: String, max: Int, allowEmpty: Bool = false, multiline: Bool = false) throws -> String {
        // Most text is printable ASCII with nothing to trim: checked in one pass over the
        // bytes, without Unicode property lookups.
        if let plain = text.utf8.withContiguousStorageIfAvailable({ Self.isPlainASCII($0) }), plain {
            if text.isEmpty && !allowEmpty { throw RPCError.invalidArgument(field: field, "is required") }
            guard text.utf8.count <= max else { throw RPCError.invalidArgument(field: field, "must be at most \(max) characters") }
            return text
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty && !allowEmpty { throw RPCError.invalidArgument(field: field, "is required") }
        guard trimmed.count <= max else { throw RPCError.invalidArgument(field: field, "must be at most \(max) characters") }
        let forbidden = trimmed.unicodeScalars.contains { scalar in
            scalar.properties.generalCategory == .control && !(multiline && (scalar == "\n" || scalar == "\t" || scalar == "\r"))
        }
        guard !forbidden else { throw RPCError.invalidArgument(field: field, "must not contain control characters") }
        return trimmed
    }

    /// An idempotency key: 1 to 200 printable ASCII characters without spaces (`!` to `~`).
    /// Checked over the bytes: a billing run checks a thousand keys per call.
    public static func isIdempotencyKey(_ key: String) -> Bool {
        var key = key
        return key.withUTF8 { bytes in
            guard (1...200).contains(bytes.count) else { return false }
            for byte in bytes where byte < 0x21 || byte > 0x7e { return false }
            return true
        }
    }

    /// Printable ASCII (space to tilde) that neither starts nor ends with a space.
    static func isPlainASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if let first = bytes.first, first == 0x20 || bytes.last! == 0x20 { return false }
        for byte in bytes where byte < 0x20 || byte > 0x7e { return false }
        return true
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
    /// `2026-11-27T07:00:00.123Z` (UTC, milliseconds truncated): what Foundation's
    /// `ISO8601FormatStyle(includingFractionalSeconds: true)` writes (a test compares them),
    /// computed directly for 1900–9999, since replies carry a time per entry and Foundation's
    /// formatter goes through a calendar each time. Other years go to Foundation (whose
    /// calendar is Julian before 1582).
    public static func format(_ date: Date) -> String {
        var fits = true
        let text = String(unsafeUninitializedCapacity: 24) { out in
            guard let count = write(date, to: out) else {
                fits = false
                return 0
            }
            return count
        }
        return fits ? text : date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// `format(date)`'s text, on the stack for as long as `body` runs (no `String` made).
    public static func withText<T>(of date: Date, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { out in
            if let count = write(date, to: out) { return try body(UnsafeBufferPointer(rebasing: out[..<count])) }
            var text = format(date)
            return try text.withUTF8 { try body($0) }
        }
    }

    /// Writes the 24 characters for a date in 1900–9999 into `out`; nil (nothing written)
    /// for other dates, which Foundation formats.
    private static func write(_ date: Date, to out: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        let time = date.timeIntervalSince1970
        guard time >= -2_208_988_800, time < 253_402_300_800, out.count >= 24 else { return nil }
        let whole = time.rounded(.down)
        let millis = min(999, Int(((time - whole) * 1000).rounded(.down)))
        let seconds = Int(whole)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let ofDay = seconds - days * 86_400
        let civil = CalendarDate(daysSinceEpoch: days)
        var at = 0
        func digits(_ value: Int, _ count: Int) {
            var value = value
            for index in stride(from: at + count - 1, through: at, by: -1) {
                out[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
            at += count
        }
        func put(_ character: Unicode.Scalar) {
            out[at] = UInt8(ascii: character)
            at += 1
        }
        digits(civil.year, 4); put("-"); digits(civil.month, 2); put("-"); digits(civil.day, 2); put("T")
        digits(ofDay / 3600, 2); put(":"); digits(ofDay / 60 % 60, 2); put(":"); digits(ofDay % 60, 2); put(".")
        digits(millis, 3); put("Z")
        return at
    }

    public static func parse(_ text: String) -> Date? {
        guard !text.isEmpty, text.count <= 40 else { return nil }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }
}

/// A date without a time (service dates, supply dates), `YYYY-MM-DD`. Proleptic
/// Gregorian, computed with integer arithmetic (no Calendar) so it is cheap enough to use
/// per row.
public struct CalendarDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= CalendarDate.daysIn(month: month, year: year) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    public init?(_ text: String) {
        let b = Array(text.utf8)
        guard b.count == 10, b[4] == 45, b[7] == 45 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        guard let y = number(0..<4), let m = number(5..<7), let d = number(8..<10) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    /// The UTC calendar day of an instant.
    public init(_ date: Date) {
        let days = Int((date.timeIntervalSince1970 / 86_400).rounded(.down))
        self = CalendarDate(daysSinceEpoch: days)
    }

    /// Days since 1970-01-01 (`CivilDays.date(days:)`).
    public init(daysSinceEpoch: Int) {
        (year, month, day) = CivilDays.date(days: daysSinceEpoch)
    }

    /// Days since 1970-01-01 (`CivilDays.days`).
    public var daysSinceEpoch: Int { CivilDays.days(year: year, month: month, day: day) }

    /// Midnight UTC at the start of the day.
    public var date: Date { Date(timeIntervalSince1970: TimeInterval(daysSinceEpoch) * 86_400) }

    public func adding(days: Int) -> CalendarDate { CalendarDate(daysSinceEpoch: daysSinceEpoch + days) }

    public func days(until other: CalendarDate) -> Int { other.daysSinceEpoch - daysSinceEpoch }

    public var description: String {
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2)
    }

    public static func < (lhs: CalendarDate, rhs: CalendarDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }
}
