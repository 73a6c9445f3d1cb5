import Foundation
import Synchronization

/// Fixed-window counters per key (client address, account): sign-in and registration
/// attempts over the limit in the current minute answer 429 with Retry-After.
final class RateLimiter: Sendable {
    private let limit: Int
    private let window: TimeInterval
    private let state = Mutex<State>(State())

    private struct State {
        var buckets: [String: (start: Date, count: Int)] = [:]
        var lastPrune = Date.distantPast
    }

    init(limit: Int, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    /// Counts an attempt; returns seconds to wait if over the limit.
    func attempt(_ key: String, now: Date = Date()) -> Int? {
        state.withLock { state in
            // Past windows are dropped once the table is large, at most once a window: a
            // client sending fresh keys (account names are the caller's to choose) makes the
            // table grow with its request rate, not every attempt scan the whole table
            // under the lock (which would stall the event loop the gateway runs on).
            if state.buckets.count > 100_000, now.timeIntervalSince(state.lastPrune) >= window {
                state.buckets = state.buckets.filter { now.timeIntervalSince($0.value.start) < window }
                state.lastPrune = now
            }
            var bucket = state.buckets[key] ?? (now, 0)
            if now.timeIntervalSince(bucket.start) >= window { bucket = (now, 0) }
            bucket.count += 1
            state.buckets[key] = bucket
            guard bucket.count > limit else { return nil }
            return max(1, Int((window - now.timeIntervalSince(bucket.start)).rounded(.up)))
        }
    }
}
