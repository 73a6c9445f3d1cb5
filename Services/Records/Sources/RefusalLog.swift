import Foundation
import Synchronization

/// Keeps a caller who is refused again and again from flooding a person's access log,
/// without hiding how often it happened.
///
/// Every allowed access is logged on its own row, always. A refusal is logged on its own
/// row too, up to `perWindow` times per `window` for one caller (acting for one
/// organisation), person, action and part. Further refusals in that window are only
/// counted; once the window is over they are written as **one** row that stands for all
/// of them (`repeats`), with the first and last one's times and the last one's reason and
/// purpose. So the log grows by a bounded number of rows however fast a caller retries,
/// and the person still sees every attempt counted.
///
/// The counts live in memory until written (by ``RecordsRPCService/writeHeldRefusals(all:)``,
/// every few seconds and at shutdown), so they are lost if the process dies without
/// shutting down. If more than `capacity` callers are being counted at once, a refusal
/// from a new one is logged on its own row: nothing is dropped to save memory.
public final class RefusalLog: Sendable {
    public struct Key: Hashable, Sendable {
        public var accessorID: String
        public var accessorKind: String
        public var organisation: UUID?
        public var person: UUID
        public var action: String
        public var part: String

        public init(accessorID: String, accessorKind: String, organisation: UUID?, person: UUID, action: String, part: String) {
            self.accessorID = accessorID
            self.accessorKind = accessorKind
            self.organisation = organisation
            self.person = person
            self.action = action
            self.part = part
        }
    }

    /// One access or refusal to log; or, from ``due(all:now:)``, `count` refusals of one key
    /// counted together between `firstAt` and `lastAt`.
    public struct Refusal: Sendable, Equatable {
        public var key: Key
        public var basis: String
        public var purpose: String
        public var count: Int
        /// The times of the first and last refusal counted (nil for a single row: the
        /// database's time of writing is used).
        public var firstAt: Date?
        public var lastAt: Date?

        public init(key: Key, basis: String, purpose: String) {
            self.key = key
            self.basis = basis
            self.purpose = purpose
            self.count = 1
        }
    }

    private struct Window {
        var opened: ContinuousClock.Instant
        var logged: Int
        var held: Refusal?
    }

    private struct State {
        var windows: [Key: Window] = [:]
        /// Counted refusals of windows that are over, waiting to be written: at most one
        /// per key (counts of the same key are added up).
        var ready: [Key: Refusal] = [:]
        var lastSweep: ContinuousClock.Instant?
    }

    public let perWindow: Int
    public let window: Duration
    public let capacity: Int
    private let state = Mutex(State())

    public init(perWindow: Int = 5, window: Duration = .seconds(60), capacity: Int = 10_000) {
        precondition(perWindow >= 1 && capacity >= 1)
        self.perWindow = perWindow
        self.window = window
        self.capacity = capacity
    }

    /// Whether to write this refusal now, on its own row (true), or count it for a later
    /// row standing for several (false).
    public func admit(_ refusal: Refusal, now: ContinuousClock.Instant = .now, wallClock: Date = Date()) -> Bool {
        state.withLock { state in
            if var open = state.windows[refusal.key], now - open.opened < window {
                if open.logged < perWindow {
                    open.logged += 1
                    state.windows[refusal.key] = open
                    return true
                }
                var held = refusal
                held.count = (open.held?.count ?? 0) + 1
                held.firstAt = open.held?.firstAt ?? wallClock
                held.lastAt = wallClock
                open.held = held
                state.windows[refusal.key] = open
                return false
            }
            // No window for this key, or its window is over: open a new one (what the old
            // one counted waits to be written).
            if let old = state.windows.removeValue(forKey: refusal.key), let held = old.held { Self.ready(held, in: &state) }
            if state.windows.count >= capacity {
                // Full: close the windows that are over, at most once a second (a flood of
                // new callers must not make every refusal scan them all).
                if state.lastSweep.map({ now - $0 >= .seconds(1) }) ?? true {
                    state.lastSweep = now
                    Self.closeWindows(&state, over: now, window: window)
                }
                guard state.windows.count < capacity else { return true }
            }
            state.windows[refusal.key] = Window(opened: now, logged: 1, held: nil)
            return true
        }
    }

    /// The counted refusals to write now: those of windows that are over, or (`all`, at
    /// shutdown) every one. They are forgotten here; give back any that could not be
    /// written with ``retry(_:)``.
    public func due(all: Bool = false, now: ContinuousClock.Instant = .now) -> [Refusal] {
        state.withLock { state in
            if all {
                for (key, open) in state.windows {
                    guard let held = open.held else { continue }
                    Self.ready(held, in: &state)
                    state.windows[key]?.held = nil
                }
            } else {
                Self.closeWindows(&state, over: now, window: window)
            }
            defer { state.ready.removeAll() }
            return state.ready.values.sorted { ($0.lastAt ?? .distantPast) < ($1.lastAt ?? .distantPast) }
        }
    }

    /// Counted refusals that could not be written; they are offered again next time (added
    /// to any counted meanwhile for the same key).
    public func retry(_ refusals: [Refusal]) {
        state.withLock { state in
            for refusal in refusals { Self.ready(refusal, in: &state) }
        }
    }

    /// How many callers are being counted (for tests and diagnostics).
    public var openWindows: Int { state.withLock { $0.windows.count } }

    private static func ready(_ refusal: Refusal, in state: inout State) {
        guard var earlier = state.ready[refusal.key] else {
            state.ready[refusal.key] = refusal
            return
        }
        // Two counts of one key (windows one after the other, or a retry): one row.
        let later = (refusal.lastAt ?? .distantPast) >= (earlier.lastAt ?? .distantPast) ? refusal : earlier
        earlier.count += refusal.count
        earlier.basis = later.basis
        earlier.purpose = later.purpose
        earlier.firstAt = [earlier.firstAt, refusal.firstAt].compactMap { $0 }.min()
        earlier.lastAt = [earlier.lastAt, refusal.lastAt].compactMap { $0 }.max()
        state.ready[refusal.key] = earlier
    }

    private static func closeWindows(_ state: inout State, over now: ContinuousClock.Instant, window: Duration) {
        for (key, open) in state.windows where now - open.opened >= window {
            if let held = open.held { ready(held, in: &state) }
            state.windows.removeValue(forKey: key)
        }
    }
}
