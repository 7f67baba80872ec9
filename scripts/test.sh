#!/usr/bin/env bash
# The whole test suite: installs the peers, builds, runs every test file one at a time
# (they start real servers and measure timing; running them side by side on 2 cores would
# make them flaky). Node's test runner prints the closing pass/fail counts. The pure tests (no
# process, no socket) are in test/unit/: `npm run test:unit` runs them alone in seconds.
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
# --test-timeout: a test file that hangs fails after 10 minutes (the longest file takes about 2) instead
# of holding CI until its limit; --test-force-exit: a file whose tests are done exits even if
# something it opened (a server a failed test never closed) would keep it alive.
exec node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit --test-reporter=spec dist/test/*.test.js dist/test/unit/*.test.js
