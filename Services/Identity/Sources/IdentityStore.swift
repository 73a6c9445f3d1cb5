import Foundation
import Postgres

/// Rows as the store returns them.
public struct AccountRow: Sendable, Equatable {
    public let id: UUID
    public let kind: String
    public let email: String
    public let displayName: String
    public let passwordHash: String
    public let organisationID: UUID?
    public let roles: [String]
    public let createdAt: Date
}

public struct OrganisationRow: Sendable, Equatable {
    public let id: UUID
    public let name: String
    public let kind: String
    public let createdAt: Date
}

public struct ClientRow: Sendable {
    public let id: UUID
    public let clientID: String
    public let secretHash: [UInt8]
    public let kind: String
    public let name: String
    public let organisationID: UUID?
    public let revoked: Bool
}

public struct RelationshipRow: Sendable, Equatable {
    public let id: UUID
    public let personID: UUID
    public let professionalID: UUID
    public let organisationID: UUID
    public let role: String
    public let startedAt: Date
    public let endedAt: Date?
    public let professionalName: String
    public let personName: String
}

public struct ConsentRow: Sendable, Equatable {
    public let id: UUID
    public let personID: UUID
    public let granteeProfessionalID: UUID?
    public let granteeOrganisationID: UUID?
    public let categories: [String]
    public let grantedAt: Date
    public let expiresAt: Date?
    public let revokedAt: Date?
    public let granteeName: String
}

public struct CarerGrantRow: Sendable, Equatable {
    public let id: UUID
    public let personID: UUID
    public let carerID: UUID?
    public let invitedEmail: String
    public let scopes: [String]
    public let createdAt: Date
    public let acceptedAt: Date?
    public let expiresAt: Date?
    public let revokedAt: Date?
    public let codeExpiresAt: Date
    public let carerName: String?
    public let personName: String
}

public struct AuthEventRow: Sendable {
    public let id: Int64
    public let event: String
    public let detail: String
    public let occurredAt: Date
}

/// Outcome of presenting a refresh token.
public enum RefreshOutcome: Sendable {
    /// The token was spent and its successor stored, in the same family: the account as
    /// it is now, for the new access token.
    case rotated(AccountRow)
    /// A token that was already spent: its whole family has now been revoked.
    case reused(accountID: UUID)
    case invalid
}

/// Outcome of signing out.
public enum SignOutOutcome: Sendable, Equatable {
    case signedOut
    /// The refresh token presented is another account's: nothing was revoked or recorded.
    case someoneElses
}

/// The identity schema's SQL. Every value is a bind.
public struct IdentityStore: Sendable {
    public let db: PostgresClient

    public init(db: PostgresClient) {
        self.db = db
    }

    // MARK: Accounts

    static let accountColumns = "id, kind, email, display_name, password_hash, organisation_id, roles, created_at"

    static func account(_ row: PostgresRow) throws -> AccountRow {
        AccountRow(
            id: try row.decode("id"), kind: try row.decode("kind"), email: try row.decode("email"),
            displayName: try row.decode("display_name"), passwordHash: try row.decode("password_hash"),
            organisationID: try row.decode("organisation_id"), roles: try row.decode("roles"), createdAt: try row.decode("created_at"))
    }

    /// Inserts an account; nil if the e-mail is taken. With `event`, the first line of the
    /// account's history is written by the same statement, so neither exists without the other.
    public func createAccount(kind: String, email: String, displayName: String, passwordHash: String,
                              organisationID: UUID? = nil, roles: [String] = [], event: String? = nil) async throws -> AccountRow? {
        do {
            let rows = try await db.query("""
                WITH account AS (
                    INSERT INTO accounts (id, kind, email, display_name, password_hash, organisation_id, roles)
                    VALUES (\(UUID()), \(kind), \(email), \(displayName), \(passwordHash), \(organisationID), \(roles)::text[])
                    RETURNING \(unsafeRaw: Self.accountColumns)),
                event AS (INSERT INTO auth_events (account_id, event, detail) SELECT id, \(event)::text, '' FROM account WHERE \(event)::text IS NOT NULL)
                SELECT \(unsafeRaw: Self.accountColumns) FROM account
                """)
            return try Self.account(rows[0])
        } catch let error as PostgresError where error.isUniqueViolation {
            return nil
        }
    }

    public func account(email: String) async throws -> AccountRow? {
        try await db.query("SELECT \(unsafeRaw: Self.accountColumns) FROM accounts WHERE lower(email) = lower(\(email))")
            .first.map(Self.account)
    }

    public func account(id: UUID) async throws -> AccountRow? {
        try await db.query("SELECT \(unsafeRaw: Self.accountColumns) FROM accounts WHERE id = \(id)").first.map(Self.account)
    }

    /// A new password, every session signed out and the event recorded, in one transaction
    /// (never half done: not by a crash, nor by the caller going away).
    public func changePassword(accountID: UUID, hash: String) async throws {
        try await recording { session in
            try await session.query("UPDATE accounts SET password_hash = \(hash), password_changed_at = now() WHERE id = \(accountID)")
            try await session.query("UPDATE refresh_tokens SET revoked_at = now() WHERE account_id = \(accountID) AND revoked_at IS NULL")
            return ((), (accountID, "password_changed", "every other session was signed out"))
        }
    }

    /// Replaces a hash of the same password with a stronger one, only if the account's hash
    /// is still `old`: a password changed meanwhile is never overwritten with the old one.
    public func rehashPassword(accountID: UUID, from old: String, to new: String) async throws -> Bool {
        try await db.query("UPDATE accounts SET password_hash = \(new) WHERE id = \(accountID) AND password_hash = \(old)").affectedRows == 1
    }

    public func displayNames(_ ids: [UUID]) async throws -> [UUID: String] {
        guard !ids.isEmpty else { return [:] }
        var names: [UUID: String] = [:]
        for row in try await db.query("SELECT id, display_name FROM accounts WHERE id = ANY(\(ids)::uuid[])") {
            names[try row.decode("id")] = try row.decode("display_name")
        }
        for row in try await db.query("SELECT id, name FROM organisations WHERE id = ANY(\(ids)::uuid[])") {
            names[try row.decode("id")] = try row.decode("name")
        }
        return names
    }

    // MARK: Throttling and events

    public func throttle(emailHash: [UInt8]) async throws -> SignInThrottle? {
        try await db.query("""
            SELECT consecutive_failures, window_started_at, failures_in_window, next_attempt_at
            FROM sign_in_throttle WHERE email_hash = \(PostgresBytes(emailHash))
            """).first.map { row in
            SignInThrottle(
                consecutiveFailures: try row.decode("consecutive_failures"), windowStartedAt: try row.decode("window_started_at"),
                failuresInWindow: try row.decode("failures_in_window"), nextAttemptAt: try row.decode("next_attempt_at"))
        }
    }

    /// Saves a sign-in's throttle state, and with `event` (a failed sign-in of a known
    /// account) records it in the same transaction. Never cancelled in the server with its
    /// task (a failed sign-in counts whatever the caller does).
    public func saveThrottle(emailHash: [UInt8], _ throttle: SignInThrottle, event: Event? = nil) async throws {
        let save: PostgresQuery = """
            INSERT INTO sign_in_throttle (email_hash, consecutive_failures, window_started_at, failures_in_window, next_attempt_at)
            VALUES (\(PostgresBytes(emailHash)), \(throttle.consecutiveFailures), \(throttle.windowStartedAt),
                    \(throttle.failuresInWindow), \(throttle.nextAttemptAt))
            ON CONFLICT (email_hash) DO UPDATE SET consecutive_failures = EXCLUDED.consecutive_failures,
                window_started_at = EXCLUDED.window_started_at, failures_in_window = EXCLUDED.failures_in_window,
                next_attempt_at = EXCLUDED.next_attempt_at
            """
        try await StatementCancellation.shielded {
            guard let event else {
                try await db.query(save)
                return
            }
            try await db.withTransaction { session in
                try await session.query(save)
                try await session.query(Self.insert(event))
            }
        }
    }

    /// Never cancelled in the server with its task (an event is recorded whatever the caller does).
    public func recordEvent(accountID: UUID, _ event: String, detail: String = "") async throws {
        try await StatementCancellation.shielded { try await db.query(Self.insert((accountID, event, detail))) }
    }

    /// An account event and what it records.
    public typealias Event = (account: UUID, name: String, detail: String)

    static func insert(_ event: Event) -> PostgresQuery {
        "INSERT INTO auth_events (account_id, event, detail) VALUES (\(event.account), \(event.name), \(event.detail))"
    }

    public func events(accountID: UUID, limit: Int) async throws -> [AuthEventRow] {
        try await db.query("""
            SELECT id, event, detail, occurred_at FROM auth_events WHERE account_id = \(accountID)
            ORDER BY occurred_at DESC, id DESC LIMIT \(limit)
            """).map { row in
            AuthEventRow(id: try row.decode("id"), event: try row.decode("event"), detail: try row.decode("detail"),
                         occurredAt: try row.decode("occurred_at"))
        }
    }

    // MARK: Refresh tokens

    /// Stores a new refresh token in its family, unless the family has been revoked
    /// meanwhile (sign-out, reuse, a password change), or, with `passwordHash` (a sign-in),
    /// the password it checked has been changed since; false then. The account's row is
    /// share-locked first, so a password change (which updates that row, then revokes
    /// every token) either comes before and is seen here, or waits and revokes this token
    /// too: a sign-in or refresh racing a password change never leaves a live token behind.
    /// With `event` (a sign-in), the event is recorded in the same transaction as the token.
    /// Never cancelled in the server with its task, so a token is never stored without its event.
    public func storeRefreshToken(accountID: UUID, familyID: UUID, hash: [UInt8], expiresAt: Date,
                                  passwordHash: String? = nil, event: Event? = nil) async throws -> Bool {
        let id = UUID()
        return try await StatementCancellation.shielded {
            try await db.withTransaction { session in
                guard let row = try await session.query("SELECT password_hash FROM accounts WHERE id = \(accountID) FOR SHARE").first,
                      try passwordHash.map({ try row.decode("password_hash", as: String.self) == $0 }) ?? true
                else { return false }
                guard try await session.query("""
                    INSERT INTO refresh_tokens (id, account_id, family_id, token_hash, expires_at)
                    SELECT \(id), \(accountID), \(familyID), \(PostgresBytes(hash)), \(expiresAt)
                    WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = \(familyID) AND revoked_at IS NOT NULL)
                    """).affectedRows == 1 else { return false }
                if let event { try await session.query(Self.insert(event)) }
                return true
            }
        }
    }

    /// Spends a refresh token and stores its successor (`next`, in the same family) in one
    /// transaction, so a token is never spent without the one that replaces it: a caller
    /// who goes away half-way does not leave a session whose next refresh looks like theft.
    /// A second presentation of a spent token revokes its whole family and records
    /// `refresh_reuse_detected`, also in one transaction. Never cancelled in the server with
    /// its task (whoever presents a reused token must not be able to stop the revocation by
    /// going away).
    ///
    /// The account's row is locked before the token's, the order sign-out and a password
    /// change use; and exclusively, as storing a token share-locks it, so a token stored
    /// into this family concurrently is either seen here or refused there.
    public func rotateRefreshToken(hash: [UInt8], next: [UInt8], nextExpiresAt: Date, now: Date) async throws -> RefreshOutcome {
        try await StatementCancellation.shielded {
            try await db.withTransaction { session in
                guard let owner = try await session.query("SELECT account_id FROM refresh_tokens WHERE token_hash = \(PostgresBytes(hash))").first
                else { return .invalid }
                let accountID: UUID = try owner.decode("account_id")
                guard let account = try await session.query("""
                    SELECT \(unsafeRaw: Self.accountColumns) FROM accounts WHERE id = \(accountID) FOR NO KEY UPDATE
                    """).first.map(Self.account),
                      let row = try await session.query("""
                    SELECT family_id, expires_at, spent_at, revoked_at FROM refresh_tokens WHERE token_hash = \(PostgresBytes(hash)) FOR UPDATE
                    """).first
                else { return .invalid }
                let family: UUID = try row.decode("family_id")
                // Revoked (sign-out, reuse, a password change): so is the whole family.
                if try row.decode("revoked_at", as: Date?.self) != nil { return .invalid }
                if try row.decode("spent_at", as: Date?.self) != nil {
                    try await Self.revokeForReuse(family: family, account: accountID, in: session)
                    return .reused(accountID: accountID)
                }
                guard try row.decode("expires_at", as: Date.self) > now else { return .invalid }
                try await session.query("UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = \(PostgresBytes(hash))")
                try await session.query("""
                    INSERT INTO refresh_tokens (id, account_id, family_id, token_hash, expires_at)
                    VALUES (\(UUID()), \(accountID), \(family), \(PostgresBytes(next)), \(nextExpiresAt))
                    """)
                return .rotated(account)
            }
        }
    }

    /// Signs out: revokes the family of the refresh token `hash` (if given and known) and
    /// records `signed_out` for `eventAccount` (if given), in one transaction. A token that
    /// is not `caller`'s is left alone, and nothing is written: `.someoneElses`. Never
    /// cancelled in the server with its task.
    public func signOut(tokenHash hash: [UInt8]?, caller: UUID?, eventAccount: UUID?) async throws -> SignOutOutcome {
        try await StatementCancellation.shielded {
            try await db.withTransaction { session in
                if let hash, let row = try await session.query(
                    "SELECT account_id, family_id FROM refresh_tokens WHERE token_hash = \(PostgresBytes(hash))").first {
                    let account: UUID = try row.decode("account_id")
                    guard account == caller else { return .someoneElses }
                    let family: UUID = try row.decode("family_id")
                    // As for reuse (see `rotateRefreshToken`): a token stored concurrently is
                    // revoked here or refused there.
                    try await session.query("SELECT 1 FROM accounts WHERE id = \(account) FOR NO KEY UPDATE")
                    try await session.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = \(family) AND revoked_at IS NULL")
                }
                if let eventAccount { try await session.query(Self.insert((eventAccount, "signed_out", ""))) }
                return .signedOut
            }
        }
    }

    /// A spent refresh token came back (refresh or token-only sign-out): its holder may not
    /// be the person, so the whole session is revoked and the person's history says so.
    private static func revokeForReuse(family: UUID, account: UUID, in session: PostgresSession) async throws {
        try await session.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = \(family) AND revoked_at IS NULL")
        try await session.query(insert((account, "refresh_reuse_detected",
                                        "a spent refresh token was presented again; that session was signed out")))
    }

    public enum TokenSignOutOutcome: Sendable, Equatable {
        /// A live token: its session was revoked and `signed_out` recorded.
        case signedOut
        /// A spent token presented again: treated as `rotateRefreshToken` treats reuse (the
        /// session revoked, `refresh_reuse_detected` recorded), since its holder may not be
        /// the person.
        case reused
        /// Unknown, revoked or expired: nothing to end, nothing written.
        case nothing
    }

    /// Signs out with the refresh token alone (no access token): holding a live token is
    /// the proof. Locks as `rotateRefreshToken` does (the account, then the token), so a
    /// refresh racing it either finishes first and its new token is revoked too, or finds
    /// the token revoked. Never cancelled in the server with its task.
    public func signOut(byToken hash: [UInt8], now: Date) async throws -> TokenSignOutOutcome {
        try await StatementCancellation.shielded {
            try await db.withTransaction { session in
                guard let owner = try await session.query("SELECT account_id FROM refresh_tokens WHERE token_hash = \(PostgresBytes(hash))").first
                else { return .nothing }
                let account: UUID = try owner.decode("account_id")
                try await session.query("SELECT 1 FROM accounts WHERE id = \(account) FOR NO KEY UPDATE")
                guard let row = try await session.query("""
                    SELECT family_id, expires_at, spent_at, revoked_at FROM refresh_tokens WHERE token_hash = \(PostgresBytes(hash)) FOR UPDATE
                    """).first,
                      try row.decode("revoked_at", as: Date?.self) == nil
                else { return .nothing }
                let family: UUID = try row.decode("family_id")
                let spent = try row.decode("spent_at", as: Date?.self) != nil
                let expiresAt = try row.decode("expires_at", as: Date.self)
                guard spent || expiresAt > now else { return .nothing }
                if spent {
                    try await Self.revokeForReuse(family: family, account: account, in: session)
                    return .reused
                }
                try await session.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = \(family) AND revoked_at IS NULL")
                try await session.query(Self.insert((account, "signed_out", "")))
                return .signedOut
            }
        }
    }

    // MARK: Organisations and clients

    public func createOrganisation(name: String, kind: String) async throws -> OrganisationRow? {
        do {
            let row = try await db.query("""
                INSERT INTO organisations (id, name, kind) VALUES (\(UUID()), \(name), \(kind)) RETURNING id, name, kind, created_at
                """)[0]
            return try Self.organisation(row)
        } catch let error as PostgresError where error.isUniqueViolation {
            return nil
        }
    }

    static func organisation(_ row: PostgresRow) throws -> OrganisationRow {
        OrganisationRow(id: try row.decode("id"), name: try row.decode("name"), kind: try row.decode("kind"),
                        createdAt: try row.decode("created_at"))
    }

    public func organisation(id: UUID) async throws -> OrganisationRow? {
        try await db.query("SELECT id, name, kind, created_at FROM organisations WHERE id = \(id)").first.map(Self.organisation)
    }

    public func organisation(name: String) async throws -> OrganisationRow? {
        try await db.query("SELECT id, name, kind, created_at FROM organisations WHERE lower(name) = lower(\(name))").first
            .map(Self.organisation)
    }

    public func organisations() async throws -> [OrganisationRow] {
        try await db.query("SELECT id, name, kind, created_at FROM organisations ORDER BY name").map(Self.organisation)
    }

    public func createClient(clientID: String, secretHash: [UInt8], kind: String, name: String, organisationID: UUID?) async throws {
        try await db.query("""
            INSERT INTO clients (id, client_id, secret_hash, kind, name, organisation_id)
            VALUES (\(UUID()), \(clientID), \(PostgresBytes(secretHash)), \(kind), \(name), \(organisationID))
            ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, revoked_at = NULL
            """)
    }

    public func client(clientID: String) async throws -> ClientRow? {
        try await db.query("""
            SELECT id, client_id, secret_hash, kind, name, organisation_id, revoked_at IS NOT NULL AS revoked
            FROM clients WHERE client_id = \(clientID)
            """).first.map { row in
            ClientRow(id: try row.decode("id"), clientID: try row.decode("client_id"),
                      secretHash: try row.decode("secret_hash", as: PostgresBytes.self).bytes, kind: try row.decode("kind"),
                      name: try row.decode("name"), organisationID: try row.decode("organisation_id"), revoked: try row.decode("revoked"))
        }
    }

    // MARK: Care relationships

    static let relationshipSelect = """
        SELECT r.id, r.person_id, r.professional_id, r.organisation_id, r.role, r.started_at, r.ended_at,
               pro.display_name AS professional_name, person.display_name AS person_name
        FROM care_relationships r
        JOIN accounts pro ON pro.id = r.professional_id
        JOIN accounts person ON person.id = r.person_id
        """

    static func relationship(_ row: PostgresRow) throws -> RelationshipRow {
        RelationshipRow(
            id: try row.decode("id"), personID: try row.decode("person_id"), professionalID: try row.decode("professional_id"),
            organisationID: try row.decode("organisation_id"), role: try row.decode("role"), startedAt: try row.decode("started_at"),
            endedAt: try row.decode("ended_at"), professionalName: try row.decode("professional_name"),
            personName: try row.decode("person_name"))
    }

    public enum AssignOutcome: Sendable { case created(RelationshipRow), duplicate, coordinatorExists }

    public func assignRelationship(person: UUID, professional: UUID, organisation: UUID, role: String, createdBy: UUID) async throws -> AssignOutcome {
        do {
            let id = UUID()
            try await db.query("""
                INSERT INTO care_relationships (id, person_id, professional_id, organisation_id, role, created_by)
                VALUES (\(id), \(person), \(professional), \(organisation), \(role), \(createdBy))
                """)
            return .created(try await relationship(id: id)!)
        } catch let error as PostgresError where error.isUniqueViolation {
            return error.constraint == "care_relationships_one_coordinator" ? .coordinatorExists : .duplicate
        }
    }

    public func relationship(id: UUID) async throws -> RelationshipRow? {
        try await db.query("\(unsafeRaw: Self.relationshipSelect) WHERE r.id = \(id)").first.map(Self.relationship)
    }

    public func endRelationship(id: UUID) async throws -> RelationshipRow? {
        try await db.query("UPDATE care_relationships SET ended_at = now() WHERE id = \(id) AND ended_at IS NULL")
        return try await relationship(id: id)
    }

    public func caseload(professional: UUID) async throws -> [RelationshipRow] {
        try await db.query("""
            \(unsafeRaw: Self.relationshipSelect) WHERE r.professional_id = \(professional) AND r.ended_at IS NULL
            ORDER BY person.display_name
            """).map(Self.relationship)
    }

    public func careTeam(person: UUID) async throws -> [RelationshipRow] {
        try await db.query("""
            \(unsafeRaw: Self.relationshipSelect) WHERE r.person_id = \(person) AND r.ended_at IS NULL
            ORDER BY r.role, pro.display_name
            """).map(Self.relationship)
    }

    /// The care-relationship change feed after `sequence` (see migration 0002): at most
    /// `limit` changes, oldest first, each with its relationship as it is now.
    public func careTeamChanges(after sequence: Int64, limit: Int) async throws -> [(sequence: Int64, relationship: RelationshipRow)] {
        try await db.query("""
            SELECT c.sequence, r.id, r.person_id, r.professional_id, r.organisation_id, r.role, r.started_at, r.ended_at,
                   pro.display_name AS professional_name, person.display_name AS person_name
            FROM care_relationship_changes c
            JOIN care_relationships r ON r.id = c.relationship_id
            JOIN accounts pro ON pro.id = r.professional_id
            JOIN accounts person ON person.id = r.person_id
            WHERE c.sequence > \(sequence) ORDER BY c.sequence LIMIT \(limit)
            """).map { row in (try row.decode("sequence", as: Int64.self), try Self.relationship(row)) }
    }

    public func isCoordinator(professional: UUID, of person: UUID) async throws -> Bool {
        try await db.query("""
            SELECT 1 AS yes FROM care_relationships WHERE professional_id = \(professional) AND person_id = \(person)
            AND role = 'care_coordinator' AND ended_at IS NULL
            """).count > 0
    }

    // MARK: Consent

    static let consentSelect = """
        SELECT c.id, c.person_id, c.grantee_professional_id, c.grantee_organisation_id, c.categories, c.granted_at,
               c.expires_at, c.revoked_at, COALESCE(a.display_name, o.name, '') AS grantee_name
        FROM consents c
        LEFT JOIN accounts a ON a.id = c.grantee_professional_id
        LEFT JOIN organisations o ON o.id = c.grantee_organisation_id
        """

    static func consent(_ row: PostgresRow) throws -> ConsentRow {
        ConsentRow(
            id: try row.decode("id"), personID: try row.decode("person_id"),
            granteeProfessionalID: try row.decode("grantee_professional_id"),
            granteeOrganisationID: try row.decode("grantee_organisation_id"), categories: try row.decode("categories"),
            grantedAt: try row.decode("granted_at"), expiresAt: try row.decode("expires_at"), revokedAt: try row.decode("revoked_at"),
            granteeName: try row.decode("grantee_name"))
    }

    /// Runs `write` and records the account event it returns in one transaction, which the
    /// caller's going away does not cut short: a change to who may see a person's record
    /// is never without its line in their history, nor the other way round.
    private func recording<T: Sendable>(_ write: (PostgresSession) async throws -> (T, Event?)) async throws -> T {
        try await StatementCancellation.shielded {
            try await db.withTransaction { session in
                let (value, event) = try await write(session)
                if let event { try await session.query(Self.insert(event)) }
                return value
            }
        }
    }

    /// Grants a consent and records `consent_granted`.
    public func grantConsent(person: UUID, professional: UUID?, organisation: UUID?, categories: [String], expiresAt: Date?) async throws -> ConsentRow {
        let id = UUID()
        return try await recording { session in
            try await session.query("""
                INSERT INTO consents (id, person_id, grantee_professional_id, grantee_organisation_id, categories, expires_at)
                VALUES (\(id), \(person), \(professional), \(organisation), \(categories)::text[], \(expiresAt))
                """)
            let row = try Self.consent(try await session.query("\(unsafeRaw: Self.consentSelect) WHERE c.id = \(id)")[0])
            return (row, (person, "consent_granted", "\(row.granteeName): \(categories.joined(separator: ", "))"))
        }
    }

    public func consent(id: UUID) async throws -> ConsentRow? {
        try await db.query("\(unsafeRaw: Self.consentSelect) WHERE c.id = \(id)").first.map(Self.consent)
    }

    /// Revokes a consent; the first revocation records `consent_revoked`.
    public func revokeConsent(id: UUID) async throws -> ConsentRow? {
        try await recording { session in
            let revoked = try await session.query("UPDATE consents SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL").affectedRows
            guard let row = try await session.query("\(unsafeRaw: Self.consentSelect) WHERE c.id = \(id)").first.map(Self.consent) else {
                return (nil, nil)
            }
            return (row, revoked == 1 ? (row.personID, "consent_revoked", row.granteeName) : nil)
        }
    }

    public func consents(person: UUID) async throws -> [ConsentRow] {
        try await db.query("\(unsafeRaw: Self.consentSelect) WHERE c.person_id = \(person) ORDER BY c.granted_at DESC")
            .map(Self.consent)
    }

    // MARK: Carer grants

    static let grantSelect = """
        SELECT g.id, g.person_id, g.carer_id, g.invited_email, g.scopes, g.created_at, g.accepted_at, g.expires_at,
               g.revoked_at, g.code_expires_at, carer.display_name AS carer_name, person.display_name AS person_name
        FROM carer_grants g
        JOIN accounts person ON person.id = g.person_id
        LEFT JOIN accounts carer ON carer.id = g.carer_id
        """

    static func grant(_ row: PostgresRow) throws -> CarerGrantRow {
        CarerGrantRow(
            id: try row.decode("id"), personID: try row.decode("person_id"), carerID: try row.decode("carer_id"),
            invitedEmail: try row.decode("invited_email"), scopes: try row.decode("scopes"), createdAt: try row.decode("created_at"),
            acceptedAt: try row.decode("accepted_at"), expiresAt: try row.decode("expires_at"), revokedAt: try row.decode("revoked_at"),
            codeExpiresAt: try row.decode("code_expires_at"), carerName: try row.decode("carer_name"),
            personName: try row.decode("person_name"))
    }

    /// Invites a carer and records `carer_invited`.
    public func inviteCarer(person: UUID, email: String, codeHash: [UInt8], codeExpiresAt: Date, scopes: [String], expiresAt: Date?) async throws -> CarerGrantRow {
        let id = UUID()
        return try await recording { session in
            try await session.query("""
                INSERT INTO carer_grants (id, person_id, invited_email, code_hash, code_expires_at, scopes, expires_at)
                VALUES (\(id), \(person), \(email), \(PostgresBytes(codeHash)), \(codeExpiresAt), \(scopes)::text[], \(expiresAt))
                """)
            let row = try Self.grant(try await session.query("\(unsafeRaw: Self.grantSelect) WHERE g.id = \(id)")[0])
            return (row, (person, "carer_invited", scopes.joined(separator: ", ")))
        }
    }

    public func grant(id: UUID) async throws -> CarerGrantRow? {
        try await db.query("\(unsafeRaw: Self.grantSelect) WHERE g.id = \(id)").first.map(Self.grant)
    }

    public func grant(codeHash: [UInt8]) async throws -> CarerGrantRow? {
        try await db.query("\(unsafeRaw: Self.grantSelect) WHERE g.code_hash = \(PostgresBytes(codeHash))").first.map(Self.grant)
    }

    /// Accepts an open invitation and records `carer_accepted` in the person's history; nil
    /// if it was accepted, revoked or expired meanwhile.
    public func acceptGrant(id: UUID, carer: UUID) async throws -> CarerGrantRow? {
        try await recording { session in
            let updated = try await session.query("""
                UPDATE carer_grants SET carer_id = \(carer), accepted_at = now()
                WHERE id = \(id) AND carer_id IS NULL AND revoked_at IS NULL AND code_expires_at > now()
                """).affectedRows
            guard updated == 1 else { return (nil, nil) }
            let row = try Self.grant(try await session.query("\(unsafeRaw: Self.grantSelect) WHERE g.id = \(id)")[0])
            return (row, (row.personID, "carer_accepted", row.carerName ?? ""))
        }
    }

    /// Revokes a carer grant; the first revocation records `carer_revoked` in the person's history.
    public func revokeGrant(id: UUID) async throws -> CarerGrantRow? {
        try await recording { session in
            let revoked = try await session.query("UPDATE carer_grants SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL").affectedRows
            guard let row = try await session.query("\(unsafeRaw: Self.grantSelect) WHERE g.id = \(id)").first.map(Self.grant) else {
                return (nil, nil)
            }
            return (row, revoked == 1 ? (row.personID, "carer_revoked", row.carerName ?? row.invitedEmail) : nil)
        }
    }

    public func grants(person: UUID) async throws -> [CarerGrantRow] {
        try await db.query("\(unsafeRaw: Self.grantSelect) WHERE g.person_id = \(person) ORDER BY g.created_at DESC").map(Self.grant)
    }

    public func grants(carer: UUID) async throws -> [CarerGrantRow] {
        try await db.query("\(unsafeRaw: Self.grantSelect) WHERE g.carer_id = \(carer) ORDER BY g.created_at DESC").map(Self.grant)
    }

    // MARK: Access facts

    public struct Facts: Sendable, Equatable {
        public var personExists: Bool
        public var relationships: [String]
        public var consentedCategories: [String]
        public var carerScopes: [String]
        public var organisationHasRelationship: Bool
    }

    /// Everything the policy needs about (subject, person), in one round trip.
    public func facts(subject: UUID, organisation: UUID?, person: UUID) async throws -> Facts {
        let row = try await db.query("""
            SELECT
              EXISTS (SELECT 1 FROM accounts WHERE id = \(person) AND kind IN ('service_user', 'carer')) AS person_exists,
              ARRAY(SELECT role FROM care_relationships
                    WHERE person_id = \(person) AND professional_id = \(subject) AND ended_at IS NULL) AS relationships,
              ARRAY(SELECT DISTINCT unnest(categories) FROM consents
                    WHERE person_id = \(person) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                      AND (grantee_professional_id = \(subject) OR grantee_organisation_id = \(organisation))) AS consented,
              ARRAY(SELECT DISTINCT unnest(scopes) FROM carer_grants
                    WHERE person_id = \(person) AND carer_id = \(subject) AND revoked_at IS NULL
                      AND (expires_at IS NULL OR expires_at > now())) AS carer_scopes,
              EXISTS (SELECT 1 FROM care_relationships
                      WHERE person_id = \(person) AND organisation_id = \(organisation) AND ended_at IS NULL) AS org_relationship
            """)[0]
        return Facts(
            personExists: try row.decode("person_exists"), relationships: try row.decode("relationships"),
            consentedCategories: try row.decode("consented"), carerScopes: try row.decode("carer_scopes"),
            organisationHasRelationship: try row.decode("org_relationship"))
    }
}
