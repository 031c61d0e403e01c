"""Wide & deep, the cheap way: the deep model's probabilities blended with a wide part fitted apart.

The wide part is the TF-IDF + logistic regression text classifier of `evaluate` (word unigrams and bigrams of the
cleaned caption the model sees), fitted on the model's training split only and scored by the bundle's own NumPy
scorer (bundle/wide.py, coefficients in float16 as a bundle stores them). The blend is

    p = (1 - w) * p_deep + w * p_wide (+ v * p_image: the optional linear probe on the pooled image features,
                                          with w + v <= 1)

with w (and v) chosen on the validation split by F1@2 (grid step 0.1), then scored once on the test split with
95% bootstrap intervals over images, beside TF-IDF, the ablations and the frequency prior, at k = 2 and 3.
The ablations blank a stream in both parts: text-only blanks the image in the deep part (and the image probe's
share falls back to its intercepts); image-only blanks the caption in the deep and the wide part (whose
share then is its intercepts alone, a prior).

    python scripts/wide_and_deep.py [MODEL] [DATA] [--image] [--cache-dir DIR]

MODEL: a bundle (exported/) or a checkpoint folder (runs/x/best).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from hashtagger.data.batching import Sample, examples_by_split
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.systems import open_bundle, open_checkpoint
from hashtagger.evaluation.tfidf import TFIDF, fit_tfidf, per_hashtag_classifiers
from hashtagger.evaluation.tfidf import column_probabilities as probe_probabilities

GRID = np.round(np.arange(0, 1.01, 0.1), 1)
KS = (2, 3)
MODES = {"full": None, "text-only": "image", "image-only": "text"}  # ablation -> the stream the deep part loses


def f1_at(probs: np.ndarray, vocab: list[str], truths: list[set[str]], k: int = 2) -> float:
    return metrics.topk_metrics(metrics.rank(probs, vocab, k), truths, (k,))[k]["f1"]


def choose(parts: dict[str, np.ndarray], vocab: list[str], truths: list[set[str]], image: bool) -> tuple[float, float]:
    """(w, v) with the best validation F1@2, printing the grid; ties go to the smaller v, then the smaller w."""
    print("validation F1@2 by w (rows: v, the image probe's share)" if image else "validation F1@2 by w")
    print("  v \\ w " + " ".join(f"{w:5.1f}" for w in GRID))
    best, best_f1 = (0.0, 0.0), -1.0
    for v in GRID if image else GRID[:1]:
        row = []
        for w in GRID:
            if w + v > 1.0 + 1e-9:
                row.append("    -")
                continue
            p = (1 - w - v) * parts["deep"] + w * parts["wide"] + (v * parts["image"] if v else 0.0)
            f1 = f1_at(p, vocab, truths)
            row.append(f"{f1:.3f}")
            if f1 > best_f1 + 1e-12:
                best, best_f1 = (float(w), float(v)), f1
        print(f"  {v:5.1f} " + " ".join(row))
    chosen = f"w = {best[0]:.1f}" + (f", v = {best[1]:.1f}" if image else "")
    print(f"chosen on validation: {chosen} (F1@2 {best_f1:.3f})")
    return best


def print_test(ranked: dict[str, list[list[str]]], truths: list[set[str]], digests: list[str], pairs) -> None:
    print(f"test: {len(truths)} posts, {len(set(digests))} images")
    for name, r in ranked.items():
        m = metrics.topk_metrics(r, truths, KS)
        print(f"  {name:44s} " + "  ".join(f"F1@{k} {m[k]['f1']:.3f}" for k in KS))
    groups = intervals.group_ids(digests)
    weights = intervals.resample_weights(groups)
    true = np.array([len(t) for t in truths])
    counts = {name: intervals.topk_counts(r, truths, KS) for name, r in ranked.items()}
    print("differences (95% bootstrap over images)")
    for a, b in pairs:
        rows = intervals.f1_difference(counts[a], counts[b], true, groups, weights)
        cells = "  ".join(f"ΔF1@{k} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (d, lo, hi) in zip(KS, rows, strict=True))
        print(f"  {a + ' - ' + b:70s} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=Path("exported"))
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--image", action="store_true", help="also a linear probe on the pooled image features")
    parser.add_argument("--cache-dir", type=Path, help="region-feature cache to reuse between runs")
    args = parser.parse_args()
    bundle = (args.model / "bundle.json").is_file()
    m = (open_bundle if bundle else open_checkpoint)(args.model, "cpu", 64)
    vocab, index = m.vocab, {t: i for i, t in enumerate(m.vocab)}
    by_split = examples_by_split(m, args.data)
    train = [e for e, _ in by_split["train"] if e.labels]
    print(f"{args.model}: {len(vocab)} hashtags; wide part fitted on {len(train)} training posts")
    tfidf = fit_tfidf([e.text for e in train], [e.labels for e in train], vocab)
    wide = tfidf.wide_part()
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(args.cache_dir or m.cache_root or Path(tmp), m.cache_id)
        splits = ("train", "val", "test") if args.image else ("val", "test")
        fill_cache({d: e.image for s in splits for e, d in by_split[s]}, m.encoder, m.extractor_spec, cache)
        store = FeatureStore(cache)
        probe = None
        if args.image:
            x = np.stack([store.get(d)[0].mean(0) for e, d in by_split["train"] if e.labels])
            mean, std = x.mean(0), x.std(0) + 1e-6
            y = np.zeros((len(train), len(vocab)), bool)
            for row, e in enumerate(train):
                y[row, [index[t] for t in e.labels if t in index]] = True
            # C=1: chosen on validation by scripts/image_probe.py among 0.01-10.
            classifier = lambda: LogisticRegression(C=1.0, max_iter=1000)  # noqa: E731
            probe = (per_hashtag_classifiers((x - mean) / std, y, classifier), mean, std)
        parts, truths, digests = {}, {}, {}
        for split in ("val", "test"):
            rows = by_split[split]
            texts = [e.text for e, _ in rows]
            truths[split] = [set(e.labels or e.post.hashtags) for e, _ in rows]
            digests[split] = [d for _, d in rows]
            samples = [Sample(e.text, [index[t] for t in e.labels if t in index], d) for e, d in rows]
            parts[split] = {}
            for mode, blank in MODES.items():
                p = {
                    "deep": m.probabilities(samples, store, blank),
                    "wide": wide.probabilities([""] * len(texts) if blank == "text" else texts),
                    "tfidf": tfidf.probabilities(texts),
                }
                if probe is not None:
                    models, mean, std = probe
                    feats = np.stack([store.get(d)[0].mean(0) for d in digests[split]])
                    p["image"] = probe_probabilities(models, (feats - mean) / std)
                    if blank == "image":  # no image: the probe's share is its value on the mean image
                        at_mean = probe_probabilities(models, np.zeros((1, feats.shape[1])))
                        p["image"] = np.tile(at_mean, (len(texts), 1))
                parts[split][mode] = p
    w, v = choose(parts["val"]["full"], vocab, truths["val"], args.image)
    prior = metrics.frequency_prior([list(Counter(m.train_counts).elements())], vocab)[: max(KS)]
    blend = {}
    for mode, p in parts["test"].items():
        blended = (1 - w - v) * p["deep"] + w * p["wide"] + (v * p["image"] if v else 0.0)
        blend[mode] = metrics.rank(blended, vocab, max(KS))
    t = parts["test"]
    ranked = {
        f"wide & deep (w={w:.1f}{f', v={v:.1f}' if args.image else ''})": blend["full"],
        "wide & deep, text-only ablation": blend["text-only"],
        "wide & deep, image-only ablation": blend["image-only"],
        "deep model alone": metrics.rank(t["full"]["deep"], vocab, max(KS)),
        "deep model alone, text-only ablation": metrics.rank(t["text-only"]["deep"], vocab, max(KS)),
        "deep model alone, image-only ablation": metrics.rank(t["image-only"]["deep"], vocab, max(KS)),
        TFIDF: metrics.rank(t["full"]["tfidf"], vocab, max(KS)),
        "frequency prior": [prior] * len(truths["test"]),
    }
    names = list(ranked)
    pairs = [
        (names[0], TFIDF),
        (names[0], names[1]),
        (names[0], names[3]),
        (names[2], "frequency prior"),
        (names[0], "frequency prior"),
        (names[3], TFIDF),
    ]
    print_test(ranked, truths["test"], digests["test"], pairs)


if __name__ == "__main__":
    main()
