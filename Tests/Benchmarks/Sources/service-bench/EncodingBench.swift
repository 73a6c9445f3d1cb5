import Contracts
import Foundation
import RPC

/// `service-bench encoding`: a 500-entry record summary (about 255 KB) encoded 200 times by
/// swift-protobuf's `serializedBytes()` and by the RPC layer's one-pass `WireEncoder`.
func encodingBench() async throws {
    var summary = Wholecare_Records_V1_Summary()
    summary.activeConditions = (0..<500).map { n in
        var entry = Wholecare_Records_V1_Entry()
        entry.id = UUID().uuidString.lowercased()
        entry.personID = entry.id
        entry.lineageID = entry.id
        entry.kind = .goal
        entry.status = .active
        entry.source.kind = .professional
        entry.source.display = "Dr Priya Shah, Riverside Surgery"
        entry.source.authorID = entry.id
        entry.code.system = "http://snomed.info/sct"
        entry.code.code = String(n)
        entry.code.display = "Type 2 diabetes mellitus"
        entry.text = String(repeating: "note ", count: 40)
        entry.effectiveStart = "2026-01-01"
        entry.recordedAt = "2026-11-27T10:00:00Z"
        entry.goal.target = "walk"
        entry.goal.latestProgress.percent = 50
        entry.goal.latestProgress.note = "good"
        return entry
    }
    let fixed = summary
    func microseconds(_ encode: () throws -> Data) rethrows -> (Double, Int) {
        let start = DispatchTime.now().uptimeNanoseconds
        var size = 0
        for _ in 0..<200 { size = try encode().count }
        return (Double(DispatchTime.now().uptimeNanoseconds - start) / 200 / 1000, size)
    }
    let (theirs, size) = try microseconds { try fixed.serializedBytes() }
    let (ours, _) = try microseconds { try WireEncoder.encode(fixed) }
    print("summary of 500 entries, \(size) bytes: swift-protobuf \(Int(theirs)) µs, WireEncoder \(Int(ours)) µs")
}
