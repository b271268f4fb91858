#!/usr/bin/env bash
# Native CPU latency per 224×224 image, skinlens vs ONNX Runtime on the same model, interleaved
# in one run (1 thread, then all threads). A report, not a test: results/native-<time>.jsonl.
# BASELINE=path/to/an/older/bench_cpu adds that build to every round (before/after figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-50}
ROUNDS=${ROUNDS:-3}
MODEL=${MODEL:-../shared/peers/models/effnet_lite0_7cls}
venv=${BENCH_VENV:-$HOME/.cache/skinlens-bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import onnxruntime, numpy" 2>/dev/null || "$venv/bin/pip" install -q onnxruntime numpy
cargo build --release --example bench_cpu -q
mkdir -p bench/results
out="bench/results/native-$(date +%Y%m%d-%H%M%S).jsonl"
for round in $(seq "$ROUNDS"); do
  echo "# round $round, load average $(cut -d" " -f1-3 /proc/loadavg)" | tee -a "$out.load"
  for threads in 1 $(nproc); do
    RAYON_NUM_THREADS=$threads target/release/examples/bench_cpu "$MODEL.safetensors" "$RUNS" | tee -a "$out"
    if [ -n "${BASELINE:-}" ]; then
      RAYON_NUM_THREADS=$threads "$BASELINE" "$MODEL.safetensors" "$RUNS" | sed 's/"engine": *"/"engine": "baseline /' | tee -a "$out"
    fi
    "$venv/bin/python" bench/native/ort_bench.py "$MODEL.onnx" "$threads" "$RUNS" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{'threads':>7} {'skinlens ms':>12} {'ORT ms':>8} {'ratio':>6} {'dw kernel ms':>13} {'dw grouped ms':>14} {'baseline ms':>12} {'base ratio':>10}")
for t in sorted({r["threads"] for r in rows}):
    ours = [r for r in rows if r["threads"] == t and r["engine"].startswith("skinlens")]
    peer = [r for r in rows if r["threads"] == t and r["engine"].startswith("onnx")]
    m = lambda rs, k: statistics.median(r[k] for r in rs)
    base = [r for r in rows if r["threads"] == t and r["engine"].startswith("baseline")]
    before = f" {m(base,'median_ms'):>12.2f} {m(base,'median_ms')/m(peer,'median_ms'):>10.2f}" if base else ""
    print(f"{t:>7} {m(ours,'median_ms'):>12.2f} {m(peer,'median_ms'):>8.2f} {m(ours,'median_ms')/m(peer,'median_ms'):>6.2f}"
          f" {m(ours,'depthwise_kernel_ms'):>13.2f} {m(ours,'depthwise_grouped_conv2d_ms'):>14.2f}{before}")
print(f"(median of {len(ours)} rounds × {rows[0]['runs']} runs after 10 warm-up; ratio = skinlens / ORT; {sys.argv[1]})")
PY
