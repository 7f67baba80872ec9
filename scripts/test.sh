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
# Compiled tests of files since moved or removed would run again: the test build starts afresh.
rm -rf dist/test
npx tsc -p tsconfig.json
# Three lanes side by side, then the timing-critical tests alone (scripts/test-lanes.mjs says why);
# each file still gets --test-timeout (10 minutes) and --test-force-exit.
exec node scripts/test-lanes.mjs
