"""The Markdown table of scripts/ablations.sh's rows: validation F1 of the model, its ablations, the prior and
TF-IDF + LR, with 95% bootstrap intervals (resampling images) of the differences that issue 11 asks about.

    python scripts/ablation_table.py runs/ablations [--order reference,cls-pooling,...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TFIDF = "TF-IDF + logistic regression"
PRIOR = "frequency prior"


def difference(report: dict, system: str, baseline: str, k: str) -> str:
    for d in report["differences"]:
        if d["system"] == system and d["baseline"] == baseline:
            point, low, high = d["f1"][k]
            return f"{point:+.3f} [{low:+.3f}, {high:+.3f}]"
    return "-"


def row(name: str, folder: Path) -> str:
    report = json.loads((folder / "val.json").read_text())
    # A reference scored from a bundle (not trained by ablations.sh) has no change.txt: it is the recipe itself.
    written = folder / "change.txt"
    change = (written.read_text().strip() if written.exists() else "") or "(none)"
    f1 = {system: {k: m["f1"] for k, m in by_k.items()} for system, by_k in report["systems"].items()}
    cells = [
        name,
        f"`{change}`",
        f"{f1['model']['2']:.3f}",
        f"{f1['model']['3']:.3f}",
        f"{f1['text-only']['2']:.3f}",
        f"{f1['image-only']['2']:.3f}",
        f"{f1[PRIOR]['2']:.3f}",
        f"{f1[TFIDF]['2']:.3f}",
        f"{f1[TFIDF]['3']:.3f}",
        difference(report, "model", "text-only", "2"),
        difference(report, "image-only", PRIOR, "2"),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--order", default="", help="comma-separated row names first, in this order")
    args = parser.parse_args()
    done = {p.parent.name: p.parent for p in sorted(args.runs.glob("*/val.json"))}
    order = [n for n in args.order.split(",") if n in done] + sorted(set(done) - set(args.order.split(",")))
    first = json.loads((done[order[0]] / "val.json").read_text()) if order else {}
    print(
        f"Validation split: {first.get('posts', '?')} posts, {first.get('images', '?')} images (never in training); "
        f"F1@k; intervals: 95% bootstrap over images ({first.get('resamples', '?')} resamples).\n"
    )
    print(
        "| row | change | model F1@2 | F1@3 | text-only F1@2 | image-only F1@2 | prior F1@2 | TF-IDF F1@2 | F1@3 "
        "| model minus text-only F1@2 | image-only minus prior F1@2 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in order:
        print(row(name, done[name]))


if __name__ == "__main__":
    main()
