#!/usr/bin/env python3
"""Validation-only decisions from `skinlens evaluate --predictions` CSVs (standard library only).

For a new network (raw probabilities) it picks export's decision rule on validation: subtract
tau*log(training prior) from log p, tau in 0, 0.25, ..., 1.5, then a softmax temperature (NLL);
then it scores weighted ensembles w*new + (1-w)*other over w = 0, 0.1, ..., 1 against an
already exported model's probabilities (rule and temperature folded in). Every number is on
validation and chosen there: optimistic, as the shipped model's own validation figures are.

Usage: val-ensemble.py TRUTH.csv NEW.csv OTHER.csv TRAIN_COUNTS OVER_RATE
  TRAIN_COUNTS: per-class training images in HAM10000 order akiec,bcc,bkl,df,mel,nv,vasc, comma-separated
"""
import csv
import math
import sys

ISIC = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {r["image"]: [float(r[c]) for c in ISIC] for r in rows}


def bmca(probs, labels):
    k = len(ISIC)
    hit, n = [0] * k, [0] * k
    for p, y in zip(probs, labels):
        n[y] += 1
        hit[y] += max(range(k), key=lambda c: p[c]) == y
    recalls = [h / m for h, m in zip(hit, n)]
    return sum(recalls) / k, recalls


def auc(scores, positive):
    ranked = sorted(zip(scores, positive))
    rank_sum, i, pos = 0.0, 0, sum(positive)
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(p for _, p in ranked[i:j]) * (i + j + 1) / 2
        i = j
    neg = len(ranked) - pos
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def macro_auc(probs, labels):
    return sum(auc([p[c] for p in probs], [y == c for y in labels]) for c in range(len(ISIC))) / len(ISIC)


def softmax(z, t=1.0):
    m = max(z)
    e = [math.exp((v - m) / t) for v in z]
    s = sum(e)
    return [v / s for v in e]


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    truth, new, other = read(sys.argv[1]), read(sys.argv[2]), read(sys.argv[3])
    counts = dict(zip(HAM, map(int, sys.argv[4].split(","))))
    over_rate = float(sys.argv[5])
    ids = sorted(truth)
    labels = [truth[i].index(1.0) for i in ids]
    mix = [counts[c.lower()] ** (1 - over_rate) for c in ISIC]
    log_prior = [math.log(m / sum(mix)) for m in mix]
    log_p = [[math.log(max(v, 1e-30)) for v in new[i]] for i in ids]

    b, _ = bmca([new[i] for i in ids], labels)
    print(f"new, raw: balanced accuracy {b:.4f}, macro AUC {macro_auc([new[i] for i in ids], labels):.4f}")
    best = None
    for step in range(7):
        tau = step * 0.25
        adjusted = [[z - tau * lp for z, lp in zip(row, log_prior)] for row in log_p]
        b, _ = bmca(adjusted, labels)
        print(f"  tau {tau:.2f}: balanced accuracy {b:.4f}")
        if best is None or b > best[0]:
            best = (b, tau, adjusted)
    _, tau, adjusted = best
    nll = lambda t: -sum(math.log(max(softmax(z, t)[y], 1e-30)) for z, y in zip(adjusted, labels)) / len(labels)
    temperature = min((0.5 + 0.01 * i for i in range(251)), key=nll)
    calibrated = [softmax(z, temperature) for z in adjusted]
    b, recalls = bmca(calibrated, labels)
    print(f"new, rule tau={tau} T={temperature:.2f}: balanced accuracy {b:.4f}, macro AUC {macro_auc(calibrated, labels):.4f}")
    print("  recall " + ", ".join(f"{c} {r:.3f}" for c, r in zip(ISIC, recalls)))
    old = [other[i] for i in ids]
    b, recalls = bmca(old, labels)
    print(f"other (as exported): balanced accuracy {b:.4f}, macro AUC {macro_auc(old, labels):.4f}")
    for step in range(11):
        w = step / 10
        mixed = [[w * a + (1 - w) * o for a, o in zip(p, q)] for p, q in zip(calibrated, old)]
        b, recalls = bmca(mixed, labels)
        print(f"  {w:.1f} x new + {1 - w:.1f} x other: balanced accuracy {b:.4f}, macro AUC {macro_auc(mixed, labels):.4f}; recall " + " ".join(f"{r:.2f}" for r in recalls))


if __name__ == "__main__":
    main()
