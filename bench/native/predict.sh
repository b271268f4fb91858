#!/usr/bin/env bash
# Whole-process throughput of `skinlens predict --tta=none` over N JPEGs on 1 thread, against
# ONNX Runtime + Pillow + NumPy on the same files (bench/native/ort_predict.py), alternating,
# ROUNDS times. A report, not a test: results/predict-<time>.jsonl and a table of medians.
# BASELINE=path/to/an/older/skinlens adds that binary to every round (before/after figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-300}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1}
MODEL=${MODEL:-../shared/peers/models/effnet_lite0_7cls}
IMAGES=${IMAGES:-../shared/data/ham10000/images_224}
venv=${BENCH_VENV:-$HOME/.cache/skinlens-bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import onnxruntime, numpy, PIL" 2>/dev/null || "$venv/bin/pip" install -q onnxruntime numpy pillow
cargo build --release -p skinlens-cli -q
mapfile -t files < <(find "$IMAGES" -name '*.jpg' | sort | head -n "$N")
mkdir -p bench/results
out="bench/results/predict-$(date +%Y%m%d-%H%M%S).jsonl"
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
for round in $(seq "$ROUNDS"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  declare -A runs=([skinlens]=target/release/skinlens)
  [ -n "${BASELINE:-}" ] && runs[baseline]=$BASELINE
  for engine in "${!runs[@]}"; do
    s=$(RAYON_NUM_THREADS=$THREADS seconds "${runs[$engine]}" predict --model "$MODEL.safetensors" --tta=none --json "${files[@]}")
    echo "{\"engine\": \"$engine\", \"images\": ${#files[@]}, \"threads\": $THREADS, \"seconds\": $s, \"loadavg\": $load}" | tee -a "$out"
  done
  s=$(OMP_NUM_THREADS=$THREADS seconds "$venv/bin/python" bench/native/ort_predict.py "$MODEL.onnx" "$THREADS" "${files[@]}")
  echo "{\"engine\": \"onnxruntime+pillow\", \"images\": ${#files[@]}, \"threads\": $THREADS, \"seconds\": $s, \"loadavg\": $load}" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
peer = statistics.median(r["seconds"] for r in rows if r["engine"].startswith("onnx"))
for engine in sorted({r["engine"] for r in rows}):
    s = statistics.median(r["seconds"] for r in rows if r["engine"] == engine)
    print(f"{engine:>20} {s:7.2f} s  ratio to ORT {s / peer:5.2f}")
print(f"(median of {len(rows) // len({r['engine'] for r in rows})} rounds, {rows[0]['images']} images, {rows[0]['threads']} thread(s), whole process; load average {[r['loadavg'] for r in rows]}; {sys.argv[1]})")
PY
