import Foundation

/// Per-account sign-in throttling (keyed by the attempted e-mail, so unknown and known
/// accounts behave the same).
///
/// - The first 4 consecutive failures cost nothing; from the 5th, the next attempt must
///   wait 1 s, then 2 s, 4 s … up to 30 s (growing delays: an online guesser gets at most
///   about two guesses a minute).
/// - At most 100 failures per hour: the 100th locks the address until its hour-long
///   window ends. When the window passes, the real owner can sign in again.
/// - A success resets the consecutive count (the hourly count stands).
public struct SignInThrottle: Sendable, Equatable {
    public var consecutiveFailures: Int
    public var windowStartedAt: Date
    public var failuresInWindow: Int
    public var nextAttemptAt: Date

    public static let window: TimeInterval = 3600
    public static let hourlyCeiling = 100
    public static let freeFailures = 4
    public static let maximumDelay: TimeInterval = 30

    public init(consecutiveFailures: Int = 0, windowStartedAt: Date, failuresInWindow: Int = 0, nextAttemptAt: Date) {
        self.consecutiveFailures = consecutiveFailures
        self.windowStartedAt = windowStartedAt
        self.failuresInWindow = failuresInWindow
        self.nextAttemptAt = nextAttemptAt
    }

    public static func fresh(now: Date) -> SignInThrottle {
        SignInThrottle(windowStartedAt: now, nextAttemptAt: now)
    }

    /// Seconds the caller must wait before an attempt is even checked, or nil if allowed.
    public func retryAfter(now: Date) -> TimeInterval? {
        nextAttemptAt > now ? nextAttemptAt.timeIntervalSince(now) : nil
    }

    /// The state after a failed attempt at `now`.
    public func failing(at now: Date) -> SignInThrottle {
        var next = self
        if now.timeIntervalSince(windowStartedAt) >= Self.window {
            next.windowStartedAt = now
            next.failuresInWindow = 0
        }
        next.failuresInWindow += 1
        next.consecutiveFailures += 1
        if next.failuresInWindow >= Self.hourlyCeiling {
            next.nextAttemptAt = next.windowStartedAt.addingTimeInterval(Self.window)
        } else if next.consecutiveFailures > Self.freeFailures {
            let exponent = Double(next.consecutiveFailures - Self.freeFailures - 1)
            next.nextAttemptAt = now.addingTimeInterval(min(pow(2, exponent), Self.maximumDelay))
        } else {
            next.nextAttemptAt = now
        }
        return next
    }

    /// The state after a successful sign-in at `now`.
    public func succeeding(at now: Date) -> SignInThrottle {
        var next = self
        next.consecutiveFailures = 0
        next.nextAttemptAt = now
        return next
    }
}
