#!/usr/bin/env bash
# Native GPU engine latency (a report, not a test): Vulkan through wgpu, on Mesa lavapipe when
# the machine has no GPU (`apt-get install -y mesa-vulkan-drivers libvulkan1`). Prints one JSON
# line and appends it to bench-results/gpu-native.jsonl.
#   bench/gpu/run.sh [MODEL] [IMAGE]      env: ITERS (20), WARMUP (3)
# MODEL defaults to the shipped model, whose input size may differ from the 224-px reference
# (../shared/peers/models/effnet_lite0_7cls.safetensors): name that one to compare with peers.
# In the browser (SwiftShader WebGPU in headless Chromium, with the ONNX Runtime Web WebGPU peer
# back to back): node bench/gpu/browser.mjs. Per-kernel times: the gpu_profile example.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
mkdir -p bench-results
cargo run --release -q -p skinlens-gpu --example gpu_bench -- "$@" 2> >(grep -v XDG_RUNTIME_DIR >&2) | tee -a bench-results/gpu-native.jsonl
