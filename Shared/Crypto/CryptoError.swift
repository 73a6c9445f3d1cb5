/// A failure in a cryptographic operation. Messages never include key material or data.
public struct CryptoError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidKey
        case invalidInput
        case authenticationFailed
        case unknownKey
        case libraryFailure
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "CryptoError.\(kind): \(message)" }
}
