"""The paper's comparison (its Table 3) on real posts: every architecture of `hashtagger train --arch` trained
with the same data, split, extractor and feature cache, epoch budget and validation-based selection (the
best epoch on validation F1@2 is kept), exported, and scored on the same test split, next to the paper's
figures, with each system's training time, tagging throughput, parameters and bundle size.

    python scripts/compare_archs.py [DATA] [--epochs 4] [--output runs/compare] [--archs lxmert,coa,...]
        [--reuse lxmert=exported]   # an existing bundle (trained the same way) instead of training that arch
        [--grid-epochs 4,12 --grid-new-lr 2e-4,1e-3]   # the comparison systems' validation grid

LXMERT's recipe was chosen by the validation ablations (docs/ablations.md); each comparison system gets its own
small validation search over the two settings that matter most for networks that start random: epochs and the
learning rate of new parameters (--new-lr). The configuration with the best validation F1@2 (loss breaking ties)
is the one exported and scored on test; the test split never takes part in a choice.

Finished runs and bundles are kept and reused: an interrupted comparison continues where it stopped.
Writes OUTPUT/comparison.md and OUTPUT/comparison.json; the table also goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.posts import load_posts
from hashtagger.data.prep import PrepOptions, prepare
from hashtagger.data.text import encode
from hashtagger.export.build import ExportOptions, export
from hashtagger.models.registry import ARCHS
from hashtagger.training.setup import resolve_text_init
from hashtagger.training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
PAPER = {  # Table 3 of the paper, top-2 hashtags, InstaNY100K test split: precision, recall, F1
    "lxmert": (0.599, 0.233, 0.335),
    "coa": (0.532, 0.202, 0.293),
    "lstm-cnn": (0.51, 0.192, 0.279),
    "tab-lstm": (0.469, 0.177, 0.257),
    "amnn": (0.327, 0.103, 0.156),
    "tweetembd": (0.272, 0.106, 0.152),
}


def train_arch(arch: str, args, console: Console, epochs: int, new_lr: float) -> tuple[Path, float]:
    """The run's best/ checkpoint and its training wall time (recorded the first time it ran)."""
    name = arch if arch == "lxmert" else f"{arch}-e{epochs}-nlr{new_lr:g}"
    run = Path(args.output) / name
    timing = run / "train_seconds.json"
    if timing.is_file() and (run / "best" / "hashtagger.json").is_file():
        return run / "best", json.loads(timing.read_text())["seconds"]
    cfg = TrainConfig(
        data=args.data,
        arch=arch,
        output=args.output,
        run_name=name,
        base_model="mini",
        text_init="minilm",
        backbone=args.backbone,
        modality_dropout=args.modality_dropout,
        pooling="mean",
        lr=args.lr,
        new_lr=new_lr,
        epochs=epochs,
        seed=args.seed,
        cache_dir=str(Path(args.output) / "feature-cache"),
        vocab_size=args.vocab_size,
    )
    started = time.perf_counter()
    train(cfg, console, resume=run if (run / "last" / "training_state.pt").is_file() else None)
    seconds = time.perf_counter() - started
    timing.write_text(json.dumps({"seconds": seconds}))
    return run / "best", seconds


def validation_score(best: Path) -> tuple[float, float]:
    """(F1@2, -loss) of the best epoch on validation: what chooses among a system's configurations."""
    meta = json.loads((best / "hashtagger.json").read_text())
    epoch = max(meta["history"], key=lambda h: (h["val_f1@2"], -h["val_loss"]))
    return epoch["val_f1@2"], -epoch["val_loss"]


def choose(arch: str, args, console: Console) -> tuple[Path, float, str]:
    """Train every configuration of the arch's grid; the best on validation, its training time, and what was
    chosen (for the table)."""
    if arch == "lxmert":
        best, seconds = train_arch(arch, args, console, args.epochs, args.new_lr)
        return best, seconds, f"recipe (ablations), {args.epochs} epochs"
    tried = []
    for epochs in args.grid_epochs:
        for new_lr in args.grid_new_lr:
            console.rule(f"{arch}: {epochs} epochs, --new-lr {new_lr:g}")
            best, seconds = train_arch(arch, args, console, epochs, new_lr)
            tried.append((validation_score(best), best, seconds, f"{epochs} epochs, new-lr {new_lr:g}"))
    (score, _), best, seconds, chosen = max(tried, key=lambda t: t[0])
    console.print(f"{arch}: chose {chosen} (validation F1@2 {score:.3f} of {[round(t[0][0], 3) for t in tried]})")
    return best, seconds, f"{chosen} (val F1@2 {score:.3f} of {len(tried)})"


def model_throughput(bundle: Path, data_texts: list[str], repeats: int = 3, batch: int = 32) -> float:
    """Posts/s of the bundle's model graph alone (ONNX Runtime, CPU, batches of `batch` posts, region
    features given): the per-post cost that differs between architectures. The extractor graph runs once
    per image and is the same for all of them."""
    b = read_bundle(bundle)
    runner = Runner.load(b, "cpu")
    rng = np.random.default_rng(0)
    batches = []
    for i in range(0, len(data_texts), batch):
        texts = data_texts[i : i + batch]
        feats = rng.normal(size=(len(texts), b.info.extractor.regions, b.info.extractor.feature_dim)).astype(np.float32)
        boxes = np.tile(np.linspace(0, 1, 4, dtype=np.float32), (len(texts), b.info.extractor.regions, 1))
        batches.append((encode(b.tokenizer, texts, b.max_length), feats, boxes))
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for text, feats, boxes in batches:
            runner.probabilities(text, feats, boxes)
        best = max(best, len(data_texts) / (time.perf_counter() - started))
    return best


def parameters(checkpoint: Path) -> int:
    from hashtagger.models.checkpoint import load_checkpoint

    return sum(p.numel() for p in load_checkpoint(checkpoint).model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared/data/mediaeval2016/posts.csv"))
    # The default model's recipe (scripts/build_default_model.sh), the same for every system.
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backbone", default="efficientnet-lite2")
    parser.add_argument("--modality-dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--new-lr", type=float, default=2e-4, help="LXMERT's (its recipe)")
    parser.add_argument("--vocab-size", type=int, default=250, help="as the default model's (exported/)")
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    parser.add_argument("--grid-epochs", type=lambda t: [int(v) for v in t.split(",")], default=[4, 12])
    parser.add_argument("--grid-new-lr", type=floats, default=[2e-4, 1e-3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/compare")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--reuse", action="append", default=[], help="ARCH=BUNDLE: use this bundle for ARCH")
    parser.add_argument("--train-only", action="store_true", help="train and export; no table")
    args = parser.parse_args()
    console = Console(stderr=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    reuse = dict(r.split("=", 1) for r in args.reuse)
    systems: dict[str, dict] = {}
    for arch in args.archs.split(","):
        if arch in reuse:
            systems[arch] = {"bundle": Path(reuse[arch]), "train_seconds": None, "parameters": None, "chosen": "reused"}
            continue
        best, seconds, chosen = choose(arch, args, console)
        bundle = out / f"exported-{arch}"
        if not (bundle / "manifest.json").is_file():
            export(best, ExportOptions(output=str(bundle)), console)
        systems[arch] = {"bundle": bundle, "train_seconds": seconds, "parameters": parameters(best), "chosen": chosen}
    if args.train_only:
        return
    from hashtagger.evaluation.evaluate import compare
    from hashtagger.evaluation.report import report_table

    report = compare(args.data, [s["bundle"] for s in systems.values()], list(systems), console=console)
    texts = [e.text for e in prepare(load_posts(args.data), PrepOptions()).examples[:1024]]
    for s in systems.values():
        s["bundle_mb"] = sum(f.stat().st_size for f in s["bundle"].iterdir() if f.is_file()) / 1e6
        s["posts_per_s"] = model_throughput(s["bundle"], texts)
        s["bundle"] = str(s["bundle"])
    Console().print(report_table(report))
    lines = [
        (
            f"Test split of `{args.data}` (seed {args.seed}, split by image): {report.posts} posts; "
            f"k = 2. Every system: `--base-model mini --text-init minilm --backbone {args.backbone}` extractor "
            f"and tokenizer, `--vocab-size {args.vocab_size} --modality-dropout {args.modality_dropout} "
            f"--lr {args.lr}`, "
            f"best epoch on validation F1@2. LXMERT: its recipe (`--pooling mean`, {args.epochs} epochs); each other "
            f"system: the best on validation of epochs {args.grid_epochs} x --new-lr {args.grid_new_lr}."
        ),
        "",
        "| system | P@2 | R@2 | F1@2 | paper P / R / F1 (InstaNY100K) | configuration | training | model posts/s "
        "| parameters | bundle MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_k in report.systems.items():
        m = by_k[2]
        s = systems.get(name, {})
        paper = " / ".join(f"{v:.3f}" for v in PAPER[name]) if name in PAPER else "-"
        train_time = f"{s['train_seconds'] / 60:.1f} min" if s.get("train_seconds") else "-"
        rate = f"{s['posts_per_s']:.0f}" if "posts_per_s" in s else "-"
        params = f"{s['parameters'] / 1e6:.2f} M" if s.get("parameters") else "-"
        size = f"{s['bundle_mb']:.1f}" if "bundle_mb" in s else "-"
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {paper} | {s.get('chosen', '-')} "
            f"| {train_time} "
            f"| {rate} | {params} | {size} |"
        )
    if report.differences:
        lines += [
            "",
            f"F1@2 differences on the same posts, 95% bootstrap interval over the {report.images} images "
            f"({report.resamples} resamples; an interval that excludes 0 is a gap the posts support):",
            "",
            "| system - other | ΔF1@2 [95% interval] |",
            "|---|---|",
        ]
        for d in report.differences:
            diff, low, high = d["f1"][2]
            lines.append(f"| {d['system']} - {d['baseline']} | {diff:+.3f} [{low:+.3f}, {high:+.3f}] |")
    lines += ["", *(f"- {n}" for n in report.notes)]
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    (out / "comparison.json").write_text(
        json.dumps({"systems": systems, "metrics": report.systems, "differences": report.differences}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    resolve_text_init("minilm")  # fail at once, with the install line, where the package is missing
    main()
