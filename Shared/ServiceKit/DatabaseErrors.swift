import Postgres
import RPC

/// The RPC status a database failure that reaches a handler's caller gets. Handlers map
/// the failures they expect (a unique key taken, a refusal) themselves; this covers the
/// rest, so a caller can tell "try again" from "this is a bug". Messages are the
/// generic ones below: never SQL, server text or data.
extension PostgresError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        switch kind {
        case .connectionFailed, .connectionLost, .poolTimeout, .poolClosed: .unavailable
        case .retriesExhausted: .aborted
        case .server where isLockTimeout || sqlState == "57014" || sqlState?.hasPrefix("53") == true: .unavailable
        case .server where isSerializationFailure: .aborted
        case .server, .decoding, .migration: .internal
        }
    }

    public var rpcErrorMessage: String {
        switch rpcErrorCode {
        case .unavailable where isLockTimeout:
            "the data this call changes is locked by another operation; the call can be retried"
        case .unavailable where kind == .connectionLost:
            "the database connection was lost during the call; a call that changes data may or may not have taken effect"
                + " (one with an idempotency key can be retried with the same key)"
        case .unavailable: "the database is unavailable or busy; the call can be retried"
        case .aborted: "the call conflicted with concurrent changes; it can be retried"
        default: "internal error"
        }
    }
}
