import Auth
import Contracts
import Foundation
import LedgerService
import Postgres
import RecordsService
import RPC
import TestSupport
import WholeCareCrypto

/// Identity, records and ledger in-process, each over its own fresh, migrated schema of
/// the real test database, wired to one another exactly as the executables are (their own
/// service credentials, `IdentityLink`s), and reachable through in-process channels.
public struct SuiteHarness: Sendable {
    public let identity: IdentityHarness
    public let identityChannel: InProcessChannel
    public let recordsChannel: InProcessChannel
    public let ledgerChannel: InProcessChannel

    public static func with<T: Sendable>(_ body: (SuiteHarness) async throws -> T) async throws -> T {
        try await IdentityHarness.with { identity in
            try await TestDatabase.withFreshSchema(maxConnections: 6) { recordsDB, recordsSchema in
                try await TestDatabase.withFreshSchema(maxConnections: 6) { ledgerDB, ledgerSchema in
                    try await Migrator(schema: recordsSchema, migrations: try RecordsServiceApp.migrations()).migrate(using: recordsDB)
                    try await Migrator(schema: ledgerSchema, migrations: try LedgerServiceApp.migrations()).migrate(using: ledgerDB)
                    func link(_ name: String) async throws -> IdentityLink {
                        let secret = SecureRandom.token(byteCount: 32)
                        try await identity.store.createClient(clientID: "svc-\(name)", secretHash: Digest.sha256(secret), kind: "service",
                                                              name: name, organisationID: nil)
                        return IdentityLink(channel: identity.channel, clientID: "svc-\(name)", secret: secret, factsTTL: .zero)
                    }
                    let recordsLink = try await link("records"), ledgerLink = try await link("ledger")
                    var recordsRouter = RPCRouter()
                    let cipher = try FieldCipher(keys: ["test": SecureRandom.bytes(32)], currentKeyID: "test")
                    let records = RecordsRPCService(store: RecordsStore(db: recordsDB, cipher: cipher), identity: recordsLink, refusals: RefusalLog())
                    recordsRouter.register(records)
                    records.registerEncodedReplies(into: &recordsRouter)
                    recordsRouter.interceptors = [recordsLink.authInterceptor()]
                    var ledgerRouter = RPCRouter()
                    ledgerRouter.register(LedgerRPCService(store: LedgerStore(db: ledgerDB), identity: ledgerLink))
                    ledgerRouter.interceptors = [ledgerLink.authInterceptor()]
                    return try await body(SuiteHarness(
                        identity: identity, identityChannel: identity.channel,
                        recordsChannel: InProcessChannel(router: recordsRouter), ledgerChannel: InProcessChannel(router: ledgerRouter)))
                }
            }
        }
    }
}
