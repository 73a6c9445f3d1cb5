import Foundation
import Postgres
import TestSupport
import Testing

@Suite("Queries, binds and decoding")
struct QueryTests {
    @Test("an injection string is stored and read back as plain data")
    func injectionRoundTrips() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            try await db.query("CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL)")
            let hostile = "Robert'); DROP TABLE people; -- \" $1 \\ 💥"
            try await db.query("INSERT INTO people (name) VALUES (\(hostile))")
            let rows = try await db.query("SELECT name FROM people WHERE name = \(hostile)")
            #expect(rows.count == 1)
            #expect(try rows[0].decode("name", as: String.self) == hostile)
            // The table is still there with exactly one row.
            #expect(try await db.query("SELECT count(*) AS n FROM people")[0].decode("n", as: Int.self) == 1)
        }
    }

    @Test("the description of a query redacts its bind values")
    func descriptionRedactsBinds() {
        let secret = "nhs-number-943 476 5919"
        let query: PostgresQuery = "SELECT * FROM people WHERE nhs = \(secret) AND age > \(40)"
        #expect(query.sql == "SELECT * FROM people WHERE nhs = $1 AND age > $2")
        #expect(!query.description.contains(secret))
        #expect(!"\(query)".contains("943"))
        #expect(query.description.contains("2 binds redacted"))
    }

    @Test("appending queries renumbers placeholders")
    func appendRenumbers() {
        var query: PostgresQuery = "SELECT * FROM t WHERE a = \(1) AND b = \(2)"
        for i in 3...12 { query.append(" AND c\(unsafeRaw: String(i)) = \(i)") }
        #expect(query.binds.count == 12)
        #expect(query.sql.hasSuffix("c12 = $12"))
        #expect(query.sql.contains("c10 = $10"))
    }

    @Test("values of every supported type round-trip")
    func typesRoundTrip() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            let id = UUID()
            let when = Date(timeIntervalSince1970: 1_790_000_000.123456)
            let bytes = PostgresBytes([0, 1, 2, 0xff, 0x5c, 0x78])
            let rows = try await db.query("""
                SELECT \(Int64.max)::int8 AS big, \(Int32(-7))::int4 AS small, \(42) AS int, \(true) AS flag,
                       \(3.25)::float8 AS real, \(id)::uuid AS id, \(when)::timestamptz AS at, \(bytes)::bytea AS raw,
                       \(["a", "b c", "d\"e", "f,g", "NULL"])::text[] AS names, \(Optional<String>.none)::text AS missing,
                       \([Int64(1), 2, 3])::int8[] AS numbers, '2026-11-26'::date::text AS day
                """)
            let row = rows[0]
            #expect(try row.decode("big", as: Int64.self) == Int64.max)
            #expect(try row.decode("small", as: Int32.self) == -7)
            #expect(try row.decode("int", as: Int.self) == 42)
            #expect(try row.decode("flag", as: Bool.self))
            #expect(try row.decode("real", as: Double.self) == 3.25)
            #expect(try row.decode("id", as: UUID.self) == id)
            let at = try row.decode("at", as: Date.self)
            #expect(abs(at.timeIntervalSince1970 - when.timeIntervalSince1970) < 0.000_002)
            #expect(try row.decode("raw", as: PostgresBytes.self) == bytes)
            #expect(try row.decode("names", as: [String].self) == ["a", "b c", "d\"e", "f,g", "NULL"])
            #expect(try row.decode("missing", as: String?.self) == nil)
            #expect(try row.decode("numbers", as: [Int64].self) == [1, 2, 3])
            #expect(try row.decode("day", as: String.self) == "2026-11-26")
        }
    }

    @Test("timestamps read from text are the instants PostgreSQL means, across leap days, centuries, both sides of 1970 and written offsets")
    func timestampsMatchTheServer() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            // The server's own count of seconds since 1970 beside each timestamp it prints.
            let rows = try await db.query("""
                SELECT t, round(extract(epoch FROM t) * 1000000)::int8 AS micros FROM (
                    SELECT generate_series('1600-02-27 13:45:07.25+00'::timestamptz, '2399-12-31 23:59:59+00'::timestamptz,
                                           interval '1709 days 7 hours 13 minutes 1.000001 seconds') AS t
                    UNION ALL SELECT unnest(ARRAY['1900-02-28 23:59:59.999999+00', '1900-03-01 00:00:00+00', '2000-02-29 12:00:00+00',
                        '2000-03-01 00:00:00+00', '2100-02-28 00:00:00+00', '2100-03-01 00:00:00+00', '1970-01-01 00:00:00+00',
                        '1969-12-31 23:59:59.999999+00', '0001-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00']::timestamptz[])
                ) AS v
                """)
            #expect(rows.count > 150)
            for row in rows {
                let micros = try row.decode("micros", as: Int64.self)
                let date = try row.decode("t", as: Date.self)
                // (A `Date` is a `Double`: centuries away from 2001 it holds the instant to a
                // microsecond or two; a wrong day or second would be off by millions.)
                #expect(abs((date.timeIntervalSince1970 * 1_000_000).rounded() - Double(micros)) <= 4, "\(micros)")
            }
            // Offsets as PostgreSQL writes them for other time zones (hours, minutes, seconds).
            let written = try await db.query("""
                SELECT '2026-11-27 10:00:00+05:30'::text AS east, '2026-11-27 10:00:00-03'::text AS west,
                       '1912-01-01 00:00:00+00:19:32'::text AS seconds, '2026-13-01 00:00:00+00'::text AS month13,
                       '0044-03-15 12:00:00+00 BC'::timestamptz AS bc, '2026-11-27 10:00:00+05:3x'::text AS torn
                """)[0]
            #expect(try written.decode("east", as: Date.self).timeIntervalSince1970 == 1_795_753_800)
            #expect(try written.decode("west", as: Date.self).timeIntervalSince1970 == 1_795_784_400)
            #expect(try written.decode("seconds", as: Date.self).timeIntervalSince1970 == -1_830_384_000 - 1172)
            #expect(throws: PostgresError.self) { try written.decode("month13", as: Date.self) }
            // Read as AD, a date before 1 AD would be two thousand years off: refused.
            #expect(throws: PostgresError.self) { try written.decode("bc", as: Date.self) }
            #expect(throws: PostgresError.self) { try written.decode("torn", as: Date.self) }
        }
    }

    @Test("a result asked for in the binary format decodes to exactly what the text format gives, alone and beside text results in a pipeline; types it cannot read are refused naming the column")
    func binaryResults() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            let id = UUID()
            let query: PostgresQuery = """
                SELECT \(Int64.min)::int8 AS big, (-2147483648)::int4 AS four, (-32768)::int2 AS two, true AS yes, false AS no,
                       \(id)::uuid AS id, '\\x00ff10'::bytea AS raw, ''::bytea AS empty,
                       '1969-12-31 23:59:59.999999+00'::timestamptz AS before, '2026-11-27 23:59:59.123456+00'::timestamptz AS at,
                       '2000-01-01 00:00:00'::timestamp AS local, 'é 😀 "q"'::text AS word, 'v'::varchar AS short,
                       '{"a": [1, "é"]}'::jsonb AS doc, 2.5::float8 AS real, 0.25::float4 AS small, 0.1::float4 AS tenth,
                       NULL::uuid AS no_id, NULL::text AS no_text, NULL::timestamptz AS no_time
                """
            let rows = try await db.withConnection { session in try await session.pipeline([query.binaryResults(), query]) }
            let (binary, text) = (rows[0][0], rows[1][0])
            func same<T: PostgresDecodable & Equatable>(_ column: String, _ type: T.Type) throws {
                #expect(try binary.decode(column, as: T.self) == text.decode(column, as: T.self), "\(column)")
            }
            for column in ["big", "four", "two"] {
                try same(column, Int64.self)
                try same(column, Int.self)
            }
            try same("four", Int32.self)
            try same("two", Int32.self)
            #expect(throws: PostgresError.self) { try binary.decode("big", as: Int32.self) }
            try same("yes", Bool.self)
            try same("no", Bool.self)
            try same("id", UUID.self)
            #expect(try binary.decode("id", as: UUID.self) == id)
            try same("raw", PostgresBytes.self)
            try same("empty", PostgresBytes.self)
            try same("before", Date.self)
            try same("at", Date.self)
            try same("local", Date.self)
            try same("word", String.self)
            try same("short", String.self)
            try same("doc", String.self)
            try same("real", Double.self)
            try same("small", Double.self)
            try same("tenth", Double.self)
            try same("no_id", UUID?.self)
            try same("no_text", String?.self)
            try same("no_time", Date?.self)
            #expect(throws: PostgresError.self) { try binary.decode("no_id", as: UUID.self) }
            // Cells by position, as hot loops read them.
            try binary.withCells { (cells: PostgresCells) throws in
                #expect(cells.isBinary(5))
                #expect(try cells.uuid(5) == id)
                #expect(try cells.decode(0, as: Int64.self) == .min)
                #expect(try cells.decode(11, as: String.self) == "é 😀 \"q\"")
            }
            try text.withCells { (cells: PostgresCells) throws in
                #expect(!cells.isBinary(5))
                #expect(try cells.uuid(5) == id)
            }
            // Wrong types are refused, naming the column; a type with no binary reading
            // (date, numeric, infinity) too.
            #expect(throws: PostgresError.self) { try binary.decode("word", as: UUID.self) }
            #expect(throws: PostgresError.self) { try binary.decode("id", as: String.self) }
            #expect(throws: PostgresError.self) { try binary.decode("four", as: Date.self) }
            let others: PostgresQuery = "SELECT '2026-11-27'::date AS day, 1.5::numeric AS amount, 'infinity'::timestamptz AS never"
            let other = try await db.query(others.binaryResults())[0]
            for (column, decode) in [("day", { _ = try other.decode("day", as: String.self) }),
                                     ("amount", { _ = try other.decode("amount", as: Double.self) }),
                                     ("never", { _ = try other.decode("never", as: Date.self) })] as [(String, () throws -> Void)] {
                let error = #expect(throws: PostgresError.self) { try decode() }
                #expect(error?.column == column)
            }
        }
    }

    @Test("cells are read from the server's text at their limits, and anything out of range or malformed is refused")
    func edgeValuesFromText() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            let row = try await db.query("""
                SELECT '-9223372036854775808'::int8 AS low, '9223372036854775807'::int8 AS high, '0'::int8 AS zero,
                       '2147483648'::int8 AS past_int32, '-2147483648'::int4 AS low32, false AS no,
                       'ABCDEF01-2345-6789-abcd-ef0123456789'::uuid AS id, ''::bytea AS empty, '\\xDEADbeef'::bytea AS mixed,
                       '1969-12-31 23:59:59.5+00'::timestamptz AS before_epoch, 'x1'::text AS word, '12-'::text AS dash,
                       '-'::text AS sign, '\\x0g'::text AS not_hex, '0123456789abcdef0123456789abcdef0123'::text AS not_id,
                       99999999999999999999::numeric::text AS too_big, 'é'::text AS accent
                """)[0]
            #expect(try row.decode("low", as: Int64.self) == .min)
            #expect(try row.decode("high", as: Int64.self) == .max)
            #expect(try row.decode("zero", as: Int.self) == 0)
            #expect(try row.decode("low32", as: Int32.self) == .min)
            #expect(try row.decode("past_int32", as: Int64.self) == 2_147_483_648)
            #expect(throws: PostgresError.self) { try row.decode("past_int32", as: Int32.self) }
            #expect(try row.decode("no", as: Bool.self) == false)
            #expect(try row.decode("id", as: UUID.self) == UUID(uuidString: "abcdef01-2345-6789-abcd-ef0123456789"))
            #expect(try row.decode("empty", as: PostgresBytes.self).bytes.isEmpty)
            #expect(try row.decode("mixed", as: PostgresBytes.self).bytes == [0xDE, 0xAD, 0xBE, 0xEF])
            #expect(try row.decode("before_epoch", as: Date.self).timeIntervalSince1970 == -0.5)
            #expect(try row.decode("accent", as: String.self) == "é")
            for column in ["word", "dash", "sign", "too_big", "accent"] {
                #expect(throws: PostgresError.self) { try row.decode(column, as: Int64.self) }
            }
            #expect(throws: PostgresError.self) { try row.decode("not_hex", as: PostgresBytes.self) }
            #expect(throws: PostgresError.self) { try row.decode("not_id", as: UUID.self) }
            #expect(throws: PostgresError.self) { try row.decode("word", as: Date.self) }
            #expect(throws: PostgresError.self) { try row.decode("word", as: Bool.self) }
        }
    }

    @Test("array binds (sent in the binary format) arrive whole: empty, large, and with quotes, commas, backslashes and non-ASCII text")
    func arrayBinds() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            let ids = (0..<1000).map { _ in UUID() }
            let amounts = (0..<1000).map { Int64($0) * 7_919 - 3_000_000 } + [.min, .max]
            let words = ["", "a,b", "\"quoted\"", "back\\slash", "{braces}", "NULL", "null", "é 💥 ß", " spaced "]
            let row = try await db.query("""
                SELECT cardinality(\([UUID]())::uuid[]) AS no_ids, cardinality(\([String]())::text[]) AS no_words,
                       cardinality(\([Int64]())::int8[]) AS no_amounts, \(ids)::uuid[] AS ids, \(amounts)::int8[] AS amounts,
                       \(words)::text[] AS words, (SELECT sum(a)::text FROM unnest(\(amounts)::int8[]) AS a) AS total,
                       \(words)::text[] = ARRAY['', 'a,b', '"quoted"', 'back\\slash', '{braces}', 'NULL', 'null', 'é 💥 ß', ' spaced ']
                           AS same_words
                """)[0]
            #expect(try row.decode("no_ids", as: Int.self) == 0)
            #expect(try row.decode("no_words", as: Int.self) == 0)
            #expect(try row.decode("no_amounts", as: Int.self) == 0)
            #expect(try row.decode("ids", as: [UUID].self) == ids)
            #expect(try row.decode("amounts", as: [Int64].self) == amounts)
            #expect(try row.decode("words", as: [String].self) == words)
            let total = amounts.dropLast(2).reduce(Int64(0), +) - 1  // .min + .max == -1
            #expect(try row.decode("total", as: String.self) == String(total))
            #expect(try row.decode("same_words", as: Bool.self))
        }
    }

    @Test("decoding errors name the column and the expected type")
    func decodingErrorsNameColumn() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            let row = try await db.query("SELECT 'abc'::text AS label, NULL::int8 AS amount")[0]
            let wrongType = #expect(throws: PostgresError.self) { try row.decode("label", as: Int64.self) }
            #expect(wrongType?.kind == .decoding)
            #expect(wrongType?.description.contains("\"label\"") == true)
            #expect(wrongType?.description.contains("Int64") == true)
            let null = #expect(throws: PostgresError.self) { try row.decode("amount", as: Int64.self) }
            #expect(null?.description.contains("NULL") == true)
            #expect(null?.description.contains("\"amount\"") == true)
            let missing = #expect(throws: PostgresError.self) { try row.decode("nope", as: String.self) }
            #expect(missing?.description.contains("\"nope\"") == true)
            // The same through a row's cells (read without a name per cell).
            let viaCells = #expect(throws: PostgresError.self) { try row.withCells { try $0.decode(0, as: Int64.self) } }
            #expect(viaCells?.description.contains("\"label\"") == true)
            #expect(try row.withCells { try $0.decode(0, as: String.self) } == "abc")
            #expect(try row.withCells { try $0.decode(1, as: Int64?.self) } == nil)
            #expect(throws: PostgresError.self) { try row.withCells { try $0.utf8(2) } }
        }
    }

    @Test("server errors carry SQLSTATE and keep values out of the description")
    func serverErrorsCarrySQLState() async throws {
        try await TestDatabase.withFreshSchema { db, _ in
            try await db.query("CREATE TABLE emails (address text PRIMARY KEY)")
            let address = "jo.bloggs@example.org"
            try await db.query("INSERT INTO emails VALUES (\(address))")
            let error = await #expect(throws: PostgresError.self) {
                try await db.query("INSERT INTO emails VALUES (\(address))")
            }
            #expect(error?.sqlState == "23505")
            #expect(error?.isUniqueViolation == true)
            #expect(error?.constraint == "emails_pkey")
            #expect(error?.description.contains(address) == false)
        }
    }
}
