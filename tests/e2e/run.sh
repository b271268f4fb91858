#!/usr/bin/env bash
# End-to-end tests of the page in Debian's headless Chromium. Assumes `cargo build --release`
# has built target/release/skinlens (the tests compare the page with `skinlens predict`).
# Installs what is missing (Chromium from apt, playwright-core from package-lock.json), builds
# dist/ when it is missing or older than its sources, runs the tests, exits non-zero on failure.
# Artefacts: test-results/e2e/ (page.png, request logs, results.csv, console.log).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

[[ -x target/release/skinlens ]] || { echo "tests/e2e: target/release/skinlens is missing; run cargo build --release first" >&2; exit 1; }
[[ -d ../shared/data/ham10000/fullres_600x450 ]] || { echo "tests/e2e: ../shared/data/ham10000 is missing" >&2; exit 1; }

# shellcheck source=../../scripts/install.sh
source scripts/install.sh
[[ -n ${CHROMIUM:-} ]] || install_apt chromium
install_npm "$here"

# Rebuild the site when any of its inputs is newer than the last build.
stamp=dist/sw.js
if [[ ! -f $stamp ]] || [[ -n $(find www crates/web/src crates/web/Cargo.toml crates/web/stamp-sw.mjs crates/gpu/src crates/gpu/Cargo.toml src models Cargo.lock build.sh -newer "$stamp" -type f -print -quit 2>/dev/null) ]]; then
  echo "== ./build.sh"
  ./build.sh
fi

echo "== e2e tests"
exec node --test --test-concurrency=1 --test-reporter=spec "$here/page.test.mjs" "$here/ux.test.mjs" "$here/pool.test.mjs" "$here/deal.test.mjs" "$here/webgpu.test.mjs" "$here/ensemble.test.mjs"
