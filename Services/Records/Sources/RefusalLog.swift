import Foundation
import Synchronization

/// Keeps a caller who is refused again and again from flooding a person's access log,
/// without hiding how often it happened.
///
/// Every allowed access is logged on its own row, always. A refusal is logged on its own
/// row too, up to `perWindow` times per `window` for one caller, person, action and part.
/// Further refusals in that window are only counted; once the window is over they are
/// written as **one** row that stands for all of them (`repeats`), carrying the last one's
/// reason, purpose and time. So the log grows by a bounded number of rows however fast a
/// caller retries, and the person still sees every attempt counted.
///
/// The counts live in memory until written (by ``RecordsRPCService/writeHeldRefusals(all:)``,
/// run every few seconds and at shutdown). If more than `capacity` callers are being
/// counted at once, a refusal from a new one is logged on its own row: nothing is ever
/// dropped to save memory.
public final class RefusalLog: Sendable {
    public struct Key: Hashable, Sendable {
        public var accessorID: String
        public var person: UUID
        public var action: String
        public var part: String

        public init(accessorID: String, person: UUID, action: String, part: String) {
            self.accessorID = accessorID
            self.person = person
            self.action = action
            self.part = part
        }
    }

    /// A refusal, or (with `count` > 1) several of the same key counted together.
    public struct Refusal: Sendable, Equatable {
        public var key: Key
        public var accessorKind: String
        public var organisation: UUID?
        public var basis: String
        public var purpose: String
        public var at: Date
        public var count: Int

        public init(key: Key, accessorKind: String, organisation: UUID?, basis: String, purpose: String, at: Date, count: Int = 1) {
            self.key = key
            self.accessorKind = accessorKind
            self.organisation = organisation
            self.basis = basis
            self.purpose = purpose
            self.at = at
            self.count = count
        }
    }

    private struct Window {
        var opened: ContinuousClock.Instant
        var logged: Int
        var held: Refusal?
    }

    private struct State {
        var windows: [Key: Window] = [:]
        /// Counted refusals of windows that are over, waiting to be written.
        var ready: [Refusal] = []
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
    /// summary row (false).
    public func admit(_ refusal: Refusal, now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            if var open = state.windows[refusal.key], now - open.opened < window {
                if open.logged < perWindow {
                    open.logged += 1
                    state.windows[refusal.key] = open
                    return true
                }
                var held = refusal
                held.count = (open.held?.count ?? 0) + 1
                open.held = held
                state.windows[refusal.key] = open
                return false
            }
            // No window for this key, or its window is over: open a new one (what the old
            // one counted waits to be written).
            if let old = state.windows.removeValue(forKey: refusal.key), let held = old.held { state.ready.append(held) }
            if state.windows.count >= capacity { Self.closeWindows(&state, over: now, window: window) }
            guard state.windows.count < capacity else { return true }
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
                    state.ready.append(held)
                    state.windows[key]?.held = nil
                }
            } else {
                Self.closeWindows(&state, over: now, window: window)
            }
            defer { state.ready.removeAll() }
            return state.ready
        }
    }

    /// Counted refusals that could not be written; they are offered again next time.
    public func retry(_ refusals: [Refusal]) {
        state.withLock { $0.ready.append(contentsOf: refusals) }
    }

    /// How many callers are being counted (for tests and diagnostics).
    public var openWindows: Int { state.withLock { $0.windows.count } }

    private static func closeWindows(_ state: inout State, over now: ContinuousClock.Instant, window: Duration) {
        for (key, open) in state.windows where now - open.opened >= window {
            if let held = open.held { state.ready.append(held) }
            state.windows.removeValue(forKey: key)
        }
    }
}
