import Auth
import Contracts
import Foundation
import Logging
import Metrics
import Postgres
import RPC
import ServiceLifecycle
import Synchronization

/// One change from identity's care-relationship feed, as records keeps it.
public struct CareTeamChange: Sendable, Equatable {
    public var sequence: Int64
    public var relationshipID: UUID
    public var personID: UUID
    public var professionalID: UUID
    public var organisationID: UUID
    /// `care_coordinator` or `care_team_member`, as identity stores it.
    public var role: String
    public var professionalName: String
    public var ended: Bool

    /// Refuses a change that does not say what records needs (identity never sends one;
    /// applying it would put a wrong row in someone's care team).
    init(_ change: Wholecare_Identity_V1_CareTeamChange) throws {
        let r = change.relationship
        guard change.sequence > 0, let id = UUID(hyphenated: r.id), let person = UUID(hyphenated: r.personID),
              let professional = UUID(hyphenated: r.professionalID), let organisation = UUID(hyphenated: r.organisationID)
        else { throw RPCError(code: .internal, message: "identity sent a care-team change without its ids") }
        let role: String
        switch r.role {
        case .careCoordinator: role = "care_coordinator"
        case .careTeamMember: role = "care_team_member"
        default: throw RPCError(code: .internal, message: "identity sent a care-team change with no role")
        }
        self.init(sequence: change.sequence, relationshipID: id, personID: person, professionalID: professional,
                  organisationID: organisation, role: role, professionalName: r.professionalName, ended: !r.endedAt.isEmpty)
    }

    public init(sequence: Int64, relationshipID: UUID, personID: UUID, professionalID: UUID, organisationID: UUID,
                role: String, professionalName: String, ended: Bool) {
        self.sequence = sequence
        self.relationshipID = relationshipID
        self.personID = personID
        self.professionalID = professionalID
        self.organisationID = organisationID
        self.role = role
        self.professionalName = professionalName
        self.ended = ended
    }
}

/// Records' copy of care teams (migration 0004), kept from identity's change feed so that
/// a summary reads the care team with the rest of the record, in one round trip, instead
/// of calling identity for it.
///
/// The copy follows identity by a second or so (the follower's interval). Summaries read
/// it only while it has caught up with the feed within `maxLag` (30 s); otherwise (a
/// fresh or restarted service, or a follower that cannot reach identity) they ask
/// identity as before, so a summary never shows a care team older than that. Who may see
/// a care team is decided here by the same shared policy identity applies
/// (`PersonAction.readCareTeam`).
public final class CareTeamCopy: Sendable {
    let store: RecordsStore
    let identity: IdentityLink
    /// How old the last catch-up may be for summaries to read the copy.
    public let maxLag: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let origin: ContinuousClock.Instant
    /// When the copy last caught up with the feed, in nanoseconds after `origin` (0: never).
    private let caughtUpAt = Atomic<Int64>(0)

    /// `now`: the clock the lag is measured on (tests move it).
    public init(store: RecordsStore, identity: IdentityLink, maxLag: Duration = .seconds(30),
                now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.store = store
        self.identity = identity
        self.maxLag = maxLag
        self.now = now
        self.origin = now()
    }

    private func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    /// Whether summaries read the care team from the copy: it caught up with the feed no
    /// longer than `maxLag` ago.
    public var isCaughtUp: Bool {
        let at = caughtUpAt.load(ordering: .acquiring)
        return at > 0 && nanoseconds(now() - origin) - at <= nanoseconds(maxLag)
    }

    /// Applies the feed's changes after the copy's position until identity has no more.
    /// Returns how many changes were applied. Syncs may overlap (here or in another
    /// process): `RecordsStore.applyCareTeamChanges` keeps them in order.
    @discardableResult
    public func sync(pageSize: Int32 = 500) async throws -> Int {
        let started = max(1, nanoseconds(now() - origin))
        var applied = 0
        while true {
            let position = try await store.careTeamFeedPosition()
            let page = try await identity.careTeamChanges(after: position, pageSize: pageSize)
            let changes = try page.changes.map(CareTeamChange.init)
            applied += try await store.applyCareTeamChanges(changes)
            if !page.more { break }
        }
        // Caught up with the feed as it was when this sync began (at least); an earlier
        // sync finishing later never moves the time back.
        caughtUpAt.max(started, ordering: .releasing)
        return applied
    }
}

/// Keeps the care-team copy: syncs every `interval`, and after a failure tries again with
/// doubling backoff (at most a minute), logging without personal data.
public struct CareTeamFollower: Service {
    let copy: CareTeamCopy
    let interval: Duration
    let logger: Logger
    /// For `/metrics`: when the copy last caught up (Unix seconds; alert when it falls
    /// more than 30 s behind the clock), and how many syncs have failed.
    let caughtUpAt = Gauge(label: "records_care_team_copy_caught_up_timestamp_seconds")
    let failuresTotal = Counter(label: "records_care_team_sync_failures_total")

    public init(copy: CareTeamCopy, interval: Duration = .seconds(1), logger: Logger) {
        self.copy = copy
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failures = 0
            var caughtUpBefore = false
            while !Task.isCancelled {
                do {
                    // The copy is current as of when the sync began, not when it ended.
                    let began = Date()
                    let applied = try await copy.sync()
                    caughtUpAt.record(began.timeIntervalSince1970)
                    if !caughtUpBefore {
                        logger.info("care-team copy caught up with identity", metadata: ["changes_applied": "\(applied)"])
                        caughtUpBefore = true
                    } else if failures > 0 {
                        logger.info("care-team copy is following identity again")
                    }
                    failures = 0
                    try? await Task.sleep(for: interval)
                } catch {
                    if Task.isCancelled { break }
                    failures += 1
                    failuresTotal.increment()
                    // The first failure after a good run is a warning; a long outage logs
                    // every tenth attempt so the log is not flooded.
                    if failures == 1 || failures % 10 == 0 {
                        logger.warning("could not follow identity's care-team changes; retrying",
                                       metadata: ["attempt": "\(failures)", "error": "\(type(of: error))",
                                                 "status": "\((error as? RPCError).map { "\($0.code)" } ?? "-")"])
                    }
                    // The first retry after one interval, then doubling.
                    let backoff = min(interval * (1 << min(failures - 1, 12)), .seconds(60))
                    try? await Task.sleep(for: backoff)
                }
            }
        }
    }
}
