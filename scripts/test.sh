#!/usr/bin/env bash
# The whole test suite: installs the peers, builds, runs every test file (three lanes side by
# side, the files that measure time closely alone: scripts/test-lanes.mjs), which ends with
# "N passed, N failed". The pure tests (no process, no socket) are in test/unit/:
# `npm run test:unit` runs them alone in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
# The native relay of mode: tcp (native/relay.c); `npm install` builds it, this covers a
# checkout whose node_modules predates it.
[ -f build/Release/relay.node ] || npm run install
# Compiled tests of files since moved or removed would run again: they go.
if [ -d dist/test ]; then
  find dist/test -name '*.js' -o -name '*.js.map' | while read -r f; do
    src="${f#dist/}"; src="${src%.map}"; src="${src%.js}.ts"
    [ -f "$src" ] || rm -f "$f"
  done
fi
# Compiled unless the build is newer than every source (npm install's prepare has just built it).
if [ ! -f dist/src/cli/main.js ] || [ -n "$(find src test bench tsconfig.json -newer dist/src/cli/main.js \( -name '*.ts' -o -name '*.json' \) -print -quit)" ]; then
  npx tsc -p tsconfig.json
fi
# Three lanes side by side, then the timing-critical tests alone (scripts/test-lanes.mjs says why);
# each file still gets --test-timeout (10 minutes) and --test-force-exit.
exec node scripts/test-lanes.mjs
