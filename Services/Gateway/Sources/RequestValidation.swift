import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A JSON value as parsed for validation: booleans and numbers kept apart (which
/// `JSONSerialization` does not do reliably on Linux).
enum JSONInput: Decodable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONInput]), object([String: JSONInput])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONInput].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONInput].self)) }
    }

    init(any value: Any) {
        switch value {
        case let v as String: self = .string(v)
        case let v as Bool: self = .bool(v)
        case let v as Int: self = .number(Double(v))
        case let v as Double: self = .number(v)
        case let v as [Any]: self = .array(v.map(JSONInput.init(any:)))
        case let v as [String: Any]: self = .object(v.mapValues(JSONInput.init(any:)))
        default: self = .null
        }
    }
}

/// A compiled pattern; `NSRegularExpression` matching is thread-safe.
struct Pattern: @unchecked Sendable {
    let regex: NSRegularExpression

    func matches(_ text: String) -> Bool {
        regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}

/// The subset of JSON Schema 2020-12 the gateway's OpenAPI document uses for requests,
/// compiled once at start-up. The gateway enforces exactly what the document says, so
/// the contract and the server cannot drift apart (schemathesis checks both directions).
final class JSONSchema: Sendable {
    let types: Set<String>?
    let properties: [String: JSONSchema]
    let required: [String]
    let closed: Bool
    /// The schema of properties not named in `properties` (a map), if any.
    let additional: JSONSchema?
    let maxProperties: Int?
    let items: JSONSchema?
    let minItems: Int?, maxItems: Int?
    let minLength: Int?, maxLength: Int?
    let pattern: Pattern?
    let allowed: [JSONInput]?
    let minimum: Double?, maximum: Double?
    let anyOf: [JSONSchema]
    /// A schema the value must not match (used for "at most one of these fields").
    let not: JSONSchema?
    /// What to say when a pattern or format does not match (never the value itself).
    let expectation: String

    init(_ raw: [String: Any], components: [String: Any], depth: Int = 0) throws {
        var raw = raw
        if let reference = raw["$ref"] as? String {
            let name = String(reference.split(separator: "/").last ?? "")
            guard depth < 32, let target = components[name] as? [String: Any] else {
                throw OpenAPIError("unresolvable or too deeply nested reference \(reference)")
            }
            raw = target.merging(raw.filter { $0.key != "$ref" }) { _, own in own }
        }
        if let type = raw["type"] as? String { types = [type] }
        else if let list = raw["type"] as? [String] { types = Set(list) }
        else { types = nil }
        var properties: [String: JSONSchema] = [:]
        for (name, schema) in raw["properties"] as? [String: Any] ?? [:] {
            properties[name] = try JSONSchema(schema as? [String: Any] ?? [:], components: components, depth: depth + 1)
        }
        self.properties = properties
        required = raw["required"] as? [String] ?? []
        closed = (raw["additionalProperties"] as? Bool) == false
        additional = try (raw["additionalProperties"] as? [String: Any]).map { try JSONSchema($0, components: components, depth: depth + 1) }
        maxProperties = raw["maxProperties"] as? Int
        items = try (raw["items"] as? [String: Any]).map { try JSONSchema($0, components: components, depth: depth + 1) }
        minItems = raw["minItems"] as? Int
        maxItems = raw["maxItems"] as? Int
        minLength = raw["minLength"] as? Int
        maxLength = raw["maxLength"] as? Int
        if let text = raw["pattern"] as? String {
            // Unix line separators: `$` matches only at the end or before a final "\n", as in
            // the JSON Schema tools (Python's `re`) that generate and check requests.
            do { pattern = Pattern(regex: try NSRegularExpression(pattern: text, options: [.useUnixLineSeparators])) }
            catch { throw OpenAPIError("pattern \(text) does not compile") }
        } else {
            pattern = nil
        }
        if let list = raw["enum"] as? [Any] { allowed = list.map(JSONInput.init(any:)) }
        else if let value = raw["const"] { allowed = [JSONInput(any: value)] }
        else { allowed = nil }
        minimum = (raw["minimum"] as? NSNumber)?.doubleValue
        maximum = (raw["maximum"] as? NSNumber)?.doubleValue
        anyOf = try (raw["anyOf"] as? [[String: Any]] ?? []).map { try JSONSchema($0, components: components, depth: depth + 1) }
        not = try (raw["not"] as? [String: Any]).map { try JSONSchema($0, components: components, depth: depth + 1) }
        expectation = raw["x-expectation"] as? String ?? Self.defaultExpectation(format: raw["format"] as? String)
    }

    static func defaultExpectation(format: String?) -> String {
        switch format {
        case "uuid": return "must be an id (a UUID)"
        case "email": return "must be an e-mail address"
        case "date": return "must be a date like 2026-11-26"
        default: return "is not in the expected form"
        }
    }

    struct Failure: Error, Sendable {
        let field: String
        let message: String
    }

    /// The first way `value` breaks the schema, naming the field by its dotted path.
    func check(_ value: JSONInput, at path: String) -> Failure? {
        func fail(_ message: String) -> Failure { Failure(field: path.isEmpty ? "body" : path, message: message) }
        if let types {
            let ok: Bool
            switch value {
            case .null: ok = types.contains("null")
            case .bool: ok = types.contains("boolean")
            case .string: ok = types.contains("string")
            case .array: ok = types.contains("array")
            case .object: ok = types.contains("object")
            case .number(let n): ok = types.contains("number") || (types.contains("integer") && n.rounded() == n && n.isFinite)
            }
            if !ok { return fail("must be \(Self.describe(types))") }
        }
        if let allowed, !allowed.contains(value) {
            let names = allowed.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
            return fail(names.isEmpty || names.count > 12 ? "is not an allowed value" : "must be one of " + names.joined(separator: ", "))
        }
        switch value {
        case .string(let text):
            let length = text.unicodeScalars.count
            if let minLength, length < minLength { return fail(minLength == 1 ? "is required" : "must be at least \(minLength) characters") }
            if let maxLength, length > maxLength { return fail("must be at most \(maxLength) characters") }
            if let pattern, !pattern.matches(text) { return fail(expectation) }
        case .number(let n):
            if let minimum, n < minimum { return fail("must be at least \(Self.number(minimum))") }
            if let maximum, n > maximum { return fail("must be at most \(Self.number(maximum))") }
        case .array(let elements):
            if let minItems, elements.count < minItems { return fail("needs at least \(minItems) item\(minItems == 1 ? "" : "s")") }
            if let maxItems, elements.count > maxItems { return fail("takes at most \(maxItems) items") }
            if let items {
                for (index, element) in elements.enumerated() {
                    if let failure = items.check(element, at: "\(path)[\(index)]") { return failure }
                }
            }
        case .object(let members):
            for name in required where members[name] == nil {
                return Failure(field: path.isEmpty ? name : path + "." + name, message: "is required")
            }
            if let maxProperties, members.count > maxProperties { return fail("takes at most \(maxProperties) entries") }
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                let memberPath = path.isEmpty ? name : path + "." + name
                if let schema = properties[name] ?? additional {
                    if let failure = schema.check(member, at: memberPath) { return failure }
                } else if closed {
                    return Failure(field: memberPath, message: "is not a field this request takes")
                }
            }
        case .null, .bool:
            break
        }
        if let not, not.check(value, at: path) == nil { return fail(expectation) }
        if !anyOf.isEmpty {
            var first: Failure?
            for option in anyOf {
                guard let failure = option.check(value, at: path) else { return nil }
                if first == nil { first = failure }
            }
            return first
        }
        return nil
    }

    static func describe(_ types: Set<String>) -> String {
        let words = ["object": "an object", "array": "a list", "string": "text", "integer": "a whole number",
                     "number": "a number", "boolean": "true or false", "null": "null"]
        return types.sorted().map { words[$0] ?? $0 }.joined(separator: " or ")
    }

    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}

struct OpenAPIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What an operation's request must look like: its query, header and path parameters
/// and its JSON body, from the OpenAPI document.
struct OperationRules: Sendable {
    struct Parameter: Sendable {
        let name: String
        let location: String
        let required: Bool
        let schema: JSONSchema
    }

    let parameters: [Parameter]
    let body: JSONSchema?
    let bodyRequired: Bool
    /// False for operations the document marks `security: []` (registration, sign-in) or
    /// whose security list allows `{}`, no credential (sign-out, which also takes a refresh
    /// token alone); such handlers authenticate for themselves.
    let secured: Bool

    /// Rules for every operation in the document, by operation id.
    static func load(from document: Data) throws -> [String: OperationRules] {
        guard let root = try JSONSerialization.jsonObject(with: document) as? [String: Any],
              let paths = root["paths"] as? [String: [String: Any]] else { throw OpenAPIError("not an OpenAPI document") }
        let components = (root["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
        var rules: [String: OperationRules] = [:]
        for (_, operations) in paths {
            for (_, value) in operations {
                guard let operation = value as? [String: Any], let id = operation["operationId"] as? String else { continue }
                var parameters: [Parameter] = []
                for parameter in operation["parameters"] as? [[String: Any]] ?? [] {
                    guard let name = parameter["name"] as? String, let location = parameter["in"] as? String else { continue }
                    parameters.append(Parameter(
                        name: name, location: location, required: parameter["required"] as? Bool ?? false,
                        schema: try JSONSchema(parameter["schema"] as? [String: Any] ?? [:], components: components)))
                }
                var body: JSONSchema?
                var bodyRequired = false
                if let requestBody = operation["requestBody"] as? [String: Any],
                   let schema = ((requestBody["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any] {
                    body = try JSONSchema(schema, components: components)
                    bodyRequired = requestBody["required"] as? Bool ?? false
                }
                // `security: []`, or a list with an empty requirement `{}`: a token is optional.
                let security = operation["security"] as? [[String: Any]]
                let secured = !(security.map { $0.isEmpty || $0.contains { $0.isEmpty } } ?? false)
                rules[id] = OperationRules(parameters: parameters, body: body, bodyRequired: bodyRequired, secured: secured)
            }
        }
        return rules
    }

    /// Checks the parameters and body; returns the request with its body already read
    /// (so the route can read it again). Refusals are 400 problems naming the field.
    func validate(_ request: Request, context: GatewayContext, maxBodyBytes: Int) async throws -> Request {
        let query = request.uri.queryParameters
        for parameter in parameters {
            let raw: String?
            switch parameter.location {
            case "query": raw = query[parameter.name[...]].map(String.init)
            case "header": raw = HTTPField.Name(parameter.name).flatMap { request.headers[$0] }
            case "path": raw = context.parameters.get(parameter.name)
            default: raw = nil
            }
            guard let raw else {
                if parameter.required { throw Problem.badRequest("\(parameter.name) is required", field: parameter.name) }
                continue
            }
            if let failure = parameter.schema.check(Self.typed(raw, for: parameter.schema), at: parameter.name) {
                throw Problem.badRequest("\(failure.field): \(failure.message)", field: failure.field)
            }
        }
        guard let body else { return request }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw Problem(status: .contentTooLarge, type: "body-too-large", title: "Content Too Large",
                          detail: "the request body is larger than \(maxBodyBytes) bytes")
        }
        request.body = .init(buffer: buffer)
        if buffer.readableBytes == 0 {
            if bodyRequired { throw Problem.badRequest("this request needs a JSON body", field: "body") }
            return request
        }
        if let contentType = request.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
            throw Problem(status: .unsupportedMediaType, type: "unsupported-media-type", title: "Unsupported Media Type",
                          detail: "send application/json")
        }
        let value: JSONInput
        do {
            value = try JSONDecoder().decode(JSONInput.self, from: Data(buffer.readableBytesView))
        } catch {
            throw Problem.badRequest("the body is not valid JSON", field: "body")
        }
        if let failure = body.check(value, at: "") {
            throw Problem.badRequest("\(failure.field): \(failure.message)", field: failure.field)
        }
        return request
    }

    /// A query or header value as the JSON type its schema expects (so `page_size=10` is
    /// a number, `page_size=ten` is text that fails the type check).
    static func typed(_ raw: String, for schema: JSONSchema) -> JSONInput {
        guard let types = schema.types else { return .string(raw) }
        if types.contains("integer"), !types.contains("number") {
            if let number = Int64(raw), raw.first != "+" { return .number(Double(number)) }
        } else if types.contains("number"), let number = Double(raw), number.isFinite,
                  raw.allSatisfy({ $0.isASCII && ($0.isNumber || "-.eE".contains($0)) }) {
            return .number(number)
        }
        if types.contains("boolean"), raw == "true" || raw == "false" { return .bool(raw == "true") }
        return .string(raw)
    }
}
