import COpenSSL

/// scrypt password hashing (RFC 7914) with self-describing stored strings.
///
/// Stored form: `$scrypt$ln=17,r=8,p=1$<salt base64url>$<hash base64url>`. The cost
/// parameters travel with each hash, so costs can rise later while old hashes still
/// verify; ``needsRehash(_:)`` says when a stored hash is below the current costs.
public struct PasswordHasher: Sendable {
    public struct Parameters: Sendable, Equatable {
        /// log2 of the CPU/memory cost N.
        public var logN: Int
        public var r: Int
        public var p: Int

        public init(logN: Int, r: Int, p: Int) {
            self.logN = logN
            self.r = r
            self.p = p
        }

        /// OWASP's recommendation: N = 2^17, r = 8, p = 1 (128 MiB per hash).
        public static let owasp = Parameters(logN: 17, r: 8, p: 1)

        /// Cheap costs for test suites only; never use in a running service.
        public static let testOnly = Parameters(logN: 10, r: 8, p: 1)

        var memoryBytes: UInt64 { 128 * UInt64(r) * (UInt64(1) << UInt64(logN)) * UInt64(max(p, 1)) }
    }

    public let parameters: Parameters
    static let saltLength = 16
    static let hashLength = 32

    public init(parameters: Parameters = .owasp) {
        self.parameters = parameters
    }

    /// Derives raw scrypt output; exposed for known-answer tests.
    public static func scrypt(password: [UInt8], salt: [UInt8], logN: Int, r: Int, p: Int, length: Int) throws -> [UInt8] {
        guard (1...30).contains(logN), (1...64).contains(r), (1...16).contains(p), (1...1024).contains(length) else {
            throw CryptoError(.invalidInput, "scrypt parameters out of range")
        }
        var out = [UInt8](repeating: 0, count: length)
        let maxMemory = 128 * UInt64(r) * (UInt64(1) << UInt64(logN)) + 128 * UInt64(r) * UInt64(p) + 1024 * 1024
        let ok = password.withUnsafeBytes { pw in
            salt.withUnsafeBytes { s in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_PBE_scrypt(
                        pw.baseAddress?.assumingMemoryBound(to: CChar.self), pw.count,
                        s.baseAddress?.assumingMemoryBound(to: UInt8.self), s.count,
                        UInt64(1) << UInt64(logN), UInt64(r), UInt64(p), maxMemory, o.baseAddress, length)
                }
            }
        }
        guard ok == 1 else { throw CryptoError(.libraryFailure, "scrypt derivation failed") }
        return out
    }

    /// Hashes a password with a fresh random salt.
    public func hash(_ password: String) throws -> String {
        let salt = SecureRandom.bytes(Self.saltLength)
        let derived = try Self.scrypt(
            password: Array(password.utf8), salt: salt, logN: parameters.logN, r: parameters.r, p: parameters.p,
            length: Self.hashLength)
        return "$scrypt$ln=\(parameters.logN),r=\(parameters.r),p=\(parameters.p)$\(Base64URL.encode(salt))$\(Base64URL.encode(derived))"
    }

    /// Verifies a password against a stored hash in constant time. A malformed stored
    /// string verifies as `false` (after doing comparable work), never as an error.
    public func verify(_ password: String, against stored: String) -> Bool {
        guard let decoded = Self.parse(stored) else {
            _ = try? Self.scrypt(password: Array(password.utf8), salt: [UInt8](repeating: 0, count: 16),
                                 logN: parameters.logN, r: parameters.r, p: parameters.p, length: Self.hashLength)
            return false
        }
        guard let derived = try? Self.scrypt(
            password: Array(password.utf8), salt: decoded.salt, logN: decoded.parameters.logN,
            r: decoded.parameters.r, p: decoded.parameters.p, length: decoded.hash.count)
        else { return false }
        return constantTimeEquals(derived, decoded.hash)
    }

    /// Spends the same time as a real verification; used when an account does not exist,
    /// so "unknown account" and "wrong password" cannot be told apart by timing.
    public func burnEquivalentWork(_ password: String) {
        _ = try? Self.scrypt(password: Array(password.utf8), salt: [UInt8](repeating: 7, count: Self.saltLength),
                             logN: parameters.logN, r: parameters.r, p: parameters.p, length: Self.hashLength)
    }

    /// Whether a stored hash uses weaker costs than this hasher's.
    public func needsRehash(_ stored: String) -> Bool {
        guard let decoded = Self.parse(stored) else { return true }
        return decoded.parameters.logN < parameters.logN || decoded.parameters.r < parameters.r
            || decoded.parameters.p < parameters.p
    }

    static func parse(_ stored: String) -> (parameters: Parameters, salt: [UInt8], hash: [UInt8])? {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else { return nil }
        var values: [String: Int] = [:]
        for item in parts[2].split(separator: ",") {
            let kv = item.split(separator: "=")
            guard kv.count == 2, let v = Int(kv[1]) else { return nil }
            values[String(kv[0])] = v
        }
        guard let ln = values["ln"], let r = values["r"], let p = values["p"], (1...30).contains(ln),
              (1...64).contains(r), (1...16).contains(p),
              let salt = Base64URL.decode(parts[3]), let hash = Base64URL.decode(parts[4]), hash.count >= 16
        else { return nil }
        return (Parameters(logN: ln, r: r, p: p), salt, hash)
    }
}
