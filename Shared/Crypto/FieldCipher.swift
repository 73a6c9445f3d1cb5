import Foundation
import COpenSSL

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
        guard sealed.count >= 2 + 12 + 16, sealed[0] == 1 else {
            throw CryptoError(.invalidInput, "not a sealed field")
        }
        let idLength = Int(sealed[1])
        guard sealed.count >= 2 + idLength + 12 + 16 else { throw CryptoError(.invalidInput, "not a sealed field") }
        let keyID = String(decoding: sealed[2..<(2 + idLength)], as: UTF8.self)
        guard let key = keys[keyID] else { throw CryptoError(.unknownKey, "field sealed with unknown key id \(keyID)") }
        let nonceStart = 2 + idLength
        let nonce = Array(sealed[nonceStart..<(nonceStart + 12)])
        let body = Array(sealed[(nonceStart + 12)..<(sealed.count - 16)])
        let tag = Array(sealed[(sealed.count - 16)...])
        return try Self.gcm(encrypt: false, key: key, nonce: nonce, input: body, associatedData: associatedData, tag: tag).output
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
    nonisolated(unsafe) private static let aes256GCM: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)

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
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard associatedData.withUnsafeBufferPointer({ EVP_CipherUpdate(context, nil, &length, $0.baseAddress, Int32($0.count)) }) == 1
            else { throw CryptoError(.libraryFailure, "AES-GCM AAD failed") }
        }
        var output = [UInt8](repeating: 0, count: input.count + 16)
        var written: Int32 = 0
        if !input.isEmpty {
            guard input.withUnsafeBufferPointer({ i in
                output.withUnsafeMutableBufferPointer { o in EVP_CipherUpdate(context, o.baseAddress, &written, i.baseAddress, Int32(i.count)) }
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
