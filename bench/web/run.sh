#!/usr/bin/env bash
# Benchmark of the page in headless Chromium, back to back with the ONNX Runtime Web peer.
# A report, not a test: prints the figures and writes bench-results/web-<time>.json.
#   bench/web/run.sh                 # 3 rounds of: ours (3 cold starts + 55 runs), then the peer (wasm-1t)
#   PEER=0 ITERS=20 bench/web/run.sh # ours only
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
[[ -f dist/index.html ]] || ./build.sh
[[ -d tests/e2e/node_modules/playwright-core ]] || (cd tests/e2e && npm ci --no-audit --no-fund)
exec node bench/web/bench.mjs
