#!/usr/bin/env bash
# Regenerates the committed Swift code from the .proto files (run by `make proto`).
#   *.pb.swift   messages, by swift-protobuf's protoc-gen-swift (built from the pinned package)
#   *.rpc.swift  typed service stubs, by proto/generator (protoc-gen-wholecare-rpc)
# The C client's code is generated at build time by protoc-c (see clients/c/Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: run make deps"; exit 1; }

echo "proto: building code generators (first time takes a minute or two)"
swift build -c release --package-path proto/generator --product protoc-gen-swift >/dev/null
swift build -c release --package-path proto/generator --product protoc-gen-wholecare-rpc >/dev/null
BIN="$(swift build -c release --package-path proto/generator --show-bin-path)"

generate() { # <output dir> <rpc options> <proto files...>
  local out="$1" rpc_options="$2"; shift 2
  rm -rf "$out"; mkdir -p "$out"
  protoc -I proto \
    --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" --swift_out=Visibility=Public:"$out" \
    --plugin=protoc-gen-wholecare-rpc="$BIN/protoc-gen-wholecare-rpc" --wholecare-rpc_out="$rpc_options":"$out" \
    "$@"
}

generate Shared/RPC/Generated ImportRPC=false proto/wholecare/health/v1/health.proto
generate Shared/RPCTransport/Generated ImportRPC=true proto/wholecare/rpc/v1/frame.proto
generate Shared/Contracts/Generated ImportRPC=true $(find proto/wholecare -name '*.proto' \
  ! -path '*/rpc/v1/*' ! -path '*/health/v1/*' | sort)
# OpenAPI schemas of every message, for the gateway's OpenAPI document.
protoc -I proto --plugin=protoc-gen-wholecare-rpc="$BIN/protoc-gen-wholecare-rpc" \
  --wholecare-rpc_out=OpenAPISchemas=proto-schemas.json:Services/Gateway/OpenAPI \
  $(find proto/wholecare -name '*.proto' ! -path '*/rpc/v1/*' | sort)
echo "proto: generated $(find Shared -path '*/Generated/*' -name '*.swift' | wc -l) files"
