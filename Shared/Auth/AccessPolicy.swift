import Foundation

/// Categories of a person's data, as consent and carer scopes name them.
public enum DataCategory: String, Sendable, CaseIterable, Hashable {
    case record, budget, messages, appointments, reminders
}

/// What a caller wants to do with a person's data.
public enum PersonAction: Sendable, Hashable, CustomStringConvertible {
    case read(DataCategory)
    case write(DataCategory)
    /// Allocate money to a person's budget (ledger). `funder` is the budget's funding
    /// organisation, whose finance staff may allocate.
    case allocateBudget(funder: UUID?)
    /// Post a provider's invoice against the person's budget (ledger).
    case postInvoice
    /// See who is in the person's care team (identity).
    case readCareTeam

    public var description: String {
        switch self {
        case .read(let c): return "read \(c.rawValue)"
        case .write(let c): return "write \(c.rawValue)"
        case .allocateBudget: return "allocate budget"
        case .postInvoice: return "post invoice"
        case .readCareTeam: return "read care team"
        }
    }
}

/// The relationship, consent and carer facts between a subject and a person, served by
/// identity (`GetAccessFacts`) and cached briefly by each service.
public struct AccessFacts: Sendable, Equatable {
    public enum Relationship: String, Sendable, Hashable { case careCoordinator = "care_coordinator", careTeamMember = "care_team_member" }

    public var personExists: Bool
    public var relationships: Set<Relationship>
    /// Categories the person consented to for the subject or the subject's organisation.
    public var consentedCategories: Set<DataCategory>
    /// Carer scopes: category → may write.
    public var carerScopes: [DataCategory: Bool]
    /// A professional of the subject's organisation has an active care relationship.
    public var organisationHasRelationship: Bool

    public init(personExists: Bool = true, relationships: Set<Relationship> = [], consentedCategories: Set<DataCategory> = [],
                carerScopes: [DataCategory: Bool] = [:], organisationHasRelationship: Bool = false) {
        self.personExists = personExists
        self.relationships = relationships
        self.consentedCategories = consentedCategories
        self.carerScopes = carerScopes
        self.organisationHasRelationship = organisationHasRelationship
    }

    public static let none = AccessFacts()
}

/// Why access was allowed; recorded in access logs.
public enum AccessBasis: String, Sendable {
    case selfAccess = "self"
    case carer
    case careCoordinator = "care_coordinator"
    case careTeam = "care_team"
    case consent
    case organisationRelationship = "organisation_relationship"
    case funderStaff = "funder_staff"
}

public enum AccessDecision: Sendable, Equatable {
    case allow(AccessBasis)
    case deny(String)

    public var isAllowed: Bool { if case .allow = self { return true } else { return false } }
}

/// The one authorization policy every service uses. Deny by default: an action is
/// allowed only by a rule below. The full matrix is in docs/security.md and is tested as
/// a table.
public enum AccessPolicy {
    public static func decide(_ principal: Principal, _ action: PersonAction, person: UUID, facts: AccessFacts) -> AccessDecision {
        guard facts.personExists else {
            // Refused with the reason a stranger to a real person gets, so that the answer
            // does not tell whether the id is someone's.
            let asStranger = decide(principal, action, person: person, facts: AccessFacts())
            return asStranger.isAllowed ? .deny("no care relationship or consent") : asStranger
        }
        switch principal.kind {
        case .serviceUser, .carer:
            if principal.subjectID == person {
                switch action {
                case .read, .write, .readCareTeam: return .allow(.selfAccess)
                case .allocateBudget, .postInvoice: return .deny("people do not allocate or invoice their own budget")
                }
            }
            return carerDecision(action, facts: facts)
        case .professional:
            return professionalDecision(principal, action, facts: facts)
        case .providerSystem:
            return providerDecision(action, facts: facts)
        case .administrator:
            return .deny("administrators do not see people's data by virtue of being administrators")
        case .service:
            return .deny("services act for a person only with that person's token")
        }
    }

    static func carerDecision(_ action: PersonAction, facts: AccessFacts) -> AccessDecision {
        switch action {
        case .read(let category):
            return facts.carerScopes[category] != nil ? .allow(.carer) : .deny("no carer access to \(category.rawValue)")
        case .write(let category):
            return facts.carerScopes[category] == true ? .allow(.carer) : .deny("no carer write access to \(category.rawValue)")
        case .readCareTeam:
            return facts.carerScopes.isEmpty ? .deny("not this person's carer") : .allow(.carer)
        case .allocateBudget, .postInvoice:
            return .deny("carers do not allocate or invoice budgets")
        }
    }

    static func professionalDecision(_ principal: Principal, _ action: PersonAction, facts: AccessFacts) -> AccessDecision {
        let coordinator = facts.relationships.contains(.careCoordinator)
        let team = facts.relationships.contains(.careTeamMember)
        let related: AccessBasis? = coordinator ? .careCoordinator : (team ? .careTeam : nil)
        switch action {
        case .read(let category):
            if let related { return .allow(related) }
            return facts.consentedCategories.contains(category) ? .allow(.consent) : .deny("no care relationship or consent")
        case .write(let category):
            if let related { return .allow(related) }
            // Consent to the record lets a professional add to it, never edit others' entries.
            if category == .record, facts.consentedCategories.contains(.record) { return .allow(.consent) }
            return .deny("no care relationship or consent to write")
        case .readCareTeam:
            if let related { return .allow(related) }
            return facts.consentedCategories.isEmpty ? .deny("no care relationship or consent") : .allow(.consent)
        case .allocateBudget(let funder):
            if coordinator { return .allow(.careCoordinator) }
            if let funder, principal.organisationID == funder, principal.roles.contains(Principal.Role.finance) {
                return .allow(.funderStaff)
            }
            return .deny("only the care coordinator or the funder's finance staff allocate")
        case .postInvoice:
            return .deny("invoices are posted by provider systems")
        }
    }

    static func providerDecision(_ action: PersonAction, facts: AccessFacts) -> AccessDecision {
        switch action {
        case .read(.messages):
            return .deny("messages are between the person and their care team, not provider systems")
        case .read(let category):
            return facts.consentedCategories.contains(category) ? .allow(.consent) : .deny("no consent for this organisation")
        case .write(.record):
            if facts.consentedCategories.contains(.record) { return .allow(.consent) }
            return facts.organisationHasRelationship ? .allow(.organisationRelationship) : .deny("no consent or care relationship")
        case .write:
            return .deny("provider systems only add record entries")
        case .postInvoice:
            return facts.consentedCategories.contains(.budget) ? .allow(.consent) : .deny("no consent to invoice this budget")
        case .readCareTeam, .allocateBudget:
            return .deny("not available to provider systems")
        }
    }
}
