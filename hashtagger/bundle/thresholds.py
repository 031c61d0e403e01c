"""Decision thresholds on the model's probabilities, and the F1 of the hashtags they keep. No torch.

`export` tunes them on the checkpoint's validation posts and stores them in bundle.json:
- "threshold": one global cut-off, the one that maximises micro-F1 over every (post, hashtag);
- "hashtag_thresholds": {"min_positives": N, "values": {hashtag: cut-off}} for each hashtag with at least N
  validation posts. Each is tuned by coordinate ascent on the same micro-F1, starting from the global
  threshold with every other hashtag's cut-off held: a hashtag's own F1 would favour lowering the
  cut-offs of rare hashtags, at the cost of the precision of all. With fewer positives a tuned cut-off
  would follow a handful of posts, so those hashtags keep the global one.
`tag --threshold auto` keeps a hashtag of the top k when its probability reaches its own cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRID = np.linspace(0.02, 0.98, 49)
MIN_POSITIVES = 5


def truth_matrix(vocab: list[str], labels: Sequence[set[str]]) -> np.ndarray:
    """[posts, vocab] bool: the post's hashtags in the vocabulary."""
    index = {t: i for i, t in enumerate(vocab)}
    truth = np.zeros((len(labels), len(vocab)), dtype=bool)
    for row, tags in enumerate(labels):
        truth[row, [index[t] for t in tags if t in index]] = True
    return truth


def tune_threshold(probs: np.ndarray, vocab: list[str], labels: Sequence[set[str]]) -> float:
    """The single probability cut-off that maximises micro-F1 on the given posts (0.5 without labels)."""
    if not any(labels):
        return 0.5
    truth = truth_matrix(vocab, labels)
    predicted = probs[None] >= GRID[:, None, None]  # [grid, posts, vocab]
    tp = (predicted & truth).sum(axis=(1, 2))
    f1 = 2 * tp / np.maximum(1, predicted.sum(axis=(1, 2)) + truth.sum())
    return round(float(GRID[int(np.argmax(f1))]), 3)


def tune_per_hashtag(
    probs: np.ndarray, vocab: list[str], labels: Sequence[set[str]], start: float, min_positives: int = MIN_POSITIVES
) -> dict[str, float]:
    """Cut-offs of the hashtags with at least `min_positives` positive posts (see the module's docstring)."""
    truth = truth_matrix(vocab, labels)
    cutoffs = np.full(len(vocab), start)
    predicted = probs >= cutoffs
    tp, kept, positives = (predicted & truth).sum(), predicted.sum(), truth.sum()
    tuned = {}
    for j in np.flatnonzero(truth.sum(axis=0) >= min_positives):
        # Micro-F1 with hashtag j at each grid value, everything else as it stands.
        col_kept = probs[:, j, None] >= GRID  # [posts, grid]
        col_tp = (col_kept & truth[:, j, None]).sum(axis=0)
        others_tp, others_kept = tp - (predicted[:, j] & truth[:, j]).sum(), kept - predicted[:, j].sum()
        f1 = 2 * (others_tp + col_tp) / np.maximum(1, others_kept + col_kept.sum(axis=0) + positives)
        best = round(float(GRID[int(np.argmax(f1))]), 3)
        cutoffs[j], predicted[:, j] = best, probs[:, j] >= best
        tp, kept = others_tp + (predicted[:, j] & truth[:, j]).sum(), others_kept + predicted[:, j].sum()
        tuned[vocab[j]] = best
    return tuned


def thresholded_f1(probs: np.ndarray, cutoffs: np.ndarray, vocab: list[str], truths: Sequence[set[str]]) -> dict:
    """Micro precision, recall and F1 of every hashtag at or above its cut-off (all of them, not a top k), and
    the mean number kept per post. `truths` may hold hashtags outside the vocabulary: they count as missed."""
    kept = probs >= cutoffs
    correct = int((kept & truth_matrix(vocab, truths)).sum())
    n_kept, n_true = int(kept.sum()), sum(len(t) for t in truths)
    p = correct / n_kept if n_kept else 0.0
    r = correct / n_true if n_true else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "hashtags_per_post": n_kept / len(truths) if truths else 0.0,
    }


def cutoff_vector(vocab: list[str], threshold: float, per_hashtag: dict[str, float]) -> np.ndarray:
    """Each hashtag's cut-off: its own where tuned, the global one elsewhere."""
    return np.array([per_hashtag.get(t, threshold) for t in vocab], dtype=np.float64)
