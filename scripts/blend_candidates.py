"""Does any other cheap classifier add to a bundle when blended with it? Validation split only.

Each candidate is fitted on the bundle's training split only and blended as p = (1 - w) * p_bundle + w * p_other,
w in 0.1, 0.2, 0.3, 0.5, 0.7; F1@2 and F1@3 of each blend minus the bundle alone, with 95% bootstrap intervals
over images. Candidates: the caption's word n-gram TF-IDF (evaluate's baseline, the fitted wide part), character
2-5-gram TF-IDF, both, and the hashtags of the k most similar training captions (word TF-IDF cosine, votes
weighted by similarity); the pooled image features' linear probe (image_probe.py) and their k nearest training
images. Nothing here reads the test split: it says which wide part, if any, is worth a test.

    python scripts/blend_candidates.py [BUNDLE] [DATA] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from hashtagger.bundle.wide import terms
from hashtagger.data.batching import Sample, examples_by_split
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.systems import open_bundle
from hashtagger.evaluation.tfidf import per_hashtag_probabilities
from hashtagger.evaluation.wide import f1_at

WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7)
KS = (2, 3)


def text_vectorizers() -> dict[str, object]:
    words = lambda: TfidfVectorizer(analyzer=terms, sublinear_tf=True)  # noqa: E731
    chars = lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)  # noqa: E731
    both = FeatureUnion([("words", words()), ("chars", chars())])
    return {"word TF-IDF": words(), "character 2-5-gram TF-IDF": chars(), "both": both}


def neighbours(similarity: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Each row's hashtag votes from its k most similar training rows, weighted by (positive) similarity."""
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0)
    votes = np.einsum("nk,nkl->nl", weights, y[nearest].astype(np.float32))
    return votes / np.maximum(weights.sum(1, keepdims=True), 1e-9)


def candidates(train_texts, val_texts, train_feats, val_feats, y: np.ndarray) -> dict[str, np.ndarray]:
    classifier = lambda c: lambda: LogisticRegression(C=c, solver="liblinear", max_iter=1000)  # noqa: E731
    out = {}
    for name, vectorizer in text_vectorizers().items():
        x_train = vectorizer.fit_transform(train_texts)  # type: ignore[attr-defined]
        x_val = vectorizer.transform(val_texts)  # type: ignore[attr-defined]
        out[name] = per_hashtag_probabilities(x_train, y, x_val, classifier(10.0))
        if name == "word TF-IDF":
            similarity = (x_val @ x_train.T).toarray()
            out.update({f"caption {k}-NN": neighbours(similarity, y, k) for k in (10, 30)})
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    train_z, val_z = (train_feats - mean) / std, (val_feats - mean) / std
    out["image probe"] = per_hashtag_probabilities(train_z, y, val_z, classifier(1.0))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(val_z) @ unit(train_z).T
    out.update({f"image {k}-NN": neighbours(similarity, y, k) for k in (30, 100)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=Path("exported"))
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--cache-dir", type=Path, help="region-feature cache to reuse between runs")
    args = parser.parse_args()
    m = open_bundle(args.model, "cpu", 64, wide=False)
    vocab, index = m.vocab, {t: i for i, t in enumerate(m.vocab)}
    by_split = examples_by_split(m, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp), m.cache_id)
        errors = fill_cache(
            {d: e.image for s in ("train", "val") for e, d in by_split[s]}, m.encoder, m.extractor_spec, cache
        )
        store = FeatureStore(cache)
        train = [(e, d) for e, d in by_split["train"] if e.labels and d not in errors]
        val = [(e, d) for e, d in by_split["val"] if d not in errors]
        samples = [Sample(e.text, [index[t] for t in e.labels if t in index], d) for e, d in val]
        bundle = m.probabilities(samples, store, None)
        pooled = lambda rows: np.stack([store.get(d)[0].mean(0) for _, d in rows])  # noqa: E731
        y = np.zeros((len(train), len(vocab)), bool)
        for row, (e, _) in enumerate(train):
            y[row, [index[t] for t in e.labels if t in index]] = True
        others = candidates([e.text for e, _ in train], [e.text for e, _ in val], pooled(train), pooled(val), y)
    truths = [set(e.labels or e.post.hashtags) for e, _ in val]
    groups = intervals.group_ids([d for _, d in val])
    weights, true = intervals.resample_weights(groups), np.array([len(t) for t in truths])
    counts = lambda p: intervals.topk_counts(metrics.rank(p, vocab, max(KS)), truths, KS)  # noqa: E731
    alone = counts(bundle)
    print(f"{args.model} on validation: {len(val)} posts, {groups.max() + 1} images; fitted on {len(train)} posts")
    for name, p in ({"the bundle alone": bundle} | others).items():
        print(f"  {name:34s} F1@2 {f1_at(p, vocab, truths):.3f}  F1@3 {f1_at(p, vocab, truths, 3):.3f}")
        if p is bundle:
            continue
        for w in WEIGHTS:
            diffs = intervals.f1_difference(counts((1 - w) * bundle + w * p), alone, true, groups, weights)
            cells = "  ".join(
                f"ΔF1@{k} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (d, lo, hi) in zip(KS, diffs, strict=True)
            )
            print(f"    blended at w = {w:.1f} - the bundle alone: {cells}")


if __name__ == "__main__":
    main()
