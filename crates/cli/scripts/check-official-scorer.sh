#!/usr/bin/env bash
# Score one set of predictions with both `skinlens evaluate` and the official ISIC 2018 scorer
# (PyPI isic-challenge-scoring) and compare every shared number. A documented check, not CI:
# it needs pip and a trained model.
#
#   crates/cli/scripts/check-official-scorer.sh RUN_DIR MODEL [PART]
set -euo pipefail
run=$1 model=$2 part=${3:-val}
venv=${SCORER_VENV:-/tmp/skinlens-scorer}
if [ ! -x "$venv/bin/isic-challenge-scoring" ]; then
  python3 -m venv "$venv"
  # pandas 3 removed DataFrame.applymap, which isic-challenge-scoring 5.6 still calls.
  "$venv/bin/pip" install -q isic-challenge-scoring 'pandas<3'
fi
out=$(mktemp -d)
target/release/skinlens evaluate --model "$model" --run "$run" --part "$part" --bootstrap 0 \
  --report "$out/skinlens.json" --predictions "$out/pred.csv" --ground-truth-out "$out/truth.csv"
"$venv/bin/isic-challenge-scoring" -o json classification "$out/truth.csv" "$out/pred.csv" > "$out/official.json" 2>/dev/null
python3 "$(dirname "$0")/compare_official.py" "$out/skinlens.json" "$out/official.json"
