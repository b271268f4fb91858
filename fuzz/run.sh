#!/usr/bin/env bash
# Fuzz decode + preprocess (cargo fuzz / libFuzzer). Seeds: real HAM10000 images from ../shared
# and one tiny file per format in fuzz/seeds. Usage: fuzz/run.sh [SECONDS] (default 600).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/decode_prepare
real=(../../shared/data/ham10000/images_200x150/*.jpg)
[[ -f ${real[0]} ]] && cp "${real[@]:0:20}" corpus/decode_prepare/
cp seeds/* corpus/decode_prepare/
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the one stable toolchain here accept them.
RUSTC_BOOTSTRAP=1 cargo fuzz run decode_prepare corpus/decode_prepare -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144
