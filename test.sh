#!/usr/bin/env bash
# Runs every skinlens test, installing what a fresh machine lacks first:
#   Debian packages  chromium (browser e2e), mesa-vulkan-drivers + libvulkan1 (wgpu on lavapipe)
#   Rust             the wasm32-unknown-unknown target, wasm-bindgen-cli (via build.sh)
#   npm              binaryen (wasm-opt), playwright-core (driving the system Chromium)
# Needs ../shared beside the project (reference tensors, HAM10000 images).
set -euo pipefail
cd "$(dirname "$0")"
step() { printf '\n=== %s\n' "$*"; }

[[ -d ../shared/reference && -d ../shared/data/ham10000 ]] || {
  echo "test.sh: ../shared (reference tensors and HAM10000 data) must sit beside the project" >&2
  exit 1
}

step "Debian packages: chromium (browser e2e), mesa-vulkan-drivers + libvulkan1 (wgpu on lavapipe)"
# shellcheck source=scripts/install.sh
source scripts/install.sh
install_apt chromium mesa-vulkan-drivers libvulkan1

step "cargo build --release (the README's command: the same artifacts serve the CLI and the tests)"
cargo build --release

# Mesa's implicit Vulkan layer VK_LAYER_MESA_device_select asks Wayland for the desktop's GPU and,
# headless, prints "error: XDG_RUNTIME_DIR is invalid or not set" for every device the GPU tests
# open. It only orders GPUs (wgpu picks the high-performance one itself): switch it off.
export NODEVICE_SELECT=1
step "cargo test --release --workspace (core parity, decode, CLI, trainer, GPU kernels on lavapipe)"
cargo test --release --workspace

step "browser end-to-end tests (builds the page first)"
tests/e2e/run.sh

echo
echo "test.sh: all tests passed"
