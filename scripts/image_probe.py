"""How much the frozen image features alone can say: a linear probe beside a bundle's image-only ablation.

Issue 11 asks the model's image-only ablation to beat the frequency prior by 0.02 F1@2 on test. This fits one
logistic regression per hashtag of the bundle's vocabulary on its training posts' image features (the bundle's
own extractor, its 36 grid regions averaged and standardised; the caption unused), with C chosen on the
validation split, and scores it on a split beside the bundle's image-only ablation and the frequency prior,
with 95% bootstrap intervals over images for the differences.

    python scripts/image_probe.py [BUNDLE] [DATA] [--split test]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from sklearn.linear_model import LogisticRegression

from hashtagger.data.batching import Sample, examples_by_split
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.systems import open_bundle
from hashtagger.evaluation.tfidf import per_hashtag_probabilities

CS = (0.01, 0.1, 1.0, 10.0)


PRIOR = "frequency prior"


def prior_ranking(train_counts: dict[str, int], vocab: list[str], posts: int) -> list[list[str]]:
    return [metrics.frequency_prior([list(Counter(train_counts).elements())], vocab)[:2]] * posts


def print_against_prior(split: str, ranked: dict[str, list[list[str]]], truths: list[set[str]], digests: list[str]):
    """Each system's F1@2 and its difference from the prior's, with its 95% bootstrap interval over images."""
    groups = intervals.group_ids(digests)
    true, weights = np.array([len(t) for t in truths]), intervals.resample_weights(groups)
    counts = {name: intervals.topk_counts(r, truths, (2,)) for name, r in ranked.items()}
    print(f"{split}: {len(truths)} posts, {int(groups.max()) + 1} images; F1@2, and minus the prior (95% over images)")
    for name, r in ranked.items():
        point, low, high = intervals.f1_difference(counts[name], counts[PRIOR], true, groups, weights)[0]
        f1 = metrics.topk_metrics(r, truths, (2,))[2]["f1"]
        print(f"  {name:32s} {f1:.3f}   {point:+.3f} [{low:+.3f}, {high:+.3f}]")


def probe_scores(x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, c: float) -> np.ndarray:
    """[len(x), hashtags] probabilities of one logistic regression per hashtag."""
    return per_hashtag_probabilities(x_train, y_train, x, lambda: LogisticRegression(C=c, max_iter=1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=Path("exported"))
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    m = open_bundle(args.bundle, "cpu", 64)
    by_split = examples_by_split(m, args.data)
    index = {t: i for i, t in enumerate(m.vocab)}
    with TemporaryDirectory() as root:
        cache = FeatureCache(Path(root), m.cache_id)
        fill_cache({d: e.image for rows in by_split.values() for e, d in rows}, m.encoder, m.extractor_spec, cache)
        store = FeatureStore(cache)

        def posts(split: str) -> tuple[np.ndarray, np.ndarray, list[set[str]], list[str]]:
            rows = [(e, d) for e, d in by_split[split] if d is not None]
            x = np.stack([store.get(d)[0].mean(0) for _, d in rows])
            y = np.zeros((len(rows), len(m.vocab)), bool)
            for row, (e, _) in enumerate(rows):
                y[row, [index[t] for t in e.labels if t in index]] = True
            return x, y, [set(e.labels) for e, _ in rows], [d for _, d in rows]

        x_train, y_train, _, _ = posts("train")
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        standard = {name: posts(name) for name in ("val", args.split)}
        k = 2

        def f1(scores: np.ndarray, truths: list[set[str]]) -> float:
            return metrics.topk_metrics(metrics.rank(scores, m.vocab, k), truths, (k,))[k]["f1"]

        x_val, _, truths_val, _ = standard["val"]
        by_c = {c: f1(probe_scores((x_train - mean) / std, y_train, (x_val - mean) / std, c), truths_val) for c in CS}
        best = max(by_c, key=lambda c: by_c[c])
        print("validation F1@2 of the probe by C: " + ", ".join(f"{c:g}: {v:.3f}" for c, v in by_c.items()))

        x, _, truths, digests = standard[args.split]
        samples = [
            Sample("", [index[t] for t in truth if t in index], d) for truth, d in zip(truths, digests, strict=True)
        ]
        ranked = {
            f"image probe (C={best:g})": metrics.rank(
                probe_scores((x_train - mean) / std, y_train, (x - mean) / std, best), m.vocab, k
            ),
            "image-only ablation": metrics.rank(m.probabilities(samples, store, "text"), m.vocab, k),
            PRIOR: prior_ranking(m.train_counts, m.vocab, len(samples)),
        }
    print_against_prior(args.split, ranked, truths, digests)


if __name__ == "__main__":
    main()
