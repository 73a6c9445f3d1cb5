import Foundation
import Synchronization

/// Fixed-window counters per key (client address, account): sign-in and registration
/// attempts over the limit in the current minute answer 429 with Retry-After.
final class RateLimiter: Sendable {
    private let limit: Int
    private let window: TimeInterval
    private let state = Mutex<[String: (start: Date, count: Int)]>([:])

    init(limit: Int, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    /// Counts an attempt; returns seconds to wait if over the limit.
    func attempt(_ key: String, now: Date = Date()) -> Int? {
        state.withLock { buckets in
            if buckets.count > 100_000 { buckets = buckets.filter { now.timeIntervalSince($0.value.start) < window } }
            var bucket = buckets[key] ?? (now, 0)
            if now.timeIntervalSince(bucket.start) >= window { bucket = (now, 0) }
            bucket.count += 1
            buckets[key] = bucket
            guard bucket.count > limit else { return nil }
            return max(1, Int((window - now.timeIntervalSince(bucket.start)).rounded(.up)))
        }
    }
}
