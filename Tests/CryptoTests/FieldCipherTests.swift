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

    @Test("an empty field and one without associated data open to what was sealed; a changed tag or nonce is refused")
    func emptyAndUnbound() throws {
        let cipher = try FieldCipher(keys: ["a": oldKey], currentKeyID: "a")
        for (text, aad) in [("", Array("entry:1".utf8)), ("", []), ("unbound", [])] as [(String, [UInt8])] {
            let box = try cipher.seal(text, associatedData: aad)
            #expect(try cipher.openString(box, associatedData: aad) == text)
            #expect(try box.withUnsafeBufferPointer { try cipher.open(sealed: $0, associatedData: aad) } == Array(text.utf8))
            for position in [box.count - 16, 2 + 1] { // the tag's first byte, the nonce's first
                var changed = box
                changed[position] ^= 1
                #expect(throws: CryptoError.self) { try cipher.open(changed, associatedData: aad) }
            }
        }
    }

    @Test("decryption contexts kept between opens: a refused open in between, other keys and many threads at once change no result")
    func reusedContexts() async throws {
        let cipher = try FieldCipher(keys: ["a": oldKey, "b": newKey], currentKeyID: "a")
        let other = try FieldCipher(keys: ["a": oldKey, "b": newKey], currentKeyID: "b")
        let texts = (0..<64).map { "entry \($0): " + String(repeating: "ü", count: $0) }
        let sealed = try texts.enumerated().map { index, text in
            try (index.isMultiple(of: 2) ? cipher : other).seal(text, associatedData: Array("entry:\(index)".utf8))
        }
        // Each open is checked against the static path, which makes a fresh context.
        let key = oldKey
        let known = try FieldCipher.seal(Array("known".utf8), key: key, keyID: "a", nonce: Array(repeating: 7, count: 12),
                                         associatedData: Array("aad".utf8))
        for round in 0..<3 {
            for (index, box) in sealed.enumerated() {
                var tampered = box
                tampered[tampered.count - 1] ^= 0x80
                #expect(throws: CryptoError.self) { try cipher.open(tampered, associatedData: Array("entry:\(index)".utf8)) }
                #expect(throws: CryptoError.self) { try cipher.open(box, associatedData: Array("entry:\(index + 1)".utf8)) }
                #expect(try cipher.openString(box, associatedData: Array("entry:\(index)".utf8)) == texts[index], "round \(round)")
            }
            #expect(try cipher.openString(known, associatedData: Array("aad".utf8)) == "known")
        }
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for round in 0..<200 {
                        let index = (worker * 7 + round) % sealed.count
                        guard try cipher.openString(sealed[index], associatedData: Array("entry:\(index)".utf8)) == texts[index] else { return false }
                    }
                    return true
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 8))
    }
}
