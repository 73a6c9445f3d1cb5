import Foundation
import HTTPTypes
import Hummingbird

#if canImport(Glibc)
import Glibc
#endif

/// An IP address or CIDR range (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`), for the
/// load balancers and proxies whose `X-Forwarded-For` the gateway believes.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let bytes = Self.parse(String(first)) else { return nil }
        let bits = bytes.count * 8
        guard var length = parts.count == 2 ? Int(parts[1]) : bits else { return nil }
        // An IPv4-mapped IPv6 range (::ffff:10.0.0.0/104) parses to four bytes.
        if bytes.count == 4, first.contains(":"), parts.count == 2 { length -= 96 }
        guard (0...bits).contains(length) else { return nil }
        self.bytes = bytes
        self.prefixLength = length
    }

    public func contains(_ address: String) -> Bool {
        Self.parse(address).map(contains(bytes:)) ?? false
    }

    func contains(bytes other: [UInt8]) -> Bool {
        guard other.count == bytes.count else { return false }
        var remaining = prefixLength
        for (a, b) in zip(bytes, other) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if a & mask != b & mask { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { "\(bytes.count == 4 ? "IPv4" : "IPv6")/\(prefixLength)" }

    /// Four bytes for IPv4, sixteen for IPv6 (an IPv4-mapped IPv6 address counts as IPv4).
    static func parse(_ text: String) -> [UInt8]? {
        let text = text.trimmingCharacters(in: .whitespaces)
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes[12...]) }
        return bytes
    }
}

extension API {
    /// The client's address for rate limiting: the TCP peer, unless that peer is a trusted
    /// proxy (`GATEWAY_TRUSTED_PROXIES`), in which case the right-most `X-Forwarded-For`
    /// entry that is not itself a trusted proxy. Entries further left were written by the
    /// client and could be anything, so they are never believed.
    func clientAddress(_ request: Request, _ context: GatewayContext) -> String {
        let trusted = settings.trustedProxies
        func isTrusted(_ bytes: [UInt8]) -> Bool { trusted.contains { $0.contains(bytes: bytes) } }
        guard !trusted.isEmpty, let peer = AddressRange.parse(context.remoteAddress), isTrusted(peer) else { return context.remoteAddress }
        let forwarded = request.headers[values: .xForwardedFor].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        for entry in forwarded.reversed() {
            let hop = Self.hostPart(entry)
            // An entry that is not an address is not believed: the proxy's own address counts.
            guard let bytes = AddressRange.parse(hop) else { return context.remoteAddress }
            if !isTrusted(bytes) { return hop }
        }
        return context.remoteAddress
    }

    /// What a per-address limit counts by: an IPv4 address as it is; an IPv6 address by its
    /// /64, the network one customer is given, within which a client can pick any address.
    public static func rateLimitKey(_ address: String) -> String {
        guard let bytes = AddressRange.parse(address) else { return address }
        // IPv4, also when written IPv4-mapped (`::ffff:203.0.113.7`): one way of writing it.
        guard bytes.count == 16 else { return bytes.map { String($0) }.joined(separator: ".") }
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for index in stride(from: 0, to: 8, by: 2) {
            for byte in [bytes[index], bytes[index + 1]] {
                text.append(hex[Int(byte >> 4)])
                text.append(hex[Int(byte & 0x0f)])
            }
            text.append(UInt8(ascii: ":"))
        }
        return String(decoding: text, as: UTF8.self) + ":/64"
    }

    /// `203.0.113.7:4711` → `203.0.113.7`, `[2001:db8::1]:443` → `2001:db8::1`; a bare
    /// address is returned as it is (some balancers write ports, RFC 7239 style).
    public static func hostPart(_ entry: String) -> String {
        if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
            return String(entry[entry.index(after: entry.startIndex)..<close])
        }
        let colons = entry.filter { $0 == ":" }.count
        if colons == 1, let colon = entry.firstIndex(of: ":") { return String(entry[..<colon]) }
        return entry
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}
