import COpenSSL
// Hex digits live with ids in UUIDText; re-exported so users of this module keep `Hex`.
@_exported import UUIDText

/// SHA-256 and HMAC-SHA256.
public enum Digest {
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        let ok = data.withUnsafeBytes { input in
            out.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        precondition(ok == 1, "SHA-256 failed")
        return out
    }

    public static func sha256(_ text: String) -> [UInt8] { sha256(Array(text.utf8)) }

    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        let result = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer { o in
                    HMAC(EVP_sha256(), k.baseAddress, Int32(key.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self),
                         data.count, o.baseAddress, &length)
                }
            }
        }
        precondition(result != nil, "HMAC-SHA256 failed")
        return out
    }
}

