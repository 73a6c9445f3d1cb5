import Auth
import Contracts
import Foundation
import Logging
import RPC
import WholeCareCrypto

typealias IdentityAPI = Wholecare_Identity_V1_Identity

/// Translates identity RPCs to the store and the rules; authorization on every method.
public struct IdentityRPCService: Wholecare_Identity_V1_Identity.ServiceProtocol {
    let store: IdentityStore
    let hashing: PasswordHashingPool
    let passwordPolicy: PasswordPolicy
    let issuer: TokenIssuer
    let authorizer: Authorizer
    let now: @Sendable () -> Date
    /// The service clients that may read the care-relationship change feed (records).
    let careTeamFeedClients: Set<String>

    /// Methods callable without a token.
    public static let publicMethods: Set<String> = [
        IdentityAPI.Methods.register.fullName, IdentityAPI.Methods.signIn.fullName, IdentityAPI.Methods.signInClient.fullName,
        IdentityAPI.Methods.refresh.fullName, IdentityAPI.Methods.getSigningKeys.fullName,
        // With no token, the refresh token is the proof (a session whose access token has expired).
        IdentityAPI.Methods.signOut.fullName,
    ]

    public init(store: IdentityStore, hashing: PasswordHashingPool, passwordPolicy: PasswordPolicy, issuer: TokenIssuer,
                careTeamFeedClients: Set<String> = ["svc-records"], now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.careTeamFeedClients = careTeamFeedClients
        self.hashing = hashing
        self.passwordPolicy = passwordPolicy
        self.issuer = issuer
        self.now = now
        // Identity answers access questions from its own tables, with no cache: its own
        // decisions follow a revocation immediately.
        let store = store
        self.authorizer = Authorizer(factsTTL: .zero) { principal, person in
            guard let subject = principal.subjectID else { return .none }
            return IdentityRPCService.policyFacts(try await store.facts(subject: subject, organisation: principal.organisationID, person: person))
        }
    }

    // MARK: - Sign-in

    public func register(request: Wholecare_Identity_V1_RegisterRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_SignInResponse {
        let email = try Validate.email(request.email)
        let name = try Validate.text(request.displayName, field: "display_name", max: 200)
        let kind: String
        switch request.kind {
        case .unspecified, .serviceUser: kind = "service_user"
        case .carer: kind = "carer"
        default: throw RPCError.invalidArgument(field: "kind", "must be SERVICE_USER or CARER")
        }
        if let problem = passwordPolicy.problem(with: request.password, email: email) {
            throw RPCError.invalidArgument(field: "password", problem.message)
        }
        let hash = try await hashing.hash(request.password)
        guard let account = try await store.createAccount(kind: kind, email: email, displayName: name, passwordHash: hash,
                                                          event: "registered") else {
            throw RPCError(code: .alreadyExists, message: "an account with this e-mail address already exists; sign in instead")
        }
        guard let response = try await session(for: account, family: UUID()) else { throw Self.refreshRefused }
        return response
    }

    public func signIn(request: Wholecare_Identity_V1_SignInRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_SignInResponse {
        let normalised = request.email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard !normalised.isEmpty, normalised.count <= 254, request.password.count <= PasswordPolicy.maximumLength else {
            throw Self.wrongCredentials
        }
        let emailHash = Digest.sha256("signin:" + normalised)
        let current = now()
        let throttle = try await store.throttle(emailHash: emailHash) ?? .fresh(now: current)
        if let wait = throttle.retryAfter(now: current) {
            let seconds = Int(wait.rounded(.up))
            throw RPCError(code: .resourceExhausted, message: "too many failed sign-ins; try again in \(seconds) seconds",
                           metadata: ["retry-after": String(seconds)])
        }
        let account = try await store.account(email: normalised)
        let valid: Bool
        if let account {
            valid = try await hashing.verify(request.password, against: account.passwordHash)
        } else {
            try await hashing.burn(request.password)  // the same work, so timing says nothing
            valid = false
        }
        guard valid, let account else {
            let next = throttle.failing(at: current)
            let detail = next.retryAfter(now: current).map { "throttled for \(Int($0.rounded(.up))) s" } ?? ""
            try await store.saveThrottle(emailHash: emailHash, next, event: account.map { ($0.id, "sign_in_failed", detail) })
            throw Self.wrongCredentials
        }
        if throttle.consecutiveFailures > 0 { try await store.saveThrottle(emailHash: emailHash, throttle.succeeding(at: current)) }
        var verified = account.passwordHash
        if hashing.hasher.needsRehash(account.passwordHash) {
            let stronger = try await hashing.hash(request.password)
            if try await store.rehashPassword(accountID: account.id, from: account.passwordHash, to: stronger) {
                verified = stronger
            } else if let latest = try await store.account(id: account.id), try await hashing.verify(request.password, against: latest.passwordHash) {
                verified = latest.passwordHash  // another sign-in upgraded the same password first
            }
        }
        // A password changed since it was checked here gives no session.
        guard let response = try await session(for: account, family: UUID(), passwordHash: verified, event: "signed_in") else {
            try await store.recordEvent(accountID: account.id, "sign_in_failed", detail: "the password was changed meanwhile")
            throw Self.wrongCredentials
        }
        return response
    }

    static let wrongCredentials = RPCError(code: .unauthenticated, message: "the e-mail address or password is wrong")

    public func signInClient(request: Wholecare_Identity_V1_SignInClientRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_SignInResponse {
        let refused = RPCError(code: .unauthenticated, message: "the client id or secret is wrong")
        guard !request.clientID.isEmpty, request.clientID.count <= 200, request.clientSecret.count <= 200 else { throw refused }
        let presented = Digest.sha256(request.clientSecret)
        guard let client = try await store.client(clientID: request.clientID) else {
            _ = constantTimeEquals(presented, presented)
            throw refused
        }
        guard !client.revoked, constantTimeEquals(presented, client.secretHash) else { throw refused }
        let kind: Principal.Kind = client.kind == "service" ? .service : .providerSystem
        let subject = kind == .service ? client.clientID : client.id.lowercasedString
        let scopes = kind == .service ? ["service:" + client.name] : ["provider"]
        let access = try issuer.accessToken(subject: subject, kind: kind, roles: [], organisation: client.organisationID, scopes: scopes, now: now())
        var response = Wholecare_Identity_V1_SignInResponse()
        response.accessToken = access.token
        response.tokenType = "Bearer"
        response.expiresInSeconds = UInt32(issuer.accessTokenLifetime)
        var account = Wholecare_Identity_V1_Account()
        account.id = subject
        account.kind = kind == .service ? .service : .providerSystem
        account.displayName = client.name
        account.organisationID = client.organisationID?.lowercasedString ?? ""
        response.account = account
        return response
    }

    public func refresh(request: Wholecare_Identity_V1_RefreshRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_SignInResponse {
        let refused = RPCError(code: .unauthenticated, message: "the refresh token is invalid, expired or revoked; sign in again")
        guard request.refreshToken.hasPrefix("wcr_"), request.refreshToken.count < 200 else { throw refused }
        let current = now()
        let next = issuer.newRefreshToken()
        // The old token spent and the new one stored in one step (a reused token revokes
        // its session and is recorded as such, also in one step).
        switch try await store.rotateRefreshToken(hash: TokenIssuer.hash(request.refreshToken), next: next.hash,
                                                  nextExpiresAt: current.addingTimeInterval(issuer.refreshTokenLifetime), now: current) {
        case .invalid, .reused:
            throw refused
        case .rotated(let account):
            return try response(for: account, refreshToken: next.token, now: current)
        }
    }

    public func signOut(request: Wholecare_Identity_V1_SignOutRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_SignOutResponse {
        guard let principal = try? context.principal() else {
            // No access token (it expired, say): whoever holds the refresh token may end its
            // session, as they could refresh and then sign out.
            guard !request.refreshToken.isEmpty else {
                throw RPCError(code: .unauthenticated, message: "signing out needs a bearer token or the session's refresh token")
            }
            // Whatever the token was (live, spent, revoked, expired, made up), the answer is the
            // same: there is no session for it now. Only a live or spent one changes anything.
            if request.refreshToken.hasPrefix("wcr_"), request.refreshToken.count < 200 {
                _ = try await store.signOut(byToken: TokenIssuer.hash(request.refreshToken), now: now())
            }
            return Wholecare_Identity_V1_SignOutResponse()
        }
        let hasAccount = principal.isPerson || principal.kind == .professional || principal.kind == .administrator
        // Whose token it is is checked before anything is revoked: another account's
        // session is left alone, and nothing is recorded.
        let outcome = try await store.signOut(tokenHash: request.refreshToken.isEmpty ? nil : TokenIssuer.hash(request.refreshToken),
                                              caller: hasAccount ? principal.subjectID : nil,
                                              eventAccount: hasAccount ? principal.subjectID : nil)
        guard outcome == .signedOut else {
            throw RPCError(code: .permissionDenied, message: "that refresh token belongs to someone else")
        }
        return Wholecare_Identity_V1_SignOutResponse()
    }

    public func changePassword(request: Wholecare_Identity_V1_ChangePasswordRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ChangePasswordResponse {
        let principal = try context.principal()
        guard let id = principal.subjectID, let account = try await store.account(id: id) else {
            throw RPCError(code: .permissionDenied, message: "only people with a password can change it")
        }
        guard try await hashing.verify(request.currentPassword, against: account.passwordHash) else {
            throw RPCError.invalidArgument(field: "current_password", "is wrong")
        }
        if let problem = passwordPolicy.problem(with: request.newPassword, email: account.email) {
            throw RPCError.invalidArgument(field: "new_password", problem.message)
        }
        let newHash = try await hashing.hash(request.newPassword)
        try await store.changePassword(accountID: id, hash: newHash)
        var response = Wholecare_Identity_V1_ChangePasswordResponse()
        // Changed again meanwhile (another session of the same person): no session for this one.
        guard let session = try await session(for: account, family: UUID(), passwordHash: newHash) else {
            throw RPCError(code: .unauthenticated, message: "the password was changed again meanwhile; sign in again")
        }
        response.session = session
        return response
    }

    public func whoAmI(request: Wholecare_Identity_V1_WhoAmIRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Account {
        let principal = try context.principal()
        if let id = principal.subjectID, let account = try await store.account(id: id) { return Self.proto(account) }
        var account = Wholecare_Identity_V1_Account()
        account.id = principal.subject
        account.kind = Self.protoKind(principal.kind)
        account.organisationID = principal.organisationID?.lowercasedString ?? ""
        return account
    }

    public func getSigningKeys(request: Wholecare_Identity_V1_GetSigningKeysRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_GetSigningKeysResponse {
        var response = Wholecare_Identity_V1_GetSigningKeysResponse()
        response.keys = issuer.keyring.keys.enumerated().map { index, entry in
            var key = Wholecare_Identity_V1_SigningKey()
            key.kid = entry.kid
            key.algorithm = "EdDSA"
            key.publicKey = Data(entry.key.publicKey.rawRepresentation)
            key.current = index == 0
            return key
        }
        return response
    }

    static let refreshRefused = RPCError(code: .unauthenticated, message: "the refresh token is invalid, expired or revoked; sign in again")

    /// Access and refresh tokens for a new session, or one continuing `family`; nil if the
    /// family was revoked meanwhile, or `passwordHash` (what a sign-in checked) is no longer
    /// the account's. `event` is recorded with the refresh token, in one transaction.
    private func session(for account: AccountRow, family: UUID, passwordHash: String? = nil,
                         event: String? = nil) async throws -> Wholecare_Identity_V1_SignInResponse? {
        let current = now()
        let refresh = issuer.newRefreshToken()
        guard try await store.storeRefreshToken(
            accountID: account.id, familyID: family, hash: refresh.hash, expiresAt: current.addingTimeInterval(issuer.refreshTokenLifetime),
            passwordHash: passwordHash, event: event.map { (account.id, $0, "") })
        else { return nil }
        return try response(for: account, refreshToken: refresh.token, now: current)
    }

    /// A session's reply: a new access token for `account`, with its stored refresh token.
    private func response(for account: AccountRow, refreshToken: String, now current: Date) throws -> Wholecare_Identity_V1_SignInResponse {
        let access = try issuer.accessToken(
            subject: account.id.lowercasedString, kind: Self.principalKind(account.kind), roles: account.roles,
            organisation: account.organisationID, scopes: [], now: current)
        var response = Wholecare_Identity_V1_SignInResponse()
        response.accessToken = access.token
        response.refreshToken = refreshToken
        response.expiresInSeconds = UInt32(issuer.accessTokenLifetime)
        response.refreshExpiresInSeconds = UInt32(clamping: Int(issuer.refreshTokenLifetime))
        response.tokenType = "Bearer"
        response.account = Self.proto(account)
        return response
    }

    // MARK: - Administration

    public func createOrganisation(request: Wholecare_Identity_V1_CreateOrganisationRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Organisation {
        let principal = try context.principal()
        guard principal.isPlatformAdministrator else { throw Self.denied("only platform administrators create organisations") }
        let name = try Validate.text(request.name, field: "name", max: 200)
        guard let kind = Self.organisationKind(request.kind) else {
            throw RPCError.invalidArgument(field: "kind", "choose an organisation kind")
        }
        guard let row = try await store.createOrganisation(name: name, kind: kind) else {
            throw RPCError(code: .alreadyExists, message: "an organisation with this name already exists")
        }
        return Self.proto(row)
    }

    public func listOrganisations(request: Wholecare_Identity_V1_ListOrganisationsRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListOrganisationsResponse {
        let principal = try context.principal()
        guard principal.kind == .administrator || principal.kind == .professional || principal.kind == .service else {
            throw Self.denied("organisation lists are for professionals and administrators")
        }
        var response = Wholecare_Identity_V1_ListOrganisationsResponse()
        response.organisations = try await store.organisations().map(Self.proto)
        return response
    }

    public func createProfessional(request: Wholecare_Identity_V1_CreateProfessionalRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Account {
        let principal = try context.principal()
        let organisation = try Validate.uuid(request.organisationID, field: "organisation_id")
        try Self.requireOrganisationAdmin(principal, of: organisation)
        guard try await store.organisation(id: organisation) != nil else {
            throw RPCError(code: .notFound, message: "no such organisation")
        }
        let email = try Validate.email(request.email)
        let name = try Validate.text(request.displayName, field: "display_name", max: 200)
        let roles = Array(Set(request.roles))
        guard !roles.isEmpty else { throw RPCError.invalidArgument(field: "roles", "give at least one role") }
        for role in roles where !Principal.Role.all.contains(role) || role == Principal.Role.platformAdmin {
            throw RPCError.invalidArgument(field: "roles", "unknown professional role \(role.prefix(40))")
        }
        if let problem = passwordPolicy.problem(with: request.initialPassword, email: email) {
            throw RPCError.invalidArgument(field: "initial_password", problem.message)
        }
        let hash = try await hashing.hash(request.initialPassword)
        guard let account = try await store.createAccount(
            kind: "professional", email: email, displayName: name, passwordHash: hash, organisationID: organisation, roles: roles)
        else { throw RPCError(code: .alreadyExists, message: "an account with this e-mail address already exists") }
        return Self.proto(account)
    }

    public func createAdministrator(request: Wholecare_Identity_V1_CreateAdministratorRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Account {
        let principal = try context.principal()
        guard principal.isPlatformAdministrator else { throw Self.denied("only platform administrators create administrators") }
        let email = try Validate.email(request.email)
        let name = try Validate.text(request.displayName, field: "display_name", max: 200)
        if let problem = passwordPolicy.problem(with: request.initialPassword, email: email) {
            throw RPCError.invalidArgument(field: "initial_password", problem.message)
        }
        let hash = try await hashing.hash(request.initialPassword)
        guard let account = try await store.createAccount(
            kind: "administrator", email: email, displayName: name, passwordHash: hash, roles: [Principal.Role.platformAdmin])
        else { throw RPCError(code: .alreadyExists, message: "an account with this e-mail address already exists") }
        return Self.proto(account)
    }

    public func createProviderClient(request: Wholecare_Identity_V1_CreateProviderClientRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_CreateProviderClientResponse {
        let principal = try context.principal()
        let organisation = try Validate.uuid(request.organisationID, field: "organisation_id")
        try Self.requireOrganisationAdmin(principal, of: organisation)
        guard try await store.organisation(id: organisation) != nil else {
            throw RPCError(code: .notFound, message: "no such organisation")
        }
        let name = try Validate.text(request.name, field: "name", max: 200)
        let clientID = "psc_" + Base64URL.encode(SecureRandom.bytes(12))
        let secret = "pss_" + SecureRandom.token(byteCount: 32)
        try await store.createClient(clientID: clientID, secretHash: Digest.sha256(secret), kind: "provider_system",
                                     name: name, organisationID: organisation)
        var response = Wholecare_Identity_V1_CreateProviderClientResponse()
        response.clientID = clientID
        response.clientSecret = secret
        response.organisationID = organisation.lowercasedString
        return response
    }

    // MARK: - Care relationships

    public func assignCareRelationship(request: Wholecare_Identity_V1_AssignCareRelationshipRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_CareRelationship {
        let principal = try context.principal()
        let person = try Validate.uuid(request.personID, field: "person_id")
        let professionalID = try Validate.uuid(request.professionalID, field: "professional_id")
        guard let role = Self.relationshipRole(request.role) else {
            throw RPCError.invalidArgument(field: "role", "must be CARE_COORDINATOR or CARE_TEAM_MEMBER")
        }
        guard let professional = try await store.account(id: professionalID), professional.kind == "professional",
              let organisation = professional.organisationID
        else { throw RPCError(code: .notFound, message: "no such professional") }
        guard let personAccount = try await store.account(id: person), personAccount.kind == "service_user" else {
            throw RPCError(code: .notFound, message: "no such person")
        }
        try await requireRelationshipManager(principal, organisation: organisation, person: person, role: role)
        guard let callerID = principal.subjectID else { throw Self.denied("not allowed") }
        switch try await store.assignRelationship(person: person, professional: professionalID, organisation: organisation,
                                                  role: role, createdBy: callerID) {
        case .created(let row): return Self.proto(row)
        case .duplicate: throw RPCError(code: .alreadyExists, message: "this professional already has this role for this person")
        case .coordinatorExists:
            throw RPCError(code: .failedPrecondition, message: "this person already has a care coordinator; end that relationship first")
        }
    }

    public func endCareRelationship(request: Wholecare_Identity_V1_EndCareRelationshipRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_CareRelationship {
        let principal = try context.principal()
        let id = try Validate.uuid(request.relationshipID, field: "relationship_id")
        guard let existing = try await store.relationship(id: id) else { throw RPCError(code: .notFound, message: "no such relationship") }
        try await requireRelationshipManager(principal, organisation: existing.organisationID, person: existing.personID, role: existing.role)
        guard let ended = try await store.endRelationship(id: id) else { throw RPCError(code: .notFound, message: "no such relationship") }
        return Self.proto(ended)
    }

    /// Platform admins, the professional's organisation's admins, or the person's care
    /// coordinator (for care-team members only) manage relationships.
    private func requireRelationshipManager(_ principal: Principal, organisation: UUID, person: UUID, role: String) async throws {
        if principal.isPlatformAdministrator { return }
        if principal.kind == .professional, principal.organisationID == organisation,
           principal.roles.contains(Principal.Role.organisationAdmin) { return }
        if principal.kind == .professional, role == "care_team_member", let me = principal.subjectID,
           try await store.isCoordinator(professional: me, of: person) { return }
        throw Self.denied("only administrators of the organisation or the person's care coordinator manage care relationships")
    }

    public func listCaseload(request: Wholecare_Identity_V1_ListCaseloadRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListCaseloadResponse {
        let principal = try context.principal()
        let professional: UUID
        if request.professionalID.isEmpty {
            guard principal.kind == .professional, let me = principal.subjectID else {
                throw Self.denied("only professionals have a caseload")
            }
            professional = me
        } else {
            professional = try Validate.uuid(request.professionalID, field: "professional_id")
            if principal.subjectID != professional {
                guard let account = try await store.account(id: professional), let organisation = account.organisationID else {
                    throw RPCError(code: .notFound, message: "no such professional")
                }
                try Self.requireOrganisationAdmin(principal, of: organisation)
            }
        }
        var response = Wholecare_Identity_V1_ListCaseloadResponse()
        response.people = try await store.caseload(professional: professional).map { row in
            var entry = Wholecare_Identity_V1_CaseloadEntry()
            entry.personID = row.personID.lowercasedString
            entry.displayName = row.personName
            entry.role = row.role == "care_coordinator" ? .careCoordinator : .careTeamMember
            entry.relationshipID = row.id.lowercasedString
            return entry
        }
        return response
    }

    public func listCareTeam(request: Wholecare_Identity_V1_ListCareTeamRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListCareTeamResponse {
        let principal = try context.principal()
        let person = try Validate.uuid(request.personID, field: "person_id")
        try await authorizer.require(principal, .readCareTeam, person: person)
        var response = Wholecare_Identity_V1_ListCareTeamResponse()
        response.members = try await store.careTeam(person: person).map(Self.proto)
        return response
    }

    // MARK: - Consent

    public func grantConsent(request: Wholecare_Identity_V1_GrantConsentRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Consent {
        let person = try Self.requireSelf(try context.principal())
        let professional = request.granteeProfessionalID.isEmpty ? nil : try Validate.uuid(request.granteeProfessionalID, field: "grantee_professional_id")
        let organisation = request.granteeOrganisationID.isEmpty ? nil : try Validate.uuid(request.granteeOrganisationID, field: "grantee_organisation_id")
        guard (professional == nil) != (organisation == nil) else {
            throw RPCError.invalidArgument(field: "grantee_professional_id", "give exactly one grantee: a professional or an organisation")
        }
        if let professional {
            guard let account = try await store.account(id: professional), account.kind == "professional" else {
                throw RPCError(code: .notFound, message: "no such professional")
            }
        }
        if let organisation, try await store.organisation(id: organisation) == nil {
            throw RPCError(code: .notFound, message: "no such organisation")
        }
        let categories = try Self.categories(request.categories, field: "categories")
        let expiry = try Validate.optionalFutureDate(request.expiresAt, field: "expires_at", now: now())
        let row = try await store.grantConsent(person: person, professional: professional, organisation: organisation,
                                               categories: categories, expiresAt: expiry)
        return Self.proto(row)
    }

    public func revokeConsent(request: Wholecare_Identity_V1_RevokeConsentRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_Consent {
        let person = try Self.requireSelf(try context.principal())
        let id = try Validate.uuid(request.consentID, field: "consent_id")
        guard let existing = try await store.consent(id: id), existing.personID == person else {
            throw RPCError(code: .notFound, message: "no such consent")
        }
        guard let row = try await store.revokeConsent(id: id) else { throw RPCError(code: .notFound, message: "no such consent") }
        return Self.proto(row)
    }

    public func listConsents(request: Wholecare_Identity_V1_ListConsentsRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListConsentsResponse {
        let me = try Self.requireSelf(try context.principal())
        if !request.personID.isEmpty, try Validate.uuid(request.personID, field: "person_id") != me {
            throw Self.denied("people see only their own consents")
        }
        var response = Wholecare_Identity_V1_ListConsentsResponse()
        response.consents = try await store.consents(person: me).map(Self.proto)
        return response
    }

    // MARK: - Carers

    public func inviteCarer(request: Wholecare_Identity_V1_InviteCarerRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_InviteCarerResponse {
        let principal = try context.principal()
        guard principal.kind == .serviceUser, let person = principal.subjectID else {
            throw Self.denied("only service users invite carers")
        }
        let email = try Validate.email(request.carerEmail)
        guard !request.scopes.isEmpty else { throw RPCError.invalidArgument(field: "scopes", "give at least one scope") }
        var scopes: [String] = []
        for scope in request.scopes {
            guard let category = Self.category(scope.category) else {
                throw RPCError.invalidArgument(field: "scopes", "each scope needs a category")
            }
            scopes.append("\(category.rawValue):\(scope.write ? "write" : "read")")
        }
        let expiry = try Validate.optionalFutureDate(request.expiresAt, field: "expires_at", now: now())
        let code = "wci_" + SecureRandom.token(byteCount: 24)
        let row = try await store.inviteCarer(person: person, email: email, codeHash: Digest.sha256(code),
                                              codeExpiresAt: now().addingTimeInterval(7 * 86_400), scopes: scopes, expiresAt: expiry)
        var response = Wholecare_Identity_V1_InviteCarerResponse()
        response.grant = Self.proto(row)
        response.invitationCode = code
        return response
    }

    public func acceptCarerInvitation(request: Wholecare_Identity_V1_AcceptCarerInvitationRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_CarerGrant {
        let principal = try context.principal()
        guard principal.isPerson, let carerID = principal.subjectID, let carer = try await store.account(id: carerID) else {
            throw Self.denied("only people accept carer invitations")
        }
        let invalid = RPCError(code: .notFound, message: "the invitation code is not valid (wrong, used, revoked or expired)")
        guard request.invitationCode.hasPrefix("wci_"), request.invitationCode.count < 100,
              let grant = try await store.grant(codeHash: Digest.sha256(request.invitationCode)),
              grant.carerID == nil, grant.revokedAt == nil, grant.codeExpiresAt > now()
        else { throw invalid }
        guard grant.invitedEmail.lowercased() == carer.email.lowercased() else {
            throw Self.denied("this invitation was sent to a different e-mail address")
        }
        guard grant.personID != carerID else { throw RPCError.invalidArgument(field: "invitation_code", "you cannot be your own carer") }
        guard let accepted = try await store.acceptGrant(id: grant.id, carer: carerID) else { throw invalid }
        return Self.proto(accepted)
    }

    public func revokeCarerAccess(request: Wholecare_Identity_V1_RevokeCarerAccessRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_CarerGrant {
        let principal = try context.principal()
        let id = try Validate.uuid(request.grantID, field: "grant_id")
        guard let grant = try await store.grant(id: id),
              principal.subjectID == grant.personID || (grant.carerID != nil && principal.subjectID == grant.carerID)
        else { throw RPCError(code: .notFound, message: "no such carer grant") }
        guard let revoked = try await store.revokeGrant(id: id) else { throw RPCError(code: .notFound, message: "no such carer grant") }
        return Self.proto(revoked)
    }

    public func listCarerGrants(request: Wholecare_Identity_V1_ListCarerGrantsRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListCarerGrantsResponse {
        let me = try Self.requireSelf(try context.principal())
        var response = Wholecare_Identity_V1_ListCarerGrantsResponse()
        response.myCarers = try await store.grants(person: me).map(Self.proto)
        response.peopleICareFor = try await store.grants(carer: me).map(Self.proto)
        return response
    }

    // MARK: - Events and internal facts

    public func listAuthEvents(request: Wholecare_Identity_V1_ListAuthEventsRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListAuthEventsResponse {
        let principal = try context.principal()
        guard let me = principal.subjectID, principal.kind != .providerSystem else {
            throw Self.denied("only people have a sign-in history")
        }
        let limit = request.limit == 0 ? 50 : Int(min(request.limit, 200))
        var response = Wholecare_Identity_V1_ListAuthEventsResponse()
        response.events = try await store.events(accountID: me, limit: limit).map { row in
            var event = Wholecare_Identity_V1_AuthEvent()
            event.id = String(row.id)
            event.event = row.event
            event.occurredAt = Timestamp.format(row.occurredAt)
            event.detail = row.detail
            return event
        }
        return response
    }

    public func getAccessFacts(request: Wholecare_Identity_V1_GetAccessFactsRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_AccessFacts {
        let caller = try context.caller()
        guard (caller.relayedBy ?? caller.principal).kind == .service else {
            throw Self.denied("access facts are for WholeCare services")
        }
        let subject = try Validate.uuid(request.subjectID, field: "subject_id")
        let person = try Validate.uuid(request.personID, field: "person_id")
        let organisation = request.subjectOrganisationID.isEmpty ? nil : try Validate.uuid(request.subjectOrganisationID, field: "subject_organisation_id")
        let facts = try await store.facts(subject: subject, organisation: organisation, person: person)
        var response = Wholecare_Identity_V1_AccessFacts()
        response.subjectID = request.subjectID
        response.personID = request.personID
        response.personExists = facts.personExists
        response.relationships = facts.relationships.map { $0 == "care_coordinator" ? .careCoordinator : .careTeamMember }
        response.consentedCategories = facts.consentedCategories.compactMap { DataCategory(rawValue: $0).map(Self.protoCategory) }
        response.carerScopes = facts.carerScopes.compactMap { text in
            let parts = text.split(separator: ":")
            guard parts.count == 2, let category = DataCategory(rawValue: String(parts[0])) else { return nil }
            var scope = Wholecare_Identity_V1_CarerScope()
            scope.category = Self.protoCategory(category)
            scope.write = parts[1] == "write"
            return scope
        }
        response.organisationHasRelationship = facts.organisationHasRelationship
        return response
    }

    public func getDisplayNames(request: Wholecare_Identity_V1_GetDisplayNamesRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_GetDisplayNamesResponse {
        let caller = try context.caller()
        guard (caller.relayedBy ?? caller.principal).kind == .service else {
            throw Self.denied("display names are for WholeCare services")
        }
        guard request.accountIds.count <= 500 else { throw RPCError.invalidArgument(field: "account_ids", "at most 500") }
        let ids = try request.accountIds.map { try Validate.uuid($0, field: "account_ids") }
        var response = Wholecare_Identity_V1_GetDisplayNamesResponse()
        for (id, name) in try await store.displayNames(ids) { response.names[id.lowercasedString] = name }
        return response
    }

    public func listCareTeamChanges(request: Wholecare_Identity_V1_ListCareTeamChangesRequest, context: ServerContext) async throws -> Wholecare_Identity_V1_ListCareTeamChangesResponse {
        let caller = try context.caller()
        // Only the services that keep a copy (records), in their own name: a service
        // relaying a person's call is acting for that person, who may not read everyone's
        // care team.
        guard caller.relayedBy == nil, caller.principal.kind == .service, careTeamFeedClients.contains(caller.principal.subject) else {
            throw Self.denied("the care-team change feed is for the WholeCare services that keep care teams")
        }
        guard request.afterSequence >= 0 else { throw RPCError.invalidArgument(field: "after_sequence", "must not be negative") }
        guard (0...1000).contains(request.pageSize) else { throw RPCError.invalidArgument(field: "page_size", "must be between 0 and 1000") }
        let size = request.pageSize == 0 ? 500 : Int(request.pageSize)
        let rows = try await store.careTeamChanges(after: request.afterSequence, limit: size + 1)
        var response = Wholecare_Identity_V1_ListCareTeamChangesResponse()
        response.changes = rows.prefix(size).map { sequence, row in
            var change = Wholecare_Identity_V1_CareTeamChange()
            change.sequence = sequence
            change.relationship = Self.proto(row)
            return change
        }
        response.more = rows.count > size
        return response
    }

    // MARK: - Helpers

    static func policyFacts(_ facts: IdentityStore.Facts) -> AccessFacts {
        var scopes: [DataCategory: Bool] = [:]
        for text in facts.carerScopes {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let category = DataCategory(rawValue: String(parts[0])) else { continue }
            scopes[category] = (scopes[category] ?? false) || parts[1] == "write"
        }
        return AccessFacts(
            personExists: facts.personExists,
            relationships: Set(facts.relationships.compactMap(AccessFacts.Relationship.init(rawValue:))),
            consentedCategories: Set(facts.consentedCategories.compactMap(DataCategory.init(rawValue:))),
            carerScopes: scopes, organisationHasRelationship: facts.organisationHasRelationship)
    }

    static func denied(_ reason: String) -> RPCError { RPCError(code: .permissionDenied, message: reason) }

    static func requireSelf(_ principal: Principal) throws -> UUID {
        guard principal.isPerson, let id = principal.subjectID else { throw denied("only the person themself may do this") }
        return id
    }

    static func requireOrganisationAdmin(_ principal: Principal, of organisation: UUID) throws {
        if principal.isPlatformAdministrator { return }
        if principal.kind == .professional, principal.organisationID == organisation,
           principal.roles.contains(Principal.Role.organisationAdmin) { return }
        throw denied("only administrators of the organisation (or of the platform) may do this")
    }

    static func categories(_ values: [Wholecare_Identity_V1_DataCategory], field: String) throws -> [String] {
        guard !values.isEmpty else { throw RPCError.invalidArgument(field: field, "name at least one category") }
        var out: [String] = []
        for value in values {
            guard let category = category(value) else { throw RPCError.invalidArgument(field: field, "unknown category") }
            if !out.contains(category.rawValue) { out.append(category.rawValue) }
        }
        return out
    }

    static func category(_ value: Wholecare_Identity_V1_DataCategory) -> DataCategory? {
        switch value {
        case .record: return .record
        case .budget: return .budget
        case .messages: return .messages
        case .appointments: return .appointments
        case .reminders: return .reminders
        default: return nil
        }
    }

    static func protoCategory(_ category: DataCategory) -> Wholecare_Identity_V1_DataCategory {
        switch category {
        case .record: return .record
        case .budget: return .budget
        case .messages: return .messages
        case .appointments: return .appointments
        case .reminders: return .reminders
        }
    }

    static func principalKind(_ kind: String) -> Principal.Kind {
        switch kind {
        case "service_user": return .serviceUser
        case "carer": return .carer
        case "professional": return .professional
        default: return .administrator
        }
    }

    static func protoKind(_ kind: Principal.Kind) -> Wholecare_Identity_V1_SubjectKind {
        switch kind {
        case .serviceUser: return .serviceUser
        case .carer: return .carer
        case .professional: return .professional
        case .providerSystem: return .providerSystem
        case .administrator: return .administrator
        case .service: return .service
        }
    }

    static func organisationKind(_ kind: Wholecare_Identity_V1_OrganisationKind) -> String? {
        switch kind {
        case .gpPractice: return "gp_practice"
        case .pharmacy: return "pharmacy"
        case .homeCareAgency: return "home_care_agency"
        case .hospital: return "hospital"
        case .council: return "council"
        case .careHome: return "care_home"
        case .other: return "other"
        default: return nil
        }
    }

    static func relationshipRole(_ role: Wholecare_Identity_V1_RelationshipRole) -> String? {
        switch role {
        case .careCoordinator: return "care_coordinator"
        case .careTeamMember: return "care_team_member"
        default: return nil
        }
    }

    static func proto(_ row: AccountRow) -> Wholecare_Identity_V1_Account {
        var account = Wholecare_Identity_V1_Account()
        account.id = row.id.lowercasedString
        account.kind = protoKind(principalKind(row.kind))
        account.email = row.email
        account.displayName = row.displayName
        account.roles = row.roles
        account.organisationID = row.organisationID?.lowercasedString ?? ""
        account.createdAt = Timestamp.format(row.createdAt)
        return account
    }

    static func proto(_ row: OrganisationRow) -> Wholecare_Identity_V1_Organisation {
        var organisation = Wholecare_Identity_V1_Organisation()
        organisation.id = row.id.lowercasedString
        organisation.name = row.name
        organisation.kind = Wholecare_Identity_V1_OrganisationKind.allCases.first { organisationKind($0) == row.kind } ?? .other
        organisation.createdAt = Timestamp.format(row.createdAt)
        return organisation
    }

    static func proto(_ row: RelationshipRow) -> Wholecare_Identity_V1_CareRelationship {
        var relationship = Wholecare_Identity_V1_CareRelationship()
        relationship.id = row.id.lowercasedString
        relationship.personID = row.personID.lowercasedString
        relationship.professionalID = row.professionalID.lowercasedString
        relationship.organisationID = row.organisationID.lowercasedString
        relationship.role = row.role == "care_coordinator" ? .careCoordinator : .careTeamMember
        relationship.startedAt = Timestamp.format(row.startedAt)
        relationship.endedAt = row.endedAt.map(Timestamp.format) ?? ""
        relationship.professionalName = row.professionalName
        return relationship
    }

    static func proto(_ row: ConsentRow) -> Wholecare_Identity_V1_Consent {
        var consent = Wholecare_Identity_V1_Consent()
        consent.id = row.id.lowercasedString
        consent.personID = row.personID.lowercasedString
        consent.granteeProfessionalID = row.granteeProfessionalID?.lowercasedString ?? ""
        consent.granteeOrganisationID = row.granteeOrganisationID?.lowercasedString ?? ""
        consent.categories = row.categories.compactMap { DataCategory(rawValue: $0).map(protoCategory) }
        consent.grantedAt = Timestamp.format(row.grantedAt)
        consent.expiresAt = row.expiresAt.map(Timestamp.format) ?? ""
        consent.revokedAt = row.revokedAt.map(Timestamp.format) ?? ""
        consent.granteeName = row.granteeName
        return consent
    }

    static func proto(_ row: CarerGrantRow) -> Wholecare_Identity_V1_CarerGrant {
        var grant = Wholecare_Identity_V1_CarerGrant()
        grant.id = row.id.lowercasedString
        grant.personID = row.personID.lowercasedString
        grant.carerID = row.carerID?.lowercasedString ?? ""
        grant.scopes = row.scopes.compactMap { text in
            let parts = text.split(separator: ":")
            guard parts.count == 2, let category = DataCategory(rawValue: String(parts[0])) else { return nil }
            var scope = Wholecare_Identity_V1_CarerScope()
            scope.category = protoCategory(category)
            scope.write = parts[1] == "write"
            return scope
        }
        grant.invitedEmail = row.invitedEmail
        grant.createdAt = Timestamp.format(row.createdAt)
        grant.acceptedAt = row.acceptedAt.map(Timestamp.format) ?? ""
        grant.expiresAt = row.expiresAt.map(Timestamp.format) ?? ""
        grant.revokedAt = row.revokedAt.map(Timestamp.format) ?? ""
        grant.carerName = row.carerName ?? ""
        grant.personName = row.personName
        return grant
    }
}
