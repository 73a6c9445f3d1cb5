import Foundation
import RPC

/// A stored entry with its free text opened (decrypted).
public struct RecordEntry: Sendable, Equatable {
    public var id: UUID
    public var lineageID: UUID
    public var version: Int
    public var personID: UUID
    public var kind: String
    public var status: String
    public var sourceKind: String
    public var sourceOrganisationID: UUID?
    public var authorID: UUID
    public var authorDisplay: String
    public var effectiveStart: String?
    public var effectiveEnd: String?
    public var effectiveDate: CalendarDate
    public var codeSystem: String?
    public var code: String?
    public var codeDisplay: String?
    public var text: String?
    public var details: [String: JSONValue]
    public var nextRefillOn: CalendarDate?
    public var supersedesID: UUID?
    public var supersededByID: UUID?
    public var errorReason: String?
    public var recordedAt: Date
}

/// The person's details as stored (sealed as one JSON document).
public struct DetailsDocument: Codable, Sendable, Equatable {
    public struct Kin: Codable, Sendable, Equatable {
        public var name: String
        public var relationship: String
        public var phone: String
    }

    public var preferredName: String = ""
    public var address: String = ""
    public var postcode: String = ""
    public var phone: String = ""
    public var email: String = ""
    public var preferredLanguage: String = ""
    public var communicationNeeds: String = ""
    public var nextOfKin: [Kin] = []
    public var contactPreferences: [String] = []

    public init() {}
}

public struct DetailsVersion: Sendable, Equatable {
    public var personID: UUID
    public var version: Int
    public var document: DetailsDocument
    public var sourceKind: String
    public var updatedByID: UUID
    public var updatedByDisplay: String
    public var updatedAt: Date
}

public struct GoalProgressRow: Sendable, Equatable {
    public var id: UUID
    public var goalLineageID: UUID
    public var percent: Int
    public var note: String?
    public var sourceKind: String
    public var authorID: UUID
    public var authorDisplay: String
    public var recordedAt: Date
}

public struct AccessLogRow: Sendable, Equatable {
    public var id: Int64
    public var personID: UUID
    public var accessorID: String
    public var accessorKind: String
    public var organisationID: UUID?
    public var action: String
    public var part: String
    public var basis: String
    public var purpose: String
    public var allowed: Bool
    public var at: Date
    /// How many refusals the row stands for (1 for an access; see `RefusalLog`), and when
    /// the first of them was (`at` is the last one's).
    public var repeats: Int
    public var firstAt: Date?
}
