import Foundation
import RPC
import Synchronization

/// Applies `AccessPolicy` with facts from identity, cached for `factsTTL` (30 s by
/// default: a revoked consent or ended relationship stops working within that time).
public final class Authorizer: Sendable {
    public typealias FactsFetcher = @Sendable (_ subject: Principal, _ person: UUID) async throws -> AccessFacts

    public let factsTTL: Duration
    private let fetch: FactsFetcher
    private let cache = Mutex<[String: (facts: AccessFacts, at: ContinuousClock.Instant)]>([:])

    public init(factsTTL: Duration = .seconds(30), fetch: @escaping FactsFetcher) {
        self.factsTTL = factsTTL
        self.fetch = fetch
    }

    /// Decides without throwing for a denial.
    public func decide(_ principal: Principal, _ action: PersonAction, person: UUID) async throws -> AccessDecision {
        if principal.subjectID == person, principal.isPerson {
            return AccessPolicy.decide(principal, action, person: person, facts: AccessFacts(personExists: true))
        }
        if principal.kind == .administrator || principal.kind == .service {
            return AccessPolicy.decide(principal, action, person: person, facts: .none)
        }
        return AccessPolicy.decide(principal, action, person: person, facts: try await facts(for: principal, person: person))
    }

    /// Returns the basis for access, or throws PERMISSION_DENIED with a reason that names
    /// no personal data.
    @discardableResult
    public func require(_ principal: Principal, _ action: PersonAction, person: UUID) async throws -> AccessBasis {
        switch try await decide(principal, action, person: person) {
        case .allow(let basis): return basis
        case .deny(let reason): throw RPCError(code: .permissionDenied, message: "not allowed to \(action): \(reason)")
        }
    }

    public func facts(for principal: Principal, person: UUID) async throws -> AccessFacts {
        let key = "\(principal.subject)|\(principal.organisationID?.lowercasedString ?? "-")|\(person.lowercasedString)"
        if let hit = cache.withLock({ $0[key] }), ContinuousClock.now - hit.at < factsTTL { return hit.facts }
        let facts = try await fetch(principal, person)
        cache.withLock { cache in
            if cache.count > 50_000 { cache.removeAll() }
            cache[key] = (facts, .now)
        }
        return facts
    }

    /// Forgets cached facts (identity calls this after it changes a relationship, consent
    /// or carer grant, so its own decisions are immediate).
    public func invalidate() {
        cache.withLock { $0.removeAll() }
    }
}
