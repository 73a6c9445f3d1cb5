import Foundation

/// What makes a password acceptable: at least 12 characters, at most 1,024, and not a
/// commonly used password (NIST SP 800-63B). No composition rules.
public struct PasswordPolicy: Sendable {
    public static let minimumLength = 12
    public static let maximumLength = 1024

    let common: Set<String>

    public init(commonPasswords: Set<String>) {
        self.common = commonPasswords
    }

    /// Loads the shipped list (`CommonPasswords.txt`, one per line, `#` comments).
    public static func bundled() throws -> PasswordPolicy {
        guard let url = Bundle.module.url(forResource: "CommonPasswords", withExtension: "txt") else {
            throw CocoaError(.fileNoSuchFile)
        }
        let text = try String(contentsOf: url, encoding: .utf8)
        let entries = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }.map { $0.lowercased() }
        return PasswordPolicy(commonPasswords: Set(entries))
    }

    public enum Problem: Equatable, Sendable {
        case tooShort, tooLong, common
        public var message: String {
            switch self {
            case .tooShort: return "must be at least \(PasswordPolicy.minimumLength) characters"
            case .tooLong: return "must be at most \(PasswordPolicy.maximumLength) characters"
            case .common: return "is too common; choose a less guessable password (a few unrelated words work well)"
            }
        }
    }

    /// The problem with a password, or nil if it is acceptable.
    public func problem(with password: String, email: String? = nil) -> Problem? {
        let count = password.count
        if count < Self.minimumLength { return .tooShort }
        if count > Self.maximumLength { return .tooLong }
        let lowered = password.lowercased()
        if common.contains(lowered) { return .common }
        // A common password with digits or symbols tacked on is still common.
        let core = String(lowered.reversed().drop { !$0.isLetter }.reversed())
        if core.count >= 4 && common.contains(core) { return .common }
        // One repeated character, or a short pattern repeated ("abcabcabcabc").
        for period in 1...4 where count % period == 0 {
            let chars = Array(lowered)
            if (period..<chars.count).allSatisfy({ chars[$0] == chars[$0 - period] }) { return .common }
        }
        // Runs like "123456789012" or "abcdefghijkl".
        let scalars = Array(lowered.unicodeScalars).map(\.value)
        if scalars.count >= 2 {
            let steps = zip(scalars.dropFirst(), scalars).map { Int($0) - Int($1) }
            if steps.allSatisfy({ $0 == 1 || $0 == -9 }) || steps.allSatisfy({ $0 == -1 || $0 == 9 }) { return .common }
        }
        if let email, let local = email.lowercased().split(separator: "@").first, local.count >= 4,
           lowered.replacingOccurrences(of: String(local), with: "").count < 6 {
            return .common
        }
        return nil
    }
}
