import Testing
import WholeCareCrypto

/// Published test vectors: if libcrypto is wired wrongly, these fail.
@Suite("Known-answer tests")
struct KnownAnswerTests {
    struct ScryptVector: Sendable, CustomTestStringConvertible {
        let password: String, salt: String, logN: Int, r: Int, p: Int, expected: String
        var testDescription: String { "scrypt(\"\(password)\", N=2^\(logN), r=\(r), p=\(p))" }
    }

    // RFC 7914 §12.
    static let scryptVectors: [ScryptVector] = [
        .init(password: "", salt: "", logN: 4, r: 1, p: 1,
              expected: "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"),
        .init(password: "password", salt: "NaCl", logN: 10, r: 8, p: 16,
              expected: "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"),
        .init(password: "pleaseletmein", salt: "SodiumChloride", logN: 14, r: 8, p: 1,
              expected: "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"),
    ]

    @Test("hex text round-trips every byte, reads either case, and refuses odd lengths and non-digits")
    func hexText() {
        let all = (0...255).map { UInt8($0) }
        #expect(Hex.decode(Hex.encode(all)) == all)
        #expect(Hex.encode([0x00, 0x0f, 0xa5, 0xff]) == "000fa5ff")
        #expect(Hex.decode("DEADbeef") == [0xde, 0xad, 0xbe, 0xef])
        #expect(Hex.decode("") == [])
        for bad in ["0", "0g", "g0", "zz", "0 ", "é1"] { #expect(Hex.decode(bad) == nil) }
    }

    @Test("scrypt matches RFC 7914", arguments: scryptVectors)
    func scrypt(vector: ScryptVector) throws {
        let out = try PasswordHasher.scrypt(
            password: Array(vector.password.utf8), salt: Array(vector.salt.utf8), logN: vector.logN, r: vector.r,
            p: vector.p, length: 64)
        #expect(Hex.encode(out) == vector.expected)
    }

    struct EdVector: Sendable, CustomTestStringConvertible {
        let seed: String, publicKey: String, message: String, signature: String
        var testDescription: String { "Ed25519 message of \(message.count / 2) bytes" }
    }

    // RFC 8032 §7.1, tests 1-3.
    static let edVectors: [EdVector] = [
        .init(seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
              publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", message: "",
              signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        .init(seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
              publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", message: "72",
              signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
        .init(seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
              publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", message: "af82",
              signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ]

    @Test("Ed25519 matches RFC 8032", arguments: edVectors)
    func ed25519(vector: EdVector) throws {
        let key = try Ed25519.PrivateKey(rawRepresentation: Hex.decode(vector.seed)!)
        #expect(Hex.encode(key.publicKey.rawRepresentation) == vector.publicKey)
        let message = Hex.decode(vector.message)!
        let signature = try key.signature(for: message)
        #expect(Hex.encode(signature) == vector.signature)
        #expect(key.publicKey.isValidSignature(signature, for: message))
        var tampered = signature
        tampered[0] ^= 1
        #expect(!key.publicKey.isValidSignature(tampered, for: message))
        #expect(!key.publicKey.isValidSignature(signature, for: message + [0]))
    }

    struct GCMVector: Sendable, CustomTestStringConvertible {
        let name: String, key: String, nonce: String, plaintext: String, aad: String, ciphertext: String, tag: String
        var testDescription: String { name }
    }

    // The GCM specification's AES-256 test cases (McGrew & Viega), as used by NIST CAVP.
    static let gcmVectors: [GCMVector] = [
        .init(name: "GCM test case 13 (empty)", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
              plaintext: "", aad: "", ciphertext: "", tag: "530f8afbc74536b9a963b4f1c4cb738b"),
        .init(name: "GCM test case 14", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
              plaintext: String(repeating: "00", count: 16), aad: "", ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
              tag: "d0d1c8a799996bf0265b98b5d48ab919"),
        .init(name: "GCM test case 16 (with AAD)",
              key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", nonce: "cafebabefacedbaddecaf888",
              plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
              aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
              ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
              tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
    ]

    @Test("AES-256-GCM matches the published vectors", arguments: gcmVectors)
    func gcm(vector: GCMVector) throws {
        let key = Hex.decode(vector.key)!, nonce = Hex.decode(vector.nonce)!
        let sealed = try FieldCipher.gcm(
            encrypt: true, key: key, nonce: nonce, input: Hex.decode(vector.plaintext)!, associatedData: Hex.decode(vector.aad)!, tag: nil)
        #expect(Hex.encode(sealed.output) == vector.ciphertext)
        #expect(Hex.encode(sealed.tag) == vector.tag)
        let opened = try FieldCipher.gcm(
            encrypt: false, key: key, nonce: nonce, input: sealed.output, associatedData: Hex.decode(vector.aad)!, tag: sealed.tag)
        #expect(Hex.encode(opened.output) == vector.plaintext)
    }

    @Test("SHA-256 and HMAC-SHA256 match FIPS 180 and RFC 4231")
    func digests() {
        #expect(Hex.encode(Digest.sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(Digest.sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.encode(Digest.hmacSHA256(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }
}
