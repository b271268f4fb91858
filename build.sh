#!/usr/bin/env bash
# Builds the skinlens page into dist/, a static site with no server logic.
#
#   ./build.sh            build dist/
#   ./build.sh --serve    build, then serve dist/ on http://127.0.0.1:${PORT:-8080}/
#
# On a fresh machine it installs what it needs (scripts/install.sh; each step falls back to an
# unlocked install of the same pinned version when the registry lacks a locked dependency): the
# wasm32 Rust target, wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in
# Cargo.lock (a mismatch fails at run time) into .tools/, and wasm-opt from npm `binaryen`
# (crates/web/package-lock.json). Needs rustup/cargo and Node.
#
# The model shipped is models/skinlens.safetensors with models/skinlens.card.json;
# SKINLENS_MODEL / SKINLENS_CARD point elsewhere (e.g. during development).
set -euo pipefail
cd "$(dirname "$0")"

serve=false
for arg in "$@"; do
  case "$arg" in
    --serve) serve=true ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

model=${SKINLENS_MODEL:-models/skinlens.safetensors}
card=${SKINLENS_CARD:-models/skinlens.card.json}
[[ -f $model ]] || die "no model at $model (train and export one, or set SKINLENS_MODEL)"
command -v node >/dev/null || die "Node.js is needed (wasm-opt from npm binaryen, the dev server)"

step "Tools: the wasm32 target, wasm-bindgen-cli (pinned to Cargo.lock), wasm-opt (npm binaryen)"
# shellcheck source=scripts/install.sh
source scripts/install.sh
install_wasm_target
bindgen_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[[ -n $bindgen_version ]] || die "wasm-bindgen is not in Cargo.lock"
install_wasm_bindgen "$bindgen_version"
install_npm crates/web
echo "wasm-bindgen $bindgen_version ($WASM_BINDGEN), wasm-opt $(crates/web/node_modules/.bin/wasm-opt --version | cut -d' ' -f3)"

step "Compile crates/web for wasm32 + SIMD128 (release)"
# .cargo/config.toml carries the target flags; a RUSTFLAGS variable would replace them.
[[ -z ${RUSTFLAGS:-} ]] || die "unset RUSTFLAGS: it replaces the simd128/getrandom flags of .cargo/config.toml"
cargo build --release -p skinlens-web --target wasm32-unknown-unknown

# --- Second module: SIMD128 + relaxed SIMD (f32x4.relaxed_madd in the pointwise and depthwise
# kernels). The page loads it where WebAssembly.validate accepts a relaxed-SIMD opcode
# (www/backends/cpu.js), else the plain module above. `--config` adds to the flags of
# .cargo/config.toml (a RUSTFLAGS variable would replace them); its own target dir keeps the
# two builds from invalidating each other.
step "Compile crates/web for wasm32 + SIMD128 + relaxed SIMD (release)"
cargo build --release -p skinlens-web --target wasm32-unknown-unknown --target-dir target/wasm-relaxed \
  --config 'target.wasm32-unknown-unknown.rustflags = ["-C", "target-feature=+relaxed-simd"]'

step "Bindings and size/speed optimisation"
# bind COMPILED OUT_DIR [extra wasm-opt features]: wasm-bindgen, then wasm-opt -O3.
bind() {
  local compiled=$1 out=$2
  shift 2
  # wasm-opt takes a minute here: redo bindings and optimisation only when the compiled module changed.
  local fingerprint
  fingerprint="$(sha256sum "$compiled" | cut -d' ' -f1) wasm-bindgen $bindgen_version $*"
  if [[ -f $out/.fingerprint && "$(cat "$out/.fingerprint")" == "$fingerprint" ]]; then
    echo "$out is up to date"
    return
  fi
  rm -rf "$out"
  "$WASM_BINDGEN" --target web --no-typescript --out-dir "$out" "$compiled"
  # The features rustc enables for wasm32 by default, plus SIMD; every browser with wasm SIMD has them all.
  crates/web/node_modules/.bin/wasm-opt -O3 "$@" \
    --enable-simd --enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$out/skinlens_web_bg.wasm" -o "$out/skinlens_web_bg.wasm"
  echo "$fingerprint" > "$out/.fingerprint"
}
bind target/wasm32-unknown-unknown/release/skinlens_web.wasm www/pkg
bind target/wasm-relaxed/wasm32-unknown-unknown/release/skinlens_web.wasm www/pkg-relaxed --enable-relaxed-simd

step "Assemble dist/"
rm -rf dist
mkdir -p dist/models
cp -R www/. dist/
rm -f dist/pkg/.fingerprint dist/pkg-relaxed/.fingerprint
cp "$model" dist/models/skinlens.safetensors
if [[ -f $card ]]; then
  cp "$card" dist/models/skinlens.card.json
else
  echo "warning: no model card at $card; the page shows the model file's metadata instead" >&2
fi
# The service worker precaches every file of this build; its build id is their content hash.
node crates/web/stamp-sw.mjs dist
du -sh dist | cut -f1 | xargs echo "dist/:"

if $serve; then
  step "Serving dist/ (Ctrl-C to stop)"
  exec node crates/web/serve.mjs --dir dist --port "${PORT:-8080}"
fi
