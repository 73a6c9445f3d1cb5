import Foundation
import Postgres
import TestSupport
import Testing

@Suite("LISTEN / NOTIFY")
struct ListenTests {
    @Test("notifications reach a listener")
    func notificationsArrive() async throws {
        let db = TestDatabase.client(url: try TestDatabase.adminURL())
        let channel = "wc_test_" + UUID().uuidString.prefix(8).lowercased()
        let stream = db.listen(channels: [channel])
        let seen = PayloadBox()
        let listener = Task {
            for await note in stream where !note.isReconnect {
                seen.append(note.payload)
                if seen.count >= 3 { break }
            }
        }
        // The listener connects asynchronously: keep notifying until it has seen three,
        // for at most 30 s; then stop the listener so a shortfall fails rather than hangs.
        let deadline = ContinuousClock.now + .seconds(30)
        var sent = 0
        while seen.count < 3, ContinuousClock.now < deadline {
            try await db.query("SELECT pg_notify(\(channel), \("job-\(sent)"))")
            sent += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        listener.cancel()
        await listener.value
        #expect(seen.count == 3)
        #expect(seen.values.allSatisfy { $0.hasPrefix("job-") })
        await db.shutdown()
    }
}

final class PayloadBox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var count: Int { lock.withLock { items.count } }
    var values: [String] { lock.withLock { items } }
}
