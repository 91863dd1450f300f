#!/usr/bin/env bash
# Builds the web console into server/taskgrove_server/console/static/ with the pinned
# esbuild of package-lock.json (type-checked first). Deterministic and offline once
# node_modules exists. Without node: one line and exit 0, unless
# TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1 (then exit 1).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "build.sh: node/npm not found; web console not rebuilt" >&2
  if [ "${TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS:-}" = "1" ]; then exit 1; fi
  exit 0
fi

cd "$here"
if [ ! -x node_modules/.bin/esbuild ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/tsc -p tsconfig.json
node build.mjs
