import ArgumentParser
import Foundation
import IdentityService
import WholeCareCrypto

/// `wholecare generate-key`: a fresh key entry for rotation.
struct GenerateKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-key",
        abstract: "Print a new key entry: `signing` for IDENTITY_SIGNING_KEYS, `field` for FIELD_ENCRYPTION_KEYS.",
        discussion: "Put the new entry first in the list and keep the old ones after it (see docs/security.md).")

    @Argument(help: "signing or field")
    var kind: String
    @Option(help: "Key id (default: a date-based id).")
    var kid: String?

    func run() throws {
        let id = kid ?? "k" + String(Int(Date().timeIntervalSince1970))
        switch kind {
        case "signing": print(SigningKeyring.generateEntry(kid: id))
        case "field": print("\(id):\(Base64URL.encode(SecureRandom.bytes(32)))")
        default: throw ValidationError("kind must be signing or field")
        }
    }
}
