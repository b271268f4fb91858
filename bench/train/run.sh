#!/usr/bin/env bash
# Training throughput (images/s per fine-tuning step, batch 32, 2 threads), skinlens vs PyTorch
# on the same model, interleaved in one run so both see the same machine load. A report, not a
# test: results/train-<time>.jsonl and a table of medians and ratios.
# PyTorch comes from PyPI (torch pulls ~3 GB of CUDA wheels it does not use on this CPU).
# BASELINE=path/to/an/older/skinlens adds that binary to every round (before/after in one run).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-8}
SIZES=${SIZES:-128 160 224}
THREADS=${THREADS:-2}
DATA=${DATA:-../shared/data/ham10000}
BASE=${BASE:-../shared/reference/effnet_lite0.safetensors}
venv=${TORCH_VENV:-$HOME/.cache/skinlens-torch-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, efficientnet_lite_pytorch, safetensors" 2>/dev/null \
  || "$venv/bin/pip" install -q torch==2.15.0 efficientnet-lite-pytorch==0.1.0 safetensors numpy
cargo build --release -p skinlens-cli -q
mkdir -p bench/results
out="bench/results/train-$(date +%Y%m%d-%H%M%S).jsonl"
# One timed `train --bench` of binary $1 at $size, its JSON line labelled $2.
bench_step() {
  RAYON_NUM_THREADS=$THREADS "$1" train --data "$DATA" --base "$BASE" --out "$(mktemp -d)" \
    --size "$size" --batch 32 --bench "$STEPS" 2>/dev/null | sed "s/^{/{\"framework\": \"$2\", /" | tee -a "$out"
}
for round in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    bench_step target/release/skinlens skinlens
    if [ -n "${BASELINE:-}" ]; then
      bench_step "$BASELINE" baseline
    fi
    "$venv/bin/python" bench/train/pytorch_step.py --weights "$BASE" --size "$size" --steps "$STEPS" --threads "$THREADS" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
baseline = any(r["framework"] == "baseline" for r in rows)
print(f"\n{'size':>5} {'skinlens img/s':>15} {'PyTorch img/s':>14} {'ratio':>6}" + (f" {'baseline img/s':>15} {'ratio':>6}" if baseline else ""))
for s in sorted({r["size"] for r in rows}):
    m = lambda name: statistics.median(r["images_per_second"] for r in rows if r["size"] == s and r["framework"].startswith(name))
    line = f"{s:>5} {m('skinlens'):>15.1f} {m('pytorch'):>14.1f} {m('skinlens') / m('pytorch'):>6.2f}"
    if baseline:
        line += f" {m('baseline'):>15.1f} {m('baseline') / m('pytorch'):>6.2f}"
    print(line)
n = sum(1 for r in rows if r["framework"] == "skinlens") // len({r["size"] for r in rows})
print(f"(median of {n} rounds × {rows[0]['steps']} timed steps after one warm-up; ratio = skinlens / PyTorch, above 1 is faster; {sys.argv[1]})")
PY
