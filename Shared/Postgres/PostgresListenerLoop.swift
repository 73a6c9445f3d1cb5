import Foundation
import Glibc
import Logging

/// The body of a listener thread: connect, LISTEN, poll the socket, deliver, reconnect.
struct PostgresListenerLoop {
    let configuration: PostgresConfiguration
    let channels: [String]
    let logger: Logger
    let yield: (PostgresNotification) -> Void
    let shouldStop: () -> Bool

    func run() {
        var failures = 0
        var connectedBefore = false
        while !shouldStop() {
            let connection: PostgresConnection
            do {
                connection = try PostgresConnection(
                    conninfo: configuration.connectionString, applicationName: configuration.applicationName + "-listen",
                    connectTimeout: configuration.connectTimeoutSeconds, statementCacheLimit: 1, id: 0)
                try connection.executeSimple(
                    channels.map { "LISTEN " + PostgresQuery.quoteIdentifier($0) }.joined(separator: "; "))
            } catch {
                failures += 1
                logger.warning("listener could not connect; retrying", metadata: ["attempt": "\(failures)"])
                sleepInterruptibly(milliseconds: min(100 * (1 << min(failures, 6)), 5_000))
                continue
            }
            if connectedBefore {
                yield(PostgresNotification(channel: "", payload: "", isReconnect: true))
            }
            connectedBefore = true
            failures = 0
            while !shouldStop() {
                var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
                let ready = poll(&descriptor, 1, 200)
                if ready < 0 && errno != EINTR { break }
                do {
                    for notification in try connection.drainNotifications() { yield(notification) }
                } catch {
                    logger.warning("listener lost its connection; reconnecting")
                    break
                }
            }
            connection.close()
        }
    }

    private func sleepInterruptibly(milliseconds: Int) {
        var remaining = milliseconds
        while remaining > 0, !shouldStop() {
            usleep(UInt32(min(remaining, 100) * 1000))
            remaining -= 100
        }
    }
}
