"""Bootstrap intervals for the difference in F1@k between two systems on the same posts. No torch.

Posts that share an image are not independent (re-posts, one photo with several captions), so the bootstrap
resamples IMAGES with replacement and takes all of an image's posts each time it is drawn. F1@k is micro, so
it only needs per-post counts: F1@k = 2 * correct / (recommended + true), summed over the resampled posts.
Both systems are scored on the same resample (a paired bootstrap); the interval is the 2.5th to 97.5th
percentile of the differences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0


def group_ids(keys: Sequence[str]) -> np.ndarray:
    """Each post's group number (0..groups-1), posts with the same key (image digest) in the same group."""
    _, ids = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return ids.reshape(-1)


def topk_counts(ranked: Sequence[Sequence[str]], truths: Sequence[set[str]], ks: Sequence[int]) -> np.ndarray:
    """[posts, len(ks), 2]: each post's correct and recommended hashtags at each k."""
    counts = np.zeros((len(ranked), len(ks), 2), dtype=np.int64)
    for row, (recs, truth) in enumerate(zip(ranked, truths, strict=True)):
        hits = np.cumsum([tag in truth for tag in recs])
        for col, k in enumerate(ks):
            top = min(k, len(recs))
            counts[row, col] = (hits[top - 1] if top else 0, top)
    return counts


def resample_weights(groups: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[resamples, groups]: how many times each group is drawn in each resample."""
    n = int(groups.max()) + 1 if len(groups) else 0
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) if n else np.zeros((resamples, 0), np.int64)


def f1_difference(
    a: np.ndarray, b: np.ndarray, true: np.ndarray, groups: np.ndarray, weights: np.ndarray
) -> list[tuple[float, float, float]]:
    """For each k: (F1@k of a - F1@k of b on the posts, low, high of the 95% interval).

    a, b: topk_counts of the two systems; true: each post's number of true hashtags; groups: group_ids;
    weights: resample_weights of those groups."""
    # Per group and k: correct hashtags, and recommended + true (F1's denominator), of each system.
    sums = [
        _by_group(x, groups, weights.shape[1])
        for x in (a[..., 0], b[..., 0], a[..., 1] + true[:, None], b[..., 1] + true[:, None])
    ]
    correct_a, correct_b, denominator_a, denominator_b = sums
    point = _f1(correct_a.sum(0), denominator_a.sum(0)) - _f1(correct_b.sum(0), denominator_b.sum(0))
    # [resamples, ks]: the whole bootstrap as four matrix products.
    diffs = _f1(weights @ correct_a, weights @ denominator_a) - _f1(weights @ correct_b, weights @ denominator_b)
    low, high = np.percentile(diffs, [2.5, 97.5], axis=0)
    return [(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, low, high, strict=True)]


def _by_group(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, values.shape[1]), dtype=np.float64)
    np.add.at(out, groups, values)
    return out


def _f1(correct: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        2 * correct, denominator, out=np.zeros(np.broadcast(correct, denominator).shape), where=denominator > 0
    )
