import COpenSSL

/// Ed25519 signatures (RFC 8032) through libcrypto.
public enum Ed25519 {
    public struct PrivateKey: Sendable {
        /// The 32-byte seed.
        public let rawRepresentation: [UInt8]
        public let publicKey: PublicKey

        public init() {
            try! self.init(rawRepresentation: SecureRandom.bytes(32))
        }

        public init(rawRepresentation seed: [UInt8]) throws {
            guard seed.count == 32 else { throw CryptoError(.invalidKey, "an Ed25519 private key is 32 bytes") }
            let key = try Ed25519.withKey(raw: seed, isPrivate: true) { pkey -> [UInt8] in
                var length = 32
                var out = [UInt8](repeating: 0, count: 32)
                guard EVP_PKEY_get_raw_public_key(pkey, &out, &length) == 1, length == 32 else {
                    throw CryptoError(.libraryFailure, "could not derive the Ed25519 public key")
                }
                return out
            }
            self.rawRepresentation = seed
            self.publicKey = try PublicKey(rawRepresentation: key)
        }

        public func signature(for message: [UInt8]) throws -> [UInt8] {
            try Ed25519.withKey(raw: rawRepresentation, isPrivate: true) { pkey in
                guard let context = EVP_MD_CTX_new() else { throw CryptoError(.libraryFailure, "out of memory") }
                defer { EVP_MD_CTX_free(context) }
                guard EVP_DigestSignInit(context, nil, nil, nil, pkey) == 1 else {
                    throw CryptoError(.libraryFailure, "Ed25519 sign init failed")
                }
                var signature = [UInt8](repeating: 0, count: 64)
                var length = 64
                let ok = message.withUnsafeBufferPointer { m in
                    EVP_DigestSign(context, &signature, &length, m.baseAddress, m.count)
                }
                guard ok == 1, length == 64 else { throw CryptoError(.libraryFailure, "Ed25519 signing failed") }
                return signature
            }
        }
    }

    public struct PublicKey: Sendable, Equatable {
        public let rawRepresentation: [UInt8]
        /// The parsed key, made once: parsing costs more than a verification.
        private let parsed: ParsedKey

        public init(rawRepresentation: [UInt8]) throws {
            guard rawRepresentation.count == 32 else { throw CryptoError(.invalidKey, "an Ed25519 public key is 32 bytes") }
            self.rawRepresentation = rawRepresentation
            self.parsed = try ParsedKey(raw: rawRepresentation)
        }

        public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool { lhs.rawRepresentation == rhs.rawRepresentation }

        public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            guard signature.count == 64 else { return false }
            return ({ (pkey: OpaquePointer) -> Bool in
                guard let context = EVP_MD_CTX_new() else { return false }
                defer { EVP_MD_CTX_free(context) }
                guard EVP_DigestVerifyInit(context, nil, nil, nil, pkey) == 1 else { return false }
                let ok = signature.withUnsafeBufferPointer { s in
                    message.withUnsafeBufferPointer { m in
                        EVP_DigestVerify(context, s.baseAddress, s.count, m.baseAddress, m.count)
                    }
                }
                return ok == 1
            })(parsed.key)
        }
    }

    /// An `EVP_PKEY` for a public key, freed with its owner. libcrypto allows concurrent
    /// verifications with one key.
    final class ParsedKey: @unchecked Sendable {
        let key: OpaquePointer

        init(raw: [UInt8]) throws {
            guard let key = raw.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) }) else {
                throw CryptoError(.invalidKey, "libcrypto refused the Ed25519 key")
            }
            self.key = key
        }

        deinit { EVP_PKEY_free(key) }
    }

    static func withKey<T>(raw: [UInt8], isPrivate: Bool, _ body: (OpaquePointer) throws -> T) throws -> T {
        let key = raw.withUnsafeBufferPointer { buffer in
            isPrivate
                ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, buffer.baseAddress, buffer.count)
                : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, buffer.baseAddress, buffer.count)
        }
        guard let key else { throw CryptoError(.invalidKey, "libcrypto refused the Ed25519 key") }
        defer { EVP_PKEY_free(key) }
        return try body(key)
    }
}
