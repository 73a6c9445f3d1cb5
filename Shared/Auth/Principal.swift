import Foundation
import RPC

/// Who is calling, as established from a verified access token.
public struct Principal: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case serviceUser = "service_user"
        case carer
        case professional
        case providerSystem = "provider_system"
        case administrator
        /// A WholeCare service calling another with its own credentials.
        case service
    }

    /// The account (or client) id: a UUID for people and organisations' systems, the
    /// client id for services.
    public let subject: String
    public let kind: Kind
    public let roles: Set<String>
    public let organisationID: UUID?
    public let scopes: Set<String>
    public let tokenID: String
    public let expiresAt: Date
    /// The raw token, to pass on when acting for this principal (`on-behalf-of`).
    public let token: String

    public init(subject: String, kind: Kind, roles: Set<String>, organisationID: UUID?, scopes: Set<String>,
                tokenID: String, expiresAt: Date, token: String) {
        self.subject = subject
        self.kind = kind
        self.roles = roles
        self.organisationID = organisationID
        self.scopes = scopes
        self.tokenID = tokenID
        self.expiresAt = expiresAt
        self.token = token
    }

    /// The subject as a UUID (people, provider systems); nil for services.
    public var subjectID: UUID? { UUID(hyphenated: subject) }

    /// A person (service user or carer) who may hold their own record.
    public var isPerson: Bool { kind == .serviceUser || kind == .carer }

    public var isPlatformAdministrator: Bool { kind == .administrator && roles.contains(Role.platformAdmin) }

    /// Never includes the token.
    public var description: String { "Principal(\(kind.rawValue) \(subject))" }

    public enum Role {
        public static let platformAdmin = "platform_admin"
        public static let organisationAdmin = "org_admin"
        public static let careCoordinator = "care_coordinator"
        public static let finance = "finance"
        public static let all: Set<String> = [
            platformAdmin, organisationAdmin, careCoordinator, finance, "gp", "nurse", "social_worker", "pharmacist",
            "occupational_therapist", "support_worker",
        ]
    }
}
