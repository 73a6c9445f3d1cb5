import Foundation
import COpenSSL
import Synchronization

/// AES-256-GCM encryption of individual fields at rest, with key ids for rotation.
///
/// Sealed layout: `version(1)=0x01 | keyIDLength(1) | keyID(utf8) | nonce(12) | ciphertext | tag(16)`.
/// New data is sealed with the ``currentKeyID`` key; any key in the ring opens data it
/// sealed, so keys rotate by adding a new current key and re-encrypting at leisure.
/// Callers pass associated data (e.g. the row id and column) so a ciphertext cannot be
/// moved to another row undetected.
public struct FieldCipher: Sendable {
    public let currentKeyID: String
    private let keys: [String: [UInt8]]
    /// Decryption contexts with each key already expanded, for `open`.
    private let openers: [(id: [UInt8], openers: Openers)]

    public init(keys: [String: [UInt8]], currentKeyID: String) throws {
        guard let current = keys[currentKeyID], current.count == 32 else {
            throw CryptoError(.invalidKey, "the current field-encryption key must exist and be 32 bytes")
        }
        for (id, key) in keys {
            guard key.count == 32 else { throw CryptoError(.invalidKey, "field-encryption key \(id) is not 32 bytes") }
            guard !id.isEmpty, id.utf8.count < 64, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw CryptoError(.invalidKey, "field-encryption key ids are 1-63 letters, digits, '-' or '_'")
            }
        }
        self.keys = keys
        self.currentKeyID = currentKeyID
        self.openers = keys.map { (Array($0.key.utf8), Openers(key: $0.value)) }
    }

    /// Parses `id1:base64key,id2:base64key` (the first entry is the current key).
    public init(keyring text: String) throws {
        var keys: [String: [UInt8]] = [:]
        var first: String?
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let key = Base64URL.decode(parts[1]) ?? Base64.decode(String(parts[1])) else {
                throw CryptoError(.invalidKey, "keyring entries look like id:base64key")
            }
            let id = String(parts[0]).trimmingWhitespace()
            keys[id] = key
            if first == nil { first = id }
        }
        guard let first else { throw CryptoError(.invalidKey, "the keyring is empty") }
        try self.init(keys: keys, currentKeyID: first)
    }

    public func seal(_ plaintext: [UInt8], associatedData: [UInt8] = []) throws -> [UInt8] {
        try Self.seal(plaintext, key: keys[currentKeyID]!, keyID: currentKeyID, nonce: SecureRandom.bytes(12),
                      associatedData: associatedData)
    }

    public func seal(_ text: String, associatedData: [UInt8] = []) throws -> [UInt8] {
        try seal(Array(text.utf8), associatedData: associatedData)
    }

    public func open(_ sealed: [UInt8], associatedData: [UInt8] = []) throws -> [UInt8] {
        try sealed.withUnsafeBufferPointer { try open(sealed: $0, associatedData: associatedData) }
    }

    /// Opens a sealed value read in place (a database cell, say) without copying it first.
    public func open(sealed: UnsafeBufferPointer<UInt8>, associatedData: [UInt8] = []) throws -> [UInt8] {
        try associatedData.withUnsafeBytes { try open(sealed: sealed, associatedData: $0) }
    }

    /// `open(sealed:associatedData:)` with associated data the caller built in place (on
    /// the stack, say): a record summary opens two fields per entry.
    public func open(sealed: UnsafeBufferPointer<UInt8>, associatedData: UnsafeRawBufferPointer) throws -> [UInt8] {
        guard sealed.count >= 2 + 12 + 16, sealed[0] == 1 else {
            throw CryptoError(.invalidInput, "not a sealed field")
        }
        let idLength = Int(sealed[1])
        guard sealed.count >= 2 + idLength + 12 + 16 else { throw CryptoError(.invalidInput, "not a sealed field") }
        let id = UnsafeBufferPointer(rebasing: sealed[2..<(2 + idLength)])
        guard let found = openers.first(where: { $0.id.elementsEqual(id) }) else {
            throw CryptoError(.unknownKey, "field sealed with unknown key id \(String(decoding: id, as: UTF8.self))")
        }
        let nonceStart = 2 + idLength
        return try found.openers.open(nonce: UnsafeBufferPointer(rebasing: sealed[nonceStart..<(nonceStart + 12)]),
                                      body: UnsafeBufferPointer(rebasing: sealed[(nonceStart + 12)..<(sealed.count - 16)]),
                                      tag: UnsafeBufferPointer(rebasing: sealed[(sealed.count - 16)...]),
                                      associatedData: associatedData)
    }

    public func openString(_ sealed: [UInt8], associatedData: [UInt8] = []) throws -> String {
        String(decoding: try open(sealed, associatedData: associatedData), as: UTF8.self)
    }

    /// The key id a sealed value was written with (for rotation jobs).
    public static func keyID(of sealed: [UInt8]) -> String? {
        guard sealed.count >= 2, sealed[0] == 1, sealed.count >= 2 + Int(sealed[1]) else { return nil }
        return String(decoding: sealed[2..<(2 + Int(sealed[1]))], as: UTF8.self)
    }

    /// Seals with an explicit nonce; exposed for known-answer tests. Never reuse a nonce.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], keyID: String, nonce: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        let (ciphertext, tag) = try gcm(encrypt: true, key: key, nonce: nonce, input: plaintext, associatedData: associatedData, tag: nil)
        let idBytes = Array(keyID.utf8)
        return [1, UInt8(idBytes.count)] + idBytes + nonce + ciphertext + tag
    }

    /// AES-256-GCM, fetched from OpenSSL's provider once. Handing OpenSSL 3 the legacy
    /// `EVP_aes_256_gcm()` makes every operation look the implementation up again (an
    /// implicit fetch, under a lock): a record summary opens hundreds of fields.
    nonisolated(unsafe) static let aes256GCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

    /// Raw AES-256-GCM; returns (ciphertext or plaintext, tag).
    public static func gcm(
        encrypt: Bool, key: [UInt8], nonce: [UInt8], input: [UInt8], associatedData: [UInt8], tag: [UInt8]?
    ) throws -> (output: [UInt8], tag: [UInt8]) {
        guard key.count == 32 else { throw CryptoError(.invalidKey, "AES-256 keys are 32 bytes") }
        guard !nonce.isEmpty else { throw CryptoError(.invalidInput, "empty nonce") }
        guard let context = EVP_CIPHER_CTX_new() else { throw CryptoError(.libraryFailure, "out of memory") }
        defer { EVP_CIPHER_CTX_free(context) }
        let enc: Int32 = encrypt ? 1 : 0
        guard EVP_CipherInit_ex(context, aes256GCM ?? EVP_aes_256_gcm(), nil, nil, nil, enc) == 1,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonce.count), nil) == 1,
              EVP_CipherInit_ex(context, nil, nil, key, nonce, enc) == 1
        else { throw CryptoError(.libraryFailure, "AES-GCM init failed") }
        return try input.withUnsafeBufferPointer { input in
            try process(context, encrypt: encrypt, input: input, associatedData: associatedData, tag: tag)
        }
    }

    /// Runs associated data and `input` through a context set up with key and nonce, and
    /// checks (`tag`, decrypting) or returns (encrypting) the tag.
    static func process(_ context: OpaquePointer, encrypt: Bool, input: UnsafeBufferPointer<UInt8>, associatedData: [UInt8],
                        tag: [UInt8]?) throws -> (output: [UInt8], tag: [UInt8]) {
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard associatedData.withUnsafeBufferPointer({ EVP_CipherUpdate(context, nil, &length, $0.baseAddress, Int32($0.count)) }) == 1
            else { throw CryptoError(.libraryFailure, "AES-GCM AAD failed") }
        }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        var written: Int32 = 0
        if !input.isEmpty {
            guard output.withUnsafeMutableBufferPointer({ o in
                EVP_CipherUpdate(context, o.baseAddress, &written, input.baseAddress, Int32(input.count))
            }) == 1 else { throw CryptoError(.libraryFailure, "AES-GCM update failed") }
        }
        if !encrypt {
            guard var expected = tag, expected.count == 16 else { throw CryptoError(.authenticationFailed, "missing tag") }
            guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, &expected) == 1 else {
                throw CryptoError(.libraryFailure, "AES-GCM tag failed")
            }
        }
        var finalLength: Int32 = 0
        let finalOK = output.withUnsafeMutableBufferPointer { o in
            EVP_CipherFinal_ex(context, o.baseAddress! + Int(written), &finalLength)
        }
        guard finalOK == 1 else {
            throw CryptoError(.authenticationFailed, "the sealed field failed authentication")
        }
        output.removeLast(output.count - Int(written + finalLength))
        var outTag = [UInt8](repeating: 0, count: 16)
        if encrypt {
            guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, &outTag) == 1 else {
                throw CryptoError(.libraryFailure, "AES-GCM tag failed")
            }
        } else {
            outTag = tag ?? []
        }
        return (output, outTag)
    }
}

/// AES-256-GCM decryption contexts for one key, kept between uses: a context made once
/// holds the expanded key and needs only the nonce set for each field (making one per
/// field cost more than decrypting it). Each context is used by one caller at a time.
final class Openers: @unchecked Sendable {
    private let key: [UInt8]
    private let idle = Mutex<[Context]>([])
    /// An OpenSSL context, owned by whoever holds it (the pool, or one caller).
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }
    /// Contexts kept for reuse at most (more are freed after use).
    private static let kept = 32

    init(key: [UInt8]) {
        self.key = key
    }

    deinit {
        idle.withLock { contexts in
            for context in contexts { EVP_CIPHER_CTX_free(context.pointer) }
        }
    }

    private func makeContext() throws -> OpaquePointer {
        guard let context = EVP_CIPHER_CTX_new() else { throw CryptoError(.libraryFailure, "out of memory") }
        guard EVP_CipherInit_ex(context, FieldCipher.aes256GCM ?? EVP_aes_256_gcm(), nil, nil, nil, 0) == 1,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, 12, nil) == 1,
              EVP_CipherInit_ex(context, nil, nil, key, nil, 0) == 1
        else {
            EVP_CIPHER_CTX_free(context)
            throw CryptoError(.libraryFailure, "AES-GCM init failed")
        }
        return context
    }

    /// Decrypts `body` with a 12-byte nonce and checks its 16-byte tag. The plaintext is
    /// the only allocation (AES-GCM's plaintext is as long as its ciphertext).
    func open(nonce: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, tag: UnsafeBufferPointer<UInt8>,
              associatedData: UnsafeRawBufferPointer) throws -> [UInt8] {
        precondition(nonce.count == 12 && tag.count == 16)
        let context = try idle.withLock { $0.popLast()?.pointer } ?? makeContext()
        var healthy = false
        defer {
            // A context is put back only after a clean run (a failed one is not trusted).
            let freed = !healthy || idle.withLock { contexts -> Bool in
                guard contexts.count < Self.kept else { return true }
                contexts.append(Context(pointer: context))
                return false
            }
            if freed { EVP_CIPHER_CTX_free(context) }
        }
        // Setting the nonce starts a new message with the key already in the context.
        guard EVP_CipherInit_ex(context, nil, nil, nil, nonce.baseAddress, 0) == 1 else {
            throw CryptoError(.libraryFailure, "AES-GCM init failed")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_CipherUpdate(context, nil, &length, associatedData.baseAddress, Int32(associatedData.count)) == 1
            else { throw CryptoError(.libraryFailure, "AES-GCM AAD failed") }
        }
        // OpenSSL takes the expected tag through a mutable pointer (it copies it): a copy
        // on the stack, not the caller's bytes.
        var expected: (UInt64, UInt64) = (0, 0)
        let tagSet = withUnsafeMutableBytes(of: &expected) { copy in
            copy.copyMemory(from: UnsafeRawBufferPointer(tag))
            return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, copy.baseAddress)
        }
        guard tagSet == 1 else { throw CryptoError(.libraryFailure, "AES-GCM tag failed") }
        let output = try [UInt8](unsafeUninitializedCapacity: max(1, body.count)) { buffer, initialized in
            var written: Int32 = 0
            if !body.isEmpty {
                guard EVP_CipherUpdate(context, buffer.baseAddress, &written, body.baseAddress, Int32(body.count)) == 1
                else { throw CryptoError(.libraryFailure, "AES-GCM update failed") }
            }
            var finalLength: Int32 = 0
            guard EVP_CipherFinal_ex(context, buffer.baseAddress! + Int(written), &finalLength) == 1 else {
                throw CryptoError(.authenticationFailed, "the sealed field failed authentication")
            }
            initialized = Int(written + finalLength)
        }
        healthy = true
        return output
    }
}

/// Standard base64 (with padding) decoding for key material in configuration.
enum Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        guard let data = Foundation.Data(base64Encoded: text) else { return nil }
        return Array(data)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
