import Testing
import WholeCareCrypto

@Suite("Password hashing")
struct PasswordHasherTests {
    let hasher = PasswordHasher(parameters: .testOnly)

    @Test("a hash verifies its password and nothing else")
    func verify() throws {
        let stored = try hasher.hash("correct horse battery staple")
        #expect(stored.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        #expect(hasher.verify("correct horse battery staple", against: stored))
        #expect(!hasher.verify("correct horse battery stapl", against: stored))
        #expect(!hasher.verify("", against: stored))
    }

    @Test("salts differ, so equal passwords hash differently")
    func salted() throws {
        #expect(try hasher.hash("same password here") != hasher.hash("same password here"))
    }

    @Test("malformed stored hashes verify as false, never crash", arguments: [
        "", "$scrypt$", "$scrypt$ln=99,r=8,p=1$AAAA$AAAA", "$bcrypt$2b$12$abc", "$scrypt$ln=10,r=8,p=1$!!$??",
    ])
    func malformed(stored: String) {
        #expect(!hasher.verify("whatever password", against: stored))
    }

    @Test("the default parameters are OWASP's, and weaker hashes are flagged for rehash")
    func parameters() throws {
        #expect(PasswordHasher().parameters == .owasp)
        #expect(PasswordHasher.Parameters.owasp == .init(logN: 17, r: 8, p: 1))
        let weak = try hasher.hash("a long enough password")
        #expect(PasswordHasher().needsRehash(weak))
        #expect(!hasher.needsRehash(weak))
    }
}
