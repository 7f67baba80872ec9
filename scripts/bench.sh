#!/usr/bin/env bash
# npm run bench: installs the peers, builds, runs the benchmarks, writes bench/results-*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p tsconfig.json
node dist/bench/l4.js
node dist/bench/relay.js
node dist/bench/queued.js
