#!/usr/bin/env bash
# Generates client/typescript/src/gen/ from protos/ with the pinned protoc-gen-es of
# package-lock.json (protoc from the project's grpcio-tools). Deterministic and offline
# once node_modules exists. Without node: one line and exit 0, unless
# TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1 (then exit 1).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "generate.sh: node/npm not found; TypeScript client not regenerated" >&2
  if [ "${TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS:-}" = "1" ]; then exit 1; fi
  exit 0
fi

if [ ! -x "$here/node_modules/.bin/protoc-gen-es" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

python="$root/.venv/bin/python"
out="$here/src/gen"
rm -rf "$out"
mkdir -p "$out"
cd "$root/protos"
mapfile -t protos < <(find google/api google/rpc taskgrove -name '*.proto' | LC_ALL=C sort)
"$python" -m grpc_tools.protoc -I . \
  --plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
  --es_out="$out" --es_opt=target=ts,import_extension=js \
  "${protos[@]}"
