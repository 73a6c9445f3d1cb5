import Auth
import Contracts
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import RPC

/// Registers routes and remembers them for the OpenAPI consistency test. Every route is
/// wrapped so that, before its handler runs, the caller is authenticated (where the
/// document says the operation is secured) and the request is checked against the
/// operation's parameters and body schema from the OpenAPI document.
struct Registrar {
    let router: Router<GatewayContext>
    let api: API
    let rules: [String: OperationRules]
    private(set) var specs: [RouteSpec] = []

    init(router: Router<GatewayContext>, api: API, rules: [String: OperationRules]) {
        self.router = router
        self.api = api
        self.rules = rules
    }

    mutating func add(_ method: HTTPRequest.Method, _ path: String, _ operationID: String,
                      _ handler: @escaping @Sendable (Request, GatewayContext) async throws -> Response) {
        specs.append(RouteSpec(method: method.rawValue, path: path, operationID: operationID))
        guard let rules = rules[operationID] else {
            // A route the document does not describe: the consistency test fails on it.
            router.on(RouterPath(path), method: method, use: handler)
            return
        }
        let api = self.api
        router.on(RouterPath(path), method: method) { request, context in
            var context = context
            // Authenticated once; the handler's `api.caller` reuses it.
            if rules.secured { context.caller = try await api.caller(request, context) }
            let checked = try await rules.validate(request, context: context, maxBodyBytes: api.settings.maxBodyBytes)
            return try await handler(checked, context)
        }
    }
}

extension API {
    /// Every `/v1` route.
    func register(on registrar: inout Registrar) {
        registerAuth(&registrar)
        registerRecord(&registrar)
        registerConsent(&registrar)
        registerBudgets(&registrar)
        registerProfessional(&registrar)
        registerAdmin(&registrar)
    }

    static func created(_ message: some SwiftProtobuf.Message) throws -> Response { try ProtoJSON.response(message, status: .created) }
    static func ok(_ message: some SwiftProtobuf.Message) throws -> Response { try ProtoJSON.response(message) }
    static var noContent: Response { Response(status: .noContent) }

    /// For routes whose budget is in the path: the ledger calls an unknown budget bad input
    /// (INVALID_ARGUMENT on budget_id); over HTTP the resource in the path does not exist.
    static func budgetInPath(_ call: () async throws -> Response) async throws -> Response {
        do {
            return try await call()
        } catch let error as RPCError where error.code == .invalidArgument && error.metadata[MetadataKey.field] == "budget_id" {
            throw Problem(status: .notFound, type: "not-found", title: "Not Found", detail: "no such budget")
        }
    }

    // MARK: - Auth

    func registerAuth(_ r: inout Registrar) {
        let api = self
        r.add(.post, "/v1/auth/register", "register") { request, context in
            var body = try await api.body(request, context, Wholecare_Identity_V1_RegisterRequest.self)
            try api.rateLimit(request, context, account: body.email)
            if body.kind != .carer { body.kind = .serviceUser }
            let session = try await api.identity.register(body, options: api.options(request, context))
            return try api.sessionResponse(session, request: request, status: .created)
        }
        r.add(.post, "/v1/auth/sign-in", "signIn") { request, context in
            let body = try await api.body(request, context, Wholecare_Identity_V1_SignInRequest.self)
            try api.rateLimit(request, context, account: body.email)
            let session = try await api.identity.signIn(body, options: api.options(request, context))
            return try api.sessionResponse(session, request: request, status: .ok)
        }
        r.add(.post, "/v1/auth/refresh", "refresh") { request, context in
            var body = try await api.body(request, context, Wholecare_Identity_V1_RefreshRequest.self)
            var fromCookie = false
            if body.refreshToken.isEmpty, let cookie = request.cookies[Credentials.refreshCookie]?.value, !cookie.isEmpty {
                // The browser's own session: with its CSRF token, or another page of the same
                // site could spend the token unseen, and the browser's next refresh (of the
                // spent one) would sign it out as if the token had been stolen.
                try Credentials.requireCSRFToken(request)
                body.refreshToken = cookie
                fromCookie = true
            }
            guard !body.refreshToken.isEmpty else {
                throw Problem(status: .unauthorized, type: "unauthenticated", title: "Unauthorized",
                              detail: "no refresh token (in the body or the wc_refresh cookie); sign in again")
            }
            let session = try await api.identity.refresh(body, options: api.options(request, context))
            // A token spent from the cookie is replaced in the cookie, whatever was asked.
            return try api.sessionResponse(session, request: request, status: .ok, cookies: fromCookie)
        }
        r.add(.post, "/v1/auth/sign-out", "signOut") { request, context in
            // The access token, if it is still good. A browser's access cookie lapses long
            // before its refresh cookie: the session can then be ended with the refresh
            // token alone (holding it, one could refresh and sign out anyway).
            var caller: Principal?
            var unauthenticated: Problem?
            do {
                caller = try await api.caller(request, context)
            } catch let problem as Problem where problem.status == .unauthorized {
                unauthenticated = problem
            }
            var body = try await api.body(request, context, Wholecare_Identity_V1_SignOutRequest.self)
            if body.refreshToken.isEmpty, let cookie = request.cookies[Credentials.refreshCookie]?.value, !cookie.isEmpty {
                // Without a good access token the cookie is the only credential: CSRF as for refresh.
                if caller == nil { try Credentials.requireCSRFToken(request) }
                body.refreshToken = cookie
            }
            if caller == nil, body.refreshToken.isEmpty, let unauthenticated { throw unauthenticated }
            let cleared = Credentials.clearedCookies(secure: api.settings.secureCookies)
            do {
                _ = try await api.identity.signOut(body, options: api.options(request, context, token: caller?.token))
            } catch {
                // The browser forgets the session whatever identity answered (refused, or
                // not reachable): the problem carries the cleared cookies too.
                let known = (error as? Problem) ?? (error as? RPCError).map(Problem.init)
                if known == nil {
                    api.logger.error("unhandled error in sign-out", metadata: [
                        "request_id": "\(context.requestID)", "error": "\(type(of: error))"])
                }
                var problem = known ?? Problem.internal
                for cookie in cleared { problem.headers.append(HTTPField(name: .setCookie, value: cookie.description)) }
                throw problem
            }
            var response = API.noContent
            for cookie in cleared { response.setCookie(cookie) }
            return response
        }
        r.add(.get, "/v1/me", "getMe") { request, context in
            let caller = try await api.caller(request, context)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.whoAmI, .init(), options: api.options(request, context, token: caller.token))
        }
        r.add(.put, "/v1/me/password", "changePassword") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_ChangePasswordRequest.self)
            let changed = try await api.identity.changePassword(body, options: api.options(request, context, token: caller.token))
            return try api.sessionResponse(changed.session, request: request, status: .ok)
        }
        r.add(.get, "/v1/me/sign-in-history", "listSignInHistory") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Identity_V1_ListAuthEventsRequest()
            body.limit = try api.pageSize(request, max: 200)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listAuthEvents, body, options: api.options(request, context, token: caller.token))
        }
    }

    /// Tokens in the body; for browsers that ask (`X-Session: cookie`), or with `cookies`,
    /// also as cookies.
    func sessionResponse(_ session: Wholecare_Identity_V1_SignInResponse, request: Request, status: HTTPResponse.Status,
                         cookies: Bool = false) throws -> Response {
        var response = try ProtoJSON.response(session, status: status)
        if cookies || request.headers[HTTPField.Name("X-Session")!]?.lowercased() == "cookie" {
            // The refresh cookie lives as long as the refresh token (30 days if identity did not say).
            let refreshSeconds = session.refreshExpiresInSeconds > 0 ? Int(session.refreshExpiresInSeconds) : 30 * 86_400
            for cookie in Credentials.sessionCookies(access: session.accessToken, accessSeconds: Int(session.expiresInSeconds),
                                                     refresh: session.refreshToken, refreshSeconds: refreshSeconds,
                                                     secure: settings.secureCookies) {
                response.setCookie(cookie)
                // Also in a header, for a front end on another origin of the same site,
                // whose script cannot read the gateway's cookie but must echo the token.
                if cookie.name == Credentials.csrfCookie { response.headers[.xCSRFToken] = cookie.value }
            }
        }
        return response
    }

    // MARK: - The person's own record

    func registerRecord(_ r: inout Registrar) {
        let api = self
        func personScoped(_ path: String, _ operation: String, _ person: @escaping @Sendable (Request, GatewayContext, Principal) throws -> String,
                          _ r: inout Registrar, method: HTTPRequest.Method = .get,
                          _ body: @escaping @Sendable (Request, GatewayContext, Principal, String) async throws -> Response) {
            r.add(method, path, operation) { request, context in
                let caller = try await api.caller(request, context)
                return try await body(request, context, caller, try person(request, context, caller))
            }
        }
        let me: @Sendable (Request, GatewayContext, Principal) throws -> String = { _, _, caller in
            guard caller.isPerson else {
                throw Problem(status: .forbidden, type: "permission-denied", title: "Forbidden", detail: "only people have a record of their own")
            }
            return caller.subject
        }
        let person: @Sendable (Request, GatewayContext, Principal) throws -> String = { _, context, _ in try api.pathID(context, "person_id") }
        for (prefix, resolve, suffix) in [("/v1/me", me, "Mine"), ("/v1/people/:person_id", person, "OfPerson")] {
            personScoped(prefix + "/record", "getRecordSummary" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Records_V1_GetSummaryRequest()
                body.personID = id
                body.purpose = api.query(request, "purpose") ?? ""
                return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.getSummary, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/record/entries", "listRecordEntries" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Records_V1_ListEntriesRequest()
                body.personID = id
                body.pageSize = try api.pageSize(request, max: 200)
                body.cursor = api.query(request, "cursor") ?? ""
                body.effectiveFrom = api.query(request, "from") ?? ""
                body.effectiveTo = api.query(request, "to") ?? ""
                body.purpose = api.query(request, "purpose") ?? ""
                if let kind = api.query(request, "kind") {
                    let kinds: [String: Wholecare_Records_V1_EntryKind] = [
                        "condition": .condition, "medication": .medication, "allergy": .allergy, "encounter": .encounter,
                        "observation": .observation, "care_plan": .carePlan, "goal": .goal, "note": .note, "document_reference": .documentReference,
                    ]
                    guard let value = kinds[kind] else {
                        throw Problem.badRequest("kind must be one of the entry kinds (condition, medication, …)", field: "kind")
                    }
                    body.kinds = [value]
                }
                return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.listEntries, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/record/entries", "addRecordEntry" + suffix, resolve, &r, method: .post) { request, context, caller, id in
                var body = Wholecare_Records_V1_AddEntryRequest()
                body.personID = id
                body.entry = try await api.body(request, context, Wholecare_Records_V1_EntryInput.self)
                body.purpose = api.query(request, "purpose") ?? ""
                return try API.created(try await api.records.addEntry(body, options: api.options(request, context, token: caller.token)))
            }
            personScoped(prefix + "/record/medications", "listMedications" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Records_V1_ListMedicationsRequest()
                body.personID = id
                return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.listMedications, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/details", "getDetails" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Records_V1_GetDetailsRequest()
                body.personID = id
                return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.getDetails, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/details", "updateDetails" + suffix, resolve, &r, method: .put) { request, context, caller, id in
                var body = try await api.body(request, context, Wholecare_Records_V1_UpdateDetailsRequest.self)
                guard body.personID.isEmpty || body.personID.lowercased() == id else {
                    throw Problem.badRequest("person_id in the body must match the path", field: "person_id")
                }
                body.personID = id
                return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.updateDetails, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/budgets", "listBudgets" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Ledger_V1_ListBudgetsRequest()
                body.personID = id
                return try await api.relay(api.ledger.client, Wholecare_Ledger_V1_Ledger.Methods.listBudgets, body, options: api.options(request, context, token: caller.token))
            }
            personScoped(prefix + "/care-account", "getCareAccount" + suffix, resolve, &r) { request, context, caller, id in
                var body = Wholecare_Ledger_V1_GetCareAccountRequest()
                body.personID = id
                return try await api.relay(api.ledger.client, Wholecare_Ledger_V1_Ledger.Methods.getCareAccount, body, options: api.options(request, context, token: caller.token))
            }
        }
        r.add(.get, "/v1/me/record/entries/:entry_id", "getRecordEntry") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Records_V1_GetEntryRequest()
            body.entryID = try api.pathID(context, "entry_id")
            return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.getEntry, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/me/record/entries/:entry_id/history", "getRecordEntryHistory") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Records_V1_GetEntryHistoryRequest()
            body.entryID = try api.pathID(context, "entry_id")
            return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.getEntryHistory, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/me/record/goals/:entry_id/progress", "addGoalProgress") { request, context in
            let caller = try await api.caller(request, context)
            var body = try await api.body(request, context, Wholecare_Records_V1_AddGoalProgressRequest.self)
            body.goalEntryID = try api.pathID(context, "entry_id")
            return try API.created(try await api.records.addGoalProgress(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.get, "/v1/me/record/access-log", "listRecordAccessLog") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Records_V1_ListAccessLogRequest()
            body.personID = caller.subject
            body.pageSize = try api.pageSize(request, max: 200)
            body.cursor = api.query(request, "cursor") ?? ""
            return try await api.relay(api.records.client, Wholecare_Records_V1_Records.Methods.listAccessLog, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/me/record/fhir", "exportRecordFhir") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Records_V1_ExportFhirRequest()
            body.personID = caller.subject
            let export = try await api.records.exportFhir(body, options: api.options(request, context, token: caller.token, export: true))
            return Response(status: .ok, headers: [.contentType: "application/fhir+json"],
                            body: .init(byteBuffer: ByteBuffer(string: export.bundleJson)))
        }
    }

    // MARK: - Consent and carers

    func registerConsent(_ r: inout Registrar) {
        let api = self
        r.add(.get, "/v1/me/consents", "listConsents") { request, context in
            let caller = try await api.caller(request, context)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listConsents, .init(), options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/me/consents", "grantConsent") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_GrantConsentRequest.self)
            return try API.created(try await api.identity.grantConsent(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.delete, "/v1/me/consents/:consent_id", "revokeConsent") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Identity_V1_RevokeConsentRequest()
            body.consentID = try api.pathID(context, "consent_id")
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.revokeConsent, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/me/carers", "listCarerGrants") { request, context in
            let caller = try await api.caller(request, context)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listCarerGrants, .init(), options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/me/carer-invitations", "inviteCarer") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_InviteCarerRequest.self)
            return try API.created(try await api.identity.inviteCarer(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.post, "/v1/carer-invitations/accept", "acceptCarerInvitation") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_AcceptCarerInvitationRequest.self)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.acceptCarerInvitation, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.delete, "/v1/me/carers/:grant_id", "revokeCarerAccess") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Identity_V1_RevokeCarerAccessRequest()
            body.grantID = try api.pathID(context, "grant_id")
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.revokeCarerAccess, body, options: api.options(request, context, token: caller.token))
        }
    }

    // MARK: - Budgets

    func registerBudgets(_ r: inout Registrar) {
        let api = self
        r.add(.get, "/v1/budgets/:budget_id", "getBudget") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Ledger_V1_GetBudgetRequest()
            body.budgetID = try api.pathID(context, "budget_id")
            return try await api.relay(api.ledger.client, Wholecare_Ledger_V1_Ledger.Methods.getBudget, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/budgets/:budget_id/transactions", "listBudgetTransactions") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Ledger_V1_ListTransactionsRequest()
            body.budgetID = try api.pathID(context, "budget_id")
            body.pageSize = try api.pageSize(request, max: 500)
            body.cursor = api.query(request, "cursor") ?? ""
            return try await api.relay(api.ledger.client, Wholecare_Ledger_V1_Ledger.Methods.listTransactions, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/budgets/:budget_id/statement", "getBudgetStatement") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Ledger_V1_ExportStatementRequest()
            body.budgetID = try api.pathID(context, "budget_id")
            body.from = api.query(request, "from") ?? ""
            body.to = api.query(request, "to") ?? ""
            let export = try await api.ledger.exportStatement(body, options: api.options(request, context, token: caller.token, export: true))
            if api.query(request, "format") == "csv" || request.headers[.accept]?.contains("text/csv") == true {
                return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8",
                                                       .contentDisposition: "attachment; filename=\"statement.csv\""],
                                body: .init(byteBuffer: ByteBuffer(string: export.csv)))
            }
            return try API.ok(export)
        }
        r.add(.get, "/v1/me/care-statements", "listCareStatements") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Ledger_V1_ListCareStatementsRequest()
            body.personID = caller.subject
            return try await api.relay(api.ledger.client, Wholecare_Ledger_V1_Ledger.Methods.listCareStatements, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/budgets/:budget_id/allocations", "allocateToBudget") { request, context in
            let caller = try await api.caller(request, context)
            let key = try api.idempotencyKey(request)
            var body = try await api.body(request, context, Wholecare_Ledger_V1_AllocateRequest.self)
            body.budgetID = try api.pathID(context, "budget_id")
            body.idempotencyKey = key
            return try await API.budgetInPath { try API.created(try await api.ledger.allocate(body, options: api.options(request, context, token: caller.token, idempotencyKey: key))) }
        }
        r.add(.post, "/v1/budgets/:budget_id/invoices", "postInvoice") { request, context in
            let caller = try await api.caller(request, context)
            let key = try api.idempotencyKey(request)
            var body = try await api.body(request, context, Wholecare_Ledger_V1_PostInvoiceRequest.self)
            body.budgetID = try api.pathID(context, "budget_id")
            body.idempotencyKey = key
            return try await API.budgetInPath { try API.created(try await api.ledger.postInvoice(body, options: api.options(request, context, token: caller.token, idempotencyKey: key))) }
        }
    }

    // MARK: - Professionals

    func registerProfessional(_ r: inout Registrar) {
        let api = self
        r.add(.get, "/v1/caseload", "listCaseload") { request, context in
            let caller = try await api.caller(request, context)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listCaseload, .init(), options: api.options(request, context, token: caller.token))
        }
        r.add(.get, "/v1/people/:person_id/care-team", "listCareTeam") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Identity_V1_ListCareTeamRequest()
            body.personID = try api.pathID(context, "person_id")
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listCareTeam, body, options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/people/:person_id/budgets", "createBudget") { request, context in
            let caller = try await api.caller(request, context)
            var body = try await api.body(request, context, Wholecare_Ledger_V1_CreateBudgetRequest.self)
            body.personID = try api.pathID(context, "person_id")
            return try API.created(try await api.ledger.createBudget(body, options: api.options(request, context, token: caller.token)))
        }
    }

    // MARK: - Administration

    func registerAdmin(_ r: inout Registrar) {
        let api = self
        r.add(.get, "/v1/admin/organisations", "listOrganisations") { request, context in
            let caller = try await api.caller(request, context)
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.listOrganisations, .init(), options: api.options(request, context, token: caller.token))
        }
        r.add(.post, "/v1/admin/organisations", "createOrganisation") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_CreateOrganisationRequest.self)
            return try API.created(try await api.identity.createOrganisation(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.post, "/v1/admin/organisations/:organisation_id/professionals", "createProfessional") { request, context in
            let caller = try await api.caller(request, context)
            var body = try await api.body(request, context, Wholecare_Identity_V1_CreateProfessionalRequest.self)
            body.organisationID = try api.pathID(context, "organisation_id")
            return try API.created(try await api.identity.createProfessional(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.post, "/v1/admin/organisations/:organisation_id/clients", "createProviderClient") { request, context in
            let caller = try await api.caller(request, context)
            var body = try await api.body(request, context, Wholecare_Identity_V1_CreateProviderClientRequest.self)
            body.organisationID = try api.pathID(context, "organisation_id")
            return try API.created(try await api.identity.createProviderClient(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.post, "/v1/admin/care-relationships", "assignCareRelationship") { request, context in
            let caller = try await api.caller(request, context)
            let body = try await api.body(request, context, Wholecare_Identity_V1_AssignCareRelationshipRequest.self)
            return try API.created(try await api.identity.assignCareRelationship(body, options: api.options(request, context, token: caller.token)))
        }
        r.add(.delete, "/v1/admin/care-relationships/:relationship_id", "endCareRelationship") { request, context in
            let caller = try await api.caller(request, context)
            var body = Wholecare_Identity_V1_EndCareRelationshipRequest()
            body.relationshipID = try api.pathID(context, "relationship_id")
            return try await api.relay(api.identity.client, Wholecare_Identity_V1_Identity.Methods.endCareRelationship, body, options: api.options(request, context, token: caller.token))
        }
    }
}

import SwiftProtobuf
