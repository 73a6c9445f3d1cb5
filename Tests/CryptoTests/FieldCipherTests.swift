import Testing
import WholeCareCrypto

@Suite("Field encryption")
struct FieldCipherTests {
    let oldKey = SecureRandom.bytes(32)
    let newKey = SecureRandom.bytes(32)

    @Test("sealed text opens with its associated data and nowhere else")
    func sealOpen() throws {
        let cipher = try FieldCipher(keys: ["k1": oldKey], currentKeyID: "k1")
        let sealed = try cipher.seal("Diagnosed with type 2 diabetes", associatedData: Array("entry:42".utf8))
        #expect(!String(decoding: sealed, as: UTF8.self).contains("diabetes"))
        #expect(try cipher.openString(sealed, associatedData: Array("entry:42".utf8)) == "Diagnosed with type 2 diabetes")
        #expect(throws: CryptoError.self) { try cipher.open(sealed, associatedData: Array("entry:43".utf8)) }
        var flipped = sealed
        flipped[flipped.count - 20] ^= 0x01
        #expect(throws: CryptoError.self) { try cipher.open(flipped, associatedData: Array("entry:42".utf8)) }
    }

    @Test("two seals of the same text differ (fresh nonce)")
    func freshNonce() throws {
        let cipher = try FieldCipher(keys: ["k1": oldKey], currentKeyID: "k1")
        #expect(try cipher.seal("same") != cipher.seal("same"))
    }

    @Test("after rotation, old data still opens and new data uses the new key")
    func rotation() throws {
        let before = try FieldCipher(keys: ["2026-01": oldKey], currentKeyID: "2026-01")
        let old = try before.seal("written last year")
        let after = try FieldCipher(keys: ["2026-01": oldKey, "2026-11": newKey], currentKeyID: "2026-11")
        #expect(try after.openString(old) == "written last year")
        let fresh = try after.seal("written today")
        #expect(FieldCipher.keyID(of: fresh) == "2026-11")
        #expect(FieldCipher.keyID(of: old) == "2026-01")
        // A ring without the old key cannot open old data, and says which key is missing.
        let withoutOld = try FieldCipher(keys: ["2026-11": newKey], currentKeyID: "2026-11")
        let error = #expect(throws: CryptoError.self) { try withoutOld.open(old) }
        #expect(error?.kind == .unknownKey)
    }

    @Test("a keyring string parses, first entry current")
    func keyring() throws {
        let text = "b:\(Base64URL.encode(newKey)),a:\(Base64URL.encode(oldKey))"
        let cipher = try FieldCipher(keyring: text)
        #expect(cipher.currentKeyID == "b")
        #expect(throws: CryptoError.self) { try FieldCipher(keyring: "short:AAAA") }
        #expect(throws: CryptoError.self) { try FieldCipher(keyring: "") }
    }
}
