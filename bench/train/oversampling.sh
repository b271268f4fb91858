#!/usr/bin/env bash
# Oversampling ablation: the same short fine-tune (ImageNet start, 128 px, seed 0 so the same
# lesion split) at several --over-rate values, compared on the VALIDATION split only (the test
# split stays untouched). Resumable: rerun to continue. A report, not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATES=${RATES:-0 0.5 1}
EPOCHS=${EPOCHS:-3}
SIZE=${SIZE:-128}
DATA=${DATA:-../shared/data/ham10000}
BASE=${BASE:-../shared/reference/effnet_lite0.safetensors}
OUT=${OUT:-runs/ablation-oversampling}
SKINLENS=${SKINLENS:-target/release/skinlens}
[ -n "${SKINLENS_PREBUILT:-}" ] || cargo build --release -p skinlens-cli -q
mkdir -p "$OUT"
for rate in $RATES; do
  run="$OUT/over-$rate"
  if [ -f "$run/state.json" ]; then
    "$SKINLENS" train --out "$run" --resume
  else
    "$SKINLENS" train --data "$DATA" --base "$BASE" --out "$run" --size "$SIZE" --batch 32 --epochs "$EPOCHS" \
      --warmup-epochs 0.5 --lr 1e-3 --over-rate "$rate" --label-smoothing 0.1 --patience "$EPOCHS" --seed 0
  fi
done
python3 - "$OUT" $RATES <<'PY'
import json, sys
out, rates = sys.argv[1], sys.argv[2:]
classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
print(f"\n{'over_rate':>9} {'best epoch':>10} {'val bal. acc':>12} {'val macro AUC':>13}  recall " + " ".join(f"{c:>5}" for c in classes))
for r in rates:
    s = json.load(open(f"{out}/over-{r}/state.json"))
    best = max(s["history"], key=lambda h: h["val_balanced_accuracy"])
    print(f"{r:>9} {best['epoch']:>10} {best['val_balanced_accuracy']:>12.3f} {best['val_macro_auc']:>13.3f}         "
          + " ".join(f"{x:>5.2f}" for x in best["val_recall"]))
print("(validation split, one seed per setting: differences under ~0.03 are within epoch-to-epoch noise)")
PY
