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
