import Foundation

/// rpc-bench — see Tests/Benchmarks/README.md and `make bench-rpc`.
///
///   rpc-bench serve (wholecare|grpc|nio) PORT            run a server until killed
///   rpc-bench compare [SECONDS]                           the full comparison table
///   rpc-bench memory [CALLS]                              server RSS across a long run and bad frames
let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: rpc-bench serve KIND PORT | compare [SECONDS] | memory [CALLS]")
    exit(2)
}
switch arguments[1] {
case "serve":
    guard arguments.count == 4, let kind = ServerKind(rawValue: arguments[2]), let port = Int(arguments[3]) else { exit(2) }
    try await BenchServers.serve(kind: kind, port: port)
case "compare":
    let seconds = arguments.count > 2 ? Double(arguments[2]) ?? 5 : 5
    try await Compare.run(seconds: seconds)
case "load":
    // rpc-bench load PORT SECONDS: 64 in flight against a server started separately (profiling).
    let port = Int(arguments[2])!
    let client = WholeCareLoad.make(port: port)
    let result = try await AsyncLoad.run(inflight: 64, seconds: Double(arguments[3]) ?? 5, call: client.call)
    print("\(result.calls) calls, \(Int(result.callsPerSecond)) calls/s")
    await client.close()
case "memory":
    let calls = arguments.count > 2 ? Int(arguments[2]) ?? 1_000_000 : 1_000_000
    try await MemoryCheck.run(calls: calls)
default:
    print("unknown command \(arguments[1])")
    exit(2)
}
