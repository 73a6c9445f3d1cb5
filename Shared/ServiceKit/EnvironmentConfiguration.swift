import Foundation

/// A configuration problem found at start-up. The message names the variable and what
/// was wrong, never its value (it may be a secret).
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let variable: String
    public let problem: String

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { "configuration error: \(variable) \(problem)" }
}

/// Typed access to environment variables, validated at start-up.
public struct EnvironmentConfiguration: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    /// A required, non-empty string.
    public func require(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else {
            throw ConfigurationError(variable: name, problem: "is required but not set")
        }
        return value
    }

    public func string(_ name: String, default fallback: String) -> String {
        guard let value = values[name], !value.isEmpty else { return fallback }
        return value
    }

    public func optionalString(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    public func int(_ name: String, default fallback: Int, range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        guard let text = values[name], !text.isEmpty else { return fallback }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigurationError(variable: name, problem: "must be a whole number")
        }
        guard range.contains(value) else {
            throw ConfigurationError(variable: name, problem: "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return value
    }

    public func port(_ name: String, default fallback: Int) throws -> Int {
        try int(name, default: fallback, range: 1...65535)
    }

    public func bool(_ name: String, default fallback: Bool) throws -> Bool {
        guard let text = values[name]?.lowercased(), !text.isEmpty else { return fallback }
        switch text {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(variable: name, problem: "must be true or false")
        }
    }

    /// A duration written as a number with a unit: `250ms`, `5s`, `2m`, `1h`.
    public func duration(_ name: String, default fallback: Duration) throws -> Duration {
        guard let text = values[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return fallback }
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            if let number = Int64(text.dropLast(suffix.count)), number >= 0 {
                return .milliseconds(number * millis)
            }
        }
        throw ConfigurationError(variable: name, problem: "must be a duration such as 500ms, 5s, 2m or 1h")
    }

    /// A PostgreSQL URL (`postgresql://…` or `postgres://…`) or libpq `key=value` string.
    public func databaseURL(_ name: String) throws -> String {
        let value = try require(name)
        guard value.hasPrefix("postgresql://") || value.hasPrefix("postgres://") || value.contains("=") else {
            throw ConfigurationError(variable: name, problem: "must be a postgresql:// URL or a libpq connection string")
        }
        return value
    }
}
