#!/usr/bin/env python3
"""Markdown table of a recipe sweep: one row per run folder under SWEEP (each with `state.json`
from `skinlens train`, and `<name>.cmd` beside it holding the command), validation figures
per run: best epoch's balanced accuracy and macro AUC, the last epoch's, and training minutes.

    scripts/sweep-table.py runs/sweep [BASELINE_NAME]

Differences against BASELINE_NAME (default `base`) are printed for the best and last epochs."""
import json
import sys
from pathlib import Path

sweep = Path(sys.argv[1])
baseline_name = sys.argv[2] if len(sys.argv) > 2 else "base"


def load(run: Path):
    state = json.loads((run / "state.json").read_text())
    config = json.loads((run / "config.json").read_text())
    history = state["history"]
    if not history:
        return None
    best = max(history, key=lambda h: h["val_balanced_accuracy"])
    last = history[-1]
    cmd = (sweep / f"{run.name}.cmd")
    return {
        "name": run.name,
        "command": cmd.read_text().strip() if cmd.exists() else "",
        "epochs": f"{last['epoch']} of {config.get('epochs', '?')}",
        "minutes": state["elapsed_s"] / 60,
        "best": best,
        "last": last,
        "done": last["epoch"] == config.get("epochs"),
    }


def options(command: str) -> dict:
    """`--flag value` pairs of a command line (a flag without a value maps to "")."""
    words, out = command.split(), {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else ""
            out[w] = value
    return out


runs = [r for r in (load(p) for p in sorted(sweep.iterdir()) if (p / "state.json").exists()) if r]
runs.sort(key=lambda r: (r["name"] != baseline_name, r["name"]))
base = next((r for r in runs if r["name"] == baseline_name), None)
print("| run | change | epochs | minutes | best epoch: BMCA / AUC | last epoch: BMCA / AUC / val loss | Δ BMCA best, last (vs base) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    ours, theirs = options(r["command"]), options(base["command"]) if base else {}
    change = " ".join(f"{k} {v}".strip() for k, v in ours.items() if k != "--out" and theirs.get(k) != v) or "(the base recipe)"
    b, l = r["best"], r["last"]
    delta = ""
    if base and r is not base and r["done"]:
        delta = f"{b['val_balanced_accuracy'] - base['best']['val_balanced_accuracy']:+.3f}, {l['val_balanced_accuracy'] - base['last']['val_balanced_accuracy']:+.3f}"
    status = "" if r["done"] else " (unfinished)"
    print(
        f"| `{r['name']}` | `{change}` | {r['epochs']}{status} | {r['minutes']:.1f} | "
        f"{b['epoch']}: {b['val_balanced_accuracy']:.3f} / {b['val_macro_auc']:.3f} | "
        f"{l['val_balanced_accuracy']:.3f} / {l['val_macro_auc']:.3f} / {l['val_loss']:.3f} | {delta} |"
    )
