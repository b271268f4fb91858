"""Compare a `skinlens evaluate --report` JSON with the official scorer's JSON; exit 1 on a mismatch."""
import json
import sys

ours = json.load(open(sys.argv[1]))["metrics"]
official = json.load(open(sys.argv[2]))
columns = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc"}
per_class = {c["class"]: c for c in ours["per_class"]}
pairs = [("balanced accuracy", ours["balanced_accuracy"], official["aggregate"]["balanced_accuracy"]),
         ("macro AUC", ours["macro_auc"], official["macro_average"]["auc"]),
         ("mean AP", ours["mean_average_precision"], official["macro_average"]["ap"])]
for theirs, mine in [("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "precision"),
                     ("npv", "npv"), ("dice", "f1"), ("accuracy", "accuracy"), ("auc", "auc"), ("ap", "average_precision")]:
    for column, code in columns.items():
        pairs.append((f"{code} {mine}", per_class[code][mine], official["per_category"][theirs][column]))
worst = 0.0
for name, a, b in pairs:
    diff = abs(a - b)
    worst = max(worst, diff)
    flag = "" if diff < 1e-6 else "   <-- differs"
    print(f"{name:28s} skinlens {a:.6f}  official {b:.6f}{flag}")
print(f"{len(pairs)} numbers compared, largest difference {worst:.2e}")
sys.exit(0 if worst < 1e-6 else 1)
