#!/usr/bin/env bash
# npm run bench: installs the peers, builds, runs the benchmarks, writes bench/results-*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
[ -f build/Release/relay.node ] || npm run install
npx tsc -p tsconfig.json
# Haraka is a benchmark peer only (not a dependency of smtplb): installed outside the repo.
HARAKA_DIR="$HOME/.cache/smtplb-bench/haraka"
[ -x "$HARAKA_DIR/node_modules/Haraka/bin/haraka" ] || { mkdir -p "$HARAKA_DIR" && npm install --prefix "$HARAKA_DIR" --no-audit --no-fund --no-save Haraka@3.3.4 >/dev/null; } || echo "Haraka could not be installed; the relay bench runs without it"
node dist/bench/l4.js
node dist/bench/relay.js
node dist/bench/queued.js
# The queue manager at 10,000 / 100,000 / 1,000,000 queued (issue #9): BENCH_SIZES, BENCH_ROUNDS.
node dist/bench/queue-scale.js
# Queue delay (acceptance to delivery) at 60 and 600 client sessions (issue #21).
node dist/bench/queue-delay.js
# Cluster-wide limits through Redis against local limits, three nodes each (issue #12).
node dist/bench/cluster.js
