import CLibPQ
import Foundation
import Logging

/// One libpq connection. The synchronous methods block, so callers run them on the
/// client's dedicated thread pool, never on an event loop or the cooperative pool; the
/// `async` ones (Linux) send in libpq's non-blocking mode and wait for the socket with
/// ``SocketReadiness``, so they may run on any thread. A connection is used by one task at
/// a time (the pool guarantees it), hence `@unchecked Sendable`.
final class PostgresConnection: @unchecked Sendable {
    private var handle: OpaquePointer?
    private var statementNames: [StatementKey: String] = [:]
    /// The columns of each prepared statement's results, by statement name, so that a
    /// result's column names are not made again each time (emptied with `statementNames`).
    private var layouts: [String: PostgresRows.Layout] = [:]
    private var statementCounter = 0
    private let statementCacheLimit: Int
    /// Set once a statement fails because the socket is gone; the pool then discards it.
    private(set) var isBroken = false
    let id: Int
    /// Cancels the statement in flight on the non-blocking path when its task is cancelled.
    private(set) var canceller: StatementCanceller?

    init(conninfo: String, applicationName: String, connectTimeout: Int, statementCacheLimit: Int, id: Int) throws {
        self.id = id
        self.statementCacheLimit = statementCacheLimit
        let keys = ["dbname", "application_name", "connect_timeout", "client_encoding"]
        let values = [conninfo, applicationName, String(connectTimeout), "UTF8"]
        let keyPointers = keys.map { strdup($0) }
        let valuePointers = values.map { strdup($0) }
        defer {
            keyPointers.forEach { free($0) }
            valuePointers.forEach { free($0) }
        }
        var keyArray = keyPointers.map { UnsafePointer($0) } + [nil]
        var valueArray = valuePointers.map { UnsafePointer($0) } + [nil]
        // expand_dbname = 1: the dbname value may be a full URL or key=value string;
        // the keys after it (application name, timeout, encoding) take precedence.
        let connection = PQconnectdbParams(&keyArray, &valueArray, 1)
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            let message = connection.flatMap { PQerrorMessage($0) }.map { String(cString: $0) }
            if let connection { PQfinish(connection) }
            throw PostgresError(
                kind: .connectionFailed, safeMessage: "could not connect to the database",
                serverMessage: message?.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        handle = connection
        canceller = StatementCanceller(connection)
        // Server NOTICEs (e.g. "drop cascades to …") are not errors and may quote data;
        // libpq would print them on stderr, so they are dropped here.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        // Fixed session settings the text decoders rely on.
        try executeSimple("SET DateStyle = 'ISO'; SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'")
    }

    deinit { close() }

    func close() {
        if let handle { PQfinish(handle) }
        handle = nil
        isBroken = true
    }

    /// Checks, without blocking (a zero-timeout `poll(2)`, safe on any thread), that the
    /// server has not closed the socket while the connection sat idle (e.g. it restarted).
    ///
    /// An idle pooled connection has no reason to receive anything, so any readable data
    /// (an error such as "terminating connection", or end-of-file) marks it as unusable.
    func isAlive() -> Bool {
        guard let handle, !isBroken else { return false }
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, 0)
        if ready != 0 || PQstatus(handle) != CONNECTION_OK {
            isBroken = true
            return false
        }
        return true
    }

    var inTransaction: Bool {
        guard let handle else { return false }
        let status = PQtransactionStatus(handle)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    /// Runs a script of one or more statements with the simple query protocol (no binds).
    func executeSimple(_ sql: String) throws {
        guard let handle else { throw Self.lostError(nil) }
        var result = PQexec(handle, sql)
        defer {
            // (A COPY result would come back for ever: check has marked the connection
            // broken, and it is not read further.)
            while let r = result {
                let copying = Self.isCopy(r)
                PQclear(r)
                result = copying ? nil : PQgetResult(handle)
            }
        }
        try check(result)
    }

    /// Runs one parameterised statement, preparing it once per connection and reusing the
    /// prepared statement on later calls with the same text.
    func execute(_ query: PostgresQuery) throws -> PostgresRows {
        guard let handle else { throw Self.lostError(nil) }
        let key = StatementKey(query)
        let name = try preparedName(for: query, key: key)
        let result = try withBinds(query.binds) { values, lengths, formats in
            PQexecPrepared(handle, name, Int32(query.binds.count), values, lengths, formats, query.wantsBinaryResults ? 1 : 0)
        }
        do {
            try check(result)
        } catch {
            PQclear(result)
            forgetIfInvalidated(error, [key])
            throw error
        }
        return read(result!, statement: name)
    }

    /// The name of the statement prepared for `query`'s text and bind types on this
    /// connection, preparing it (one round trip) the first time.
    private func preparedName(for query: PostgresQuery, key cacheKey: StatementKey) throws -> String {
        guard let handle else { throw Self.lostError(nil) }
        if let cached = statementNames[cacheKey] { return cached }
        if statementNames.count >= statementCacheLimit {
            // Simple bound: forget everything rather than track recency.
            try executeSimple("DEALLOCATE ALL")
            forgetStatements()
        }
        statementCounter += 1
        let name = "wc_\(statementCounter)"
        let types = query.binds.map { Oid($0.type.rawValue) }
        let prepared = types.withUnsafeBufferPointer { typeBuffer in
            PQprepare(handle, name, query.sql, Int32(types.count), typeBuffer.baseAddress)
        }
        defer { PQclear(prepared) }
        try check(prepared)
        statementNames[cacheKey] = name
        return name
    }

    #if os(Linux)
    // MARK: - Without blocking a thread

    /// ``execute(_:)`` without blocking: the statement is sent from the calling thread in
    /// libpq's non-blocking mode and its result awaited with ``SocketReadiness``, so no
    /// pool thread is woken and none sleeps in `poll(2)` while the server works.
    func executeAsync(_ query: PostgresQuery) async throws -> PostgresRows {
        guard let handle else { throw Self.lostError(nil) }
        let key = StatementKey(query)
        let name = try await preparedNameAsync(for: query, key: key)
        let result: OpaquePointer
        do {
            result = try await exchange(handle) {
                try withBinds(query.binds) { values, lengths, formats in
                    PQsendQueryPrepared(handle, name, Int32(query.binds.count), values, lengths, formats, query.wantsBinaryResults ? 1 : 0)
                }
            }
        } catch {
            forgetIfInvalidated(error, [key])
            throw error
        }
        return read(result, statement: name)
    }

    /// ``executeSimple(_:)`` without blocking a thread.
    /// `interruptible: false` for `COMMIT` and `ROLLBACK`: a cancel request never races
    /// them, so a `COMMIT` that reports a cancellation never committed.
    func executeSimpleAsync(_ sql: String, interruptible: Bool = true) async throws {
        guard let handle else { throw Self.lostError(nil) }
        let send = { PQsendQuery(handle, sql) }
        PQclear(try await interruptible ? exchange(handle, send) : exchangeOnce(handle, send))
    }

    /// ``executePipeline(_:)`` without blocking a thread.
    func executePipelineAsync(_ queries: [PostgresQuery]) async throws -> [PostgresRows] {
        guard let handle else { throw Self.lostError(nil) }
        guard !queries.isEmpty else { return [] }
        let keys = queries.map(StatementKey.init)
        if try makeRoomInCache(for: keys) { try await executeSimpleAsync("DEALLOCATE ALL") }
        var names: [String] = []
        for (query, key) in zip(queries, keys) { names.append(try await preparedNameAsync(for: query, key: key)) }
        do {
            return try await pipelineExchange(handle, queries, names)
        } catch {
            forgetIfInvalidated(error, keys)
            throw error
        }
    }

    private func pipelineExchange(_ handle: OpaquePointer, _ queries: [PostgresQuery], _ names: [String]) async throws -> [PostgresRows] {
        try await cancellable {
            guard PQsetnonblocking(handle, 1) == 0 else { throw lose(handle) }
            try sendPipeline(handle, queries, names)
            let socket = PQsocket(handle)
            try await flush(handle, socket)
            var reader = PipelineReader(names: names)
            reading: while true {
                while PQisBusy(handle) == 0 {
                    if try reader.take(PQgetResult(handle), on: self) { break reading }
                }
                try await waitForSocket(socket, writable: false)
                if PQconsumeInput(handle) == 0 { throw lose(handle) }
            }
            guard PQsetnonblocking(handle, 0) == 0 else { throw lose(handle) }
            return try finishPipeline(handle, reader)
        }
    }

    /// Runs one exchange with the server so that, once the waiting task is cancelled, a
    /// statement still running after a short grace period is cancelled in the server too
    /// (see ``StatementCanceller``); the exchange still reads the server's answer, so the
    /// connection stays in step and usable. A statement stopped that way throws
    /// `CancellationError`. Inside ``StatementCancellation/shielded(_:)`` nothing is
    /// cancelled. Exchanges are never nested.
    private func cancellable<T>(_ body: () async throws -> T) async throws -> T {
        guard let canceller, !StatementCancellation.isShielded else { return try await body() }
        let generation = canceller.begin()
        let result: Result<T, any Error>
        do {
            result = .success(try await withTaskCancellationHandler(operation: body, onCancel: { canceller.cancel(generation) }))
        } catch {
            result = .failure(error)
        }
        let (sent, sending) = canceller.end()
        // A request on its way could reach the next statement: let it go first, or close
        // the connection (later statements on it then fail as a lost connection).
        if sending, await !canceller.settle(generation) { close() }
        if sent, case .failure(let error as PostgresError) = result, error.sqlState == "57014" { throw CancellationError() }
        return try result.get()
    }

    /// Sends what libpq has buffered. While output is pending the server may be blocked
    /// writing results to us (a pipeline whose first statements answer at length), so this
    /// waits for the socket to be readable or writable and reads what arrived before
    /// sending more (as libpq's documentation asks), never waiting on writability alone.
    private func flush(_ handle: OpaquePointer, _ socket: Int32) async throws {
        while true {
            let flushed = PQflush(handle)
            if flushed == 0 { return }
            if flushed < 0 { throw lose(handle) }
            try await waitForSocket(socket, writable: true)
            if PQconsumeInput(handle) == 0 { throw lose(handle) }
        }
    }

    private func preparedNameAsync(for query: PostgresQuery, key cacheKey: StatementKey) async throws -> String {
        guard let handle else { throw Self.lostError(nil) }
        if let cached = statementNames[cacheKey] { return cached }
        if statementNames.count >= statementCacheLimit {
            try await executeSimpleAsync("DEALLOCATE ALL")
            forgetStatements()
        }
        statementCounter += 1
        let name = "wc_\(statementCounter)"
        let types = query.binds.map { Oid($0.type.rawValue) }
        PQclear(try await exchange(handle) {
            types.withUnsafeBufferPointer { PQsendPrepare(handle, name, query.sql, Int32(types.count), $0.baseAddress) }
        })
        statementNames[cacheKey] = name
        return name
    }

    /// Sends with `send` in non-blocking mode, waits for every result, and returns the
    /// last one (a script's statements each have one) after checking them all: the first
    /// failure is thrown, with every result cleared.
    private func exchange(_ handle: OpaquePointer, _ send: () throws -> Int32) async throws -> OpaquePointer {
        try await cancellable { try await exchangeOnce(handle, send) }
    }

    private func exchangeOnce(_ handle: OpaquePointer, _ send: () throws -> Int32) async throws -> OpaquePointer {
        guard PQsetnonblocking(handle, 1) == 0 else { throw lose(handle) }
        var results: [OpaquePointer] = []
        do {
            guard try send() == 1 else { throw sendFailure(handle) }
            let socket = PQsocket(handle)
            try await flush(handle, socket)
            reading: while true {
                while PQisBusy(handle) == 0 {
                    guard let result = PQgetResult(handle) else { break reading }
                    results.append(result)
                    // libpq would hand out COPY results for ever.
                    if Self.isCopy(result) { throw copyRefused() }
                }
                try await waitForSocket(socket, writable: false)
                if PQconsumeInput(handle) == 0 { throw lose(handle) }
            }
            // Back to blocking mode for the blocking methods (nothing is left to send).
            guard PQsetnonblocking(handle, 0) == 0 else { throw lose(handle) }
            guard let last = results.last else { throw lose(handle) }
            for result in results { try check(result) }
            results.removeLast()
            results.forEach { PQclear($0) }
            return last
        } catch {
            results.forEach { PQclear($0) }
            throw error
        }
    }

    private func waitForSocket(_ socket: Int32, writable: Bool) async throws {
        do {
            try await SocketReadiness.shared.wait(for: socket, writable: writable)
        } catch {
            isBroken = true
            throw Self.lostError("could not wait for the database socket")
        }
    }
    #endif

    /// Runs several statements in one round trip (libpq's pipeline mode): all of them are
    /// sent, then all their results read. Outside an explicit transaction they form one
    /// implicit transaction, so if one fails, those after it are not run, nothing the list
    /// would have written is kept, and the first failure is thrown. (Each statement still
    /// takes its own snapshot under READ COMMITTED.) Statements not yet prepared on this
    /// connection are prepared first, one round trip each, as ``execute(_:)`` does.
    func executePipeline(_ queries: [PostgresQuery]) throws -> [PostgresRows] {
        guard let handle else { throw Self.lostError(nil) }
        guard !queries.isEmpty else { return [] }
        let keys = queries.map(StatementKey.init)
        if try makeRoomInCache(for: keys) { try executeSimple("DEALLOCATE ALL") }
        let names = try zip(queries, keys).map { try preparedName(for: $0, key: $1) }
        do {
            try sendPipeline(handle, queries, names)
            var reader = PipelineReader(names: names)
            while try !reader.take(PQgetResult(handle), on: self) {}
            return try finishPipeline(handle, reader)
        } catch {
            forgetIfInvalidated(error, keys)
            throw error
        }
    }

    /// A prepared statement whose result type a schema change altered fails for good
    /// ("cached plan must not change result type", SQLSTATE 0A000): the statement is
    /// forgotten here, so the next call prepares it anew (the old one is freed in the server
    /// at the next `DEALLOCATE ALL` or when the connection closes).
    private func forgetIfInvalidated(_ error: any Error, _ keys: [StatementKey]) {
        guard let error = error as? PostgresError, error.sqlState == "0A000" else { return }
        for key in keys {
            if let name = statementNames.removeValue(forKey: key) { layouts[name] = nil }
        }
    }

    /// Whether the statement cache must be emptied (`DEALLOCATE ALL`, which the caller
    /// runs) so that every statement of a pipeline fits; the local cache is emptied here.
    private func makeRoomInCache(for keys: [StatementKey]) throws -> Bool {
        guard keys.contains(where: { statementNames[$0] == nil }) else { return false }
        let unprepared = Set(keys).filter { statementNames[$0] == nil }.count
        guard statementNames.count + unprepared > statementCacheLimit else { return false }
        guard unprepared <= statementCacheLimit else {
            throw PostgresError(kind: .server, safeMessage: "a pipeline has more new statements than the statement cache holds (\(statementCacheLimit))")
        }
        // Make room for all of them at once, so preparing one never forgets another.
        forgetStatements()
        return true
    }

    /// Forgets every prepared statement (the caller deallocates them in the server).
    private func forgetStatements() {
        statementNames.removeAll(keepingCapacity: true)
        layouts.removeAll(keepingCapacity: true)
    }

    /// Enters pipeline mode and queues every statement and the sync.
    private func sendPipeline(_ handle: OpaquePointer, _ queries: [PostgresQuery], _ names: [String]) throws {
        guard PQenterPipelineMode(handle) == 1 else {
            // Only possible with results still unread: the connection's state is unknown.
            throw lose(handle)
        }
        for (query, name) in zip(queries, names) {
            let sent = try withBinds(query.binds) { values, lengths, formats in
                PQsendQueryPrepared(handle, name, Int32(query.binds.count), values, lengths, formats, query.wantsBinaryResults ? 1 : 0)
            }
            // Nothing can be read back reliably after a failed send: the connection goes.
            guard sent == 1 else { throw sendFailure(handle) }
        }
        guard PQpipelineSync(handle) == 1 else { throw lose(handle) }
    }

    /// The results of a pipeline, as they are read: each statement's result is followed by
    /// a NULL; the sync's result comes last.
    private struct PipelineReader {
        /// The prepared statement of each result, in order.
        let names: [String]
        var statements: Int { names.count }
        var results: [PostgresRows] = []
        var failure: (any Error)?
        var ends = 0

        /// Takes one `PQgetResult`; true once the sync's result is in.
        mutating func take(_ result: OpaquePointer?, on connection: PostgresConnection) throws -> Bool {
            guard let result else {
                ends += 1
                if ends > statements || !connection.isConnected { throw connection.lose() }
                return false
            }
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_SYNC:
                PQclear(result)
                return true
            case PGRES_PIPELINE_ABORTED:
                // Not run because an earlier statement failed (that failure is kept).
                PQclear(result)
            default:
                do {
                    try connection.check(result)
                    results.append(connection.read(result, statement: results.count < names.count ? names[results.count] : nil))
                } catch {
                    PQclear(result)
                    if failure == nil { failure = error }
                    if connection.isBroken { throw error }
                }
            }
            return false
        }
    }

    private func finishPipeline(_ handle: OpaquePointer, _ reader: PipelineReader) throws -> [PostgresRows] {
        guard PQexitPipelineMode(handle) == 1 else { throw lose(handle) }
        if let failure = reader.failure { throw failure }
        guard reader.results.count == reader.statements else {
            isBroken = true
            throw Self.lostError("a pipeline returned \(reader.results.count) results for \(reader.statements) statements")
        }
        return reader.results
    }

    private var isConnected: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }

    static func isCopy(_ result: OpaquePointer) -> Bool {
        let status = PQresultStatus(result)
        return status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH
    }

    /// COPY is not supported: the connection is mid-COPY and is not used again.
    private func copyRefused() -> PostgresError {
        isBroken = true
        return PostgresError(kind: .server, safeMessage: "COPY is not supported by this client")
    }

    /// A statement libpq refused to send: a lost connection if the connection is gone;
    /// otherwise the statement itself (e.g. too many binds), which retrying cannot help.
    /// Either way the connection is not used again (its state part-way through is unknown).
    private func sendFailure(_ handle: OpaquePointer) -> PostgresError {
        guard PQstatus(handle) == CONNECTION_OK else { return lose(handle) }
        isBroken = true
        return PostgresError(kind: .server, safeMessage: "the statement could not be sent",
                             serverMessage: String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Whether statements may be sent without blocking: on Linux, without TLS (OpenSSL
    /// may hold decrypted data the socket no longer signals, which libpq's own wait
    /// checks and an epoll wait cannot), and while the process's waiting thread runs.
    var canWaitWithoutBlocking: Bool {
        #if os(Linux)
        guard let handle else { return false }
        return PQsslInUse(handle) == 0 && SocketReadiness.shared.isRunning
        #else
        return false
        #endif
    }

    /// Marks the connection unusable and describes why.
    private func lose(_ handle: OpaquePointer? = nil) -> PostgresError {
        isBroken = true
        return Self.lostError((handle ?? self.handle).map { String(cString: PQerrorMessage($0)) })
    }

    /// What a prepared statement is reused for: the same text with the same bind types.
    ///
    /// The text is hashed once, when the key is made: a pipeline's key is looked up more
    /// than once, and hashing a statement's kilobyte of text each time showed in profiles.
    struct StatementKey: Hashable {
        let sql: String
        let types: [UInt32]
        private let textHash: Int

        init(_ query: PostgresQuery) {
            sql = query.sql
            types = query.binds.map { UInt32($0.type.rawValue) }
            textHash = sql.hashValue
        }

        static func == (a: StatementKey, b: StatementKey) -> Bool {
            a.textHash == b.textHash && a.types == b.types && a.sql == b.sql
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(textHash)
            hasher.combine(types)
        }
    }

    private func withBinds<R>(
        _ binds: [PostgresBind],
        _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R
    ) throws -> R {
        // Copy every bind into one contiguous buffer so the pointers stay valid for the call.
        var offsets: [Int] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        var buffer: [UInt8] = []
        offsets.reserveCapacity(binds.count)
        for bind in binds {
            offsets.append(buffer.count)
            if let bytes = bind.bytes {
                buffer += bytes
                lengths.append(Int32(bytes.count))
                if bind.format == .text { buffer.append(0) }
            } else {
                lengths.append(-1)
            }
            formats.append(bind.format.rawValue)
        }
        if buffer.isEmpty { buffer.append(0) }
        return buffer.withUnsafeBufferPointer { raw in
            let base = UnsafeRawPointer(raw.baseAddress!).assumingMemoryBound(to: CChar.self)
            let pointers: [UnsafePointer<CChar>?] = binds.indices.map { index in
                binds[index].bytes == nil ? nil : base + offsets[index]
            }
            return pointers.withUnsafeBufferPointer { pointerBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    formats.withUnsafeBufferPointer { formatBuffer in
                        body(pointerBuffer.baseAddress, lengthBuffer.baseAddress, formatBuffer.baseAddress)
                    }
                }
            }
        }
    }

    fileprivate func check(_ result: OpaquePointer?) throws {
        guard let handle else { throw Self.lostError(nil) }
        guard let result else {
            isBroken = PQstatus(handle) != CONNECTION_OK
            throw Self.lostError(String(cString: PQerrorMessage(handle)))
        }
        if Self.isCopy(result) { throw copyRefused() }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        default:
            if PQstatus(handle) != CONNECTION_OK {
                isBroken = true
                throw Self.lostError(String(cString: PQerrorMessage(handle)))
            }
            func field(_ code: Int32) -> String? {
                PQresultErrorField(result, code).map { String(cString: $0) }
            }
            let sqlState = field(Int32(UInt8(ascii: "C")))
            guard let sqlState else {
                isBroken = PQstatus(handle) != CONNECTION_OK
                throw Self.lostError(String(cString: PQerrorMessage(handle)))
            }
            var detail = field(Int32(UInt8(ascii: "M"))) ?? ""
            if let d = field(Int32(UInt8(ascii: "D"))) { detail += " — " + d }
            if sqlState.hasPrefix("08") || sqlState == "57P01" { isBroken = true }
            throw PostgresError(
                kind: .server, safeMessage: Self.describe(sqlState: sqlState), sqlState: sqlState,
                constraint: field(Int32(UInt8(ascii: "n"))), column: field(Int32(UInt8(ascii: "c"))),
                serverMessage: detail)
        }
    }

    static func lostError(_ message: String?) -> PostgresError {
        PostgresError(
            kind: .connectionLost, safeMessage: "the database connection was lost; the operation can be retried",
            serverMessage: message?.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A short, data-free description of an SQLSTATE class.
    static func describe(sqlState: String) -> String {
        switch sqlState {
        case "23505": return "unique constraint violated"
        case "23503": return "foreign key constraint violated"
        case "23502": return "not-null constraint violated"
        case "23514": return "check constraint violated"
        case "40001": return "serialization failure"
        case "40P01": return "deadlock detected"
        case "42501": return "permission denied"
        case "57014": return "statement cancelled (timeout)"
        case "55P03": return "lock not available (timeout)"
        default:
            switch sqlState.prefix(2) {
            case "22": return "invalid data"
            case "23": return "constraint violated"
            case "42": return "invalid statement"
            case "53": return "insufficient resources"
            case "57": return "operator intervention"
            default: return "statement failed"
            }
        }
    }

    /// Wraps a result; the rows own it from here on. The columns of a prepared statement's
    /// result are read once and kept for its later results.
    fileprivate func read(_ result: OpaquePointer, statement name: String?) -> PostgresRows {
        let affected = Self.affectedRows(result)
        guard let name else { return PostgresRows(storage: PostgresRows.Storage(result: result), affectedRows: affected) }
        if let layout = layouts[name], layout.matches(result) {
            return PostgresRows(storage: PostgresRows.Storage(result: result, layout: layout), affectedRows: affected)
        }
        let storage = PostgresRows.Storage(result: result)
        layouts[name] = storage.layout
        return PostgresRows(storage: storage, affectedRows: affected)
    }

    /// `PQcmdTuples` as a number (0 for statements that change no rows).
    private static func affectedRows(_ result: OpaquePointer) -> Int {
        guard let text = PQcmdTuples(result) else { return 0 }
        var value = 0
        var pointer = text
        while pointer.pointee != 0 {
            let digit = Int(pointer.pointee) - 48
            guard digit >= 0, digit <= 9 else { return 0 }
            let (tens, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (sum, carried) = tens.addingReportingOverflow(digit)
            guard !overflowed, !carried else { return 0 }  // as `Int(String)` gave
            value = sum
            pointer += 1
        }
        return value
    }

    // MARK: - LISTEN / NOTIFY support

    var socket: Int32 { handle.map { PQsocket($0) } ?? -1 }

    /// Reads available input and returns queued notifications without blocking.
    func drainNotifications() throws -> [PostgresNotification] {
        guard let handle else { throw Self.lostError(nil) }
        if PQconsumeInput(handle) == 0 {
            isBroken = true
            throw Self.lostError(String(cString: PQerrorMessage(handle)))
        }
        var out: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            let channel = String(cString: notify.pointee.relname)
            let payload = String(cString: notify.pointee.extra)
            out.append(PostgresNotification(channel: channel, payload: payload, isReconnect: false))
            PQfreemem(notify)
        }
        return out
    }
}
