#!/usr/bin/env bash
# Generates the Go client's protobuf and gRPC code (client/go/taskgrove/v1, package taskgrovev1)
# from protos/taskgrove/v1 with the project's protoc (grpc_tools) and Debian's Go plugins.
set -euo pipefail
cd "$(dirname "$0")/../../.."
GEN_GO=${PROTOC_GEN_GO:-/usr/bin/protoc-gen-go}
GEN_GO_GRPC=${PROTOC_GEN_GO_GRPC:-/usr/bin/protoc-gen-go-grpc}
if [[ ! -x "$GEN_GO" || ! -x "$GEN_GO_GRPC" ]]; then
    echo "client/go: protoc-gen-go or protoc-gen-go-grpc missing (scripts/install-client-toolchains.sh); Go code not regenerated"
    [[ "${TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS:-}" == "1" ]] && exit 1
    exit 0
fi
out=client/go/taskgrove/v1
rm -f "$out"/*.pb.go
mkdir -p "$out"
.venv/bin/python -m grpc_tools.protoc -I protos \
    --plugin=protoc-gen-go="$GEN_GO" --plugin=protoc-gen-go-grpc="$GEN_GO_GRPC" \
    --go_out=client/go --go_opt=module=taskgrove.dev/go \
    --go-grpc_out=client/go --go-grpc_opt=module=taskgrove.dev/go \
    $(find protos/taskgrove -name '*.proto' | LC_ALL=C sort)
