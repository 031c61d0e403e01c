"""The paper's top-k metrics, summed over all posts (micro). No torch.

precision@k = correct recommended hashtags / recommended hashtags
recall@k    = correct recommended hashtags / true hashtags
F1@k        = harmonic mean of the two
accuracy@k  = share of posts with at least one correct hashtag among the k recommended
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from rich.table import Table

KS = (1, 2, 3, 4, 5)
METRICS = ("precision", "recall", "f1", "accuracy")


def topk_metrics(
    ranked: list[list[str]], truths: list[set[str]], ks: tuple[int, ...] = KS
) -> dict[int, dict[str, float]]:
    """`ranked`: each post's recommendations, best first (at least max(ks) long where the vocabulary allows)."""
    if len(ranked) != len(truths):
        raise ValueError(f"{len(ranked)} rankings for {len(truths)} posts")
    results = {}
    n_true = sum(len(t) for t in truths)
    for k in ks:
        correct = recommended = hit_posts = 0
        for recs, truth in zip(ranked, truths, strict=True):
            top = recs[:k]
            c = sum(1 for tag in top if tag in truth)
            correct += c
            recommended += len(top)
            hit_posts += c > 0
        p = correct / recommended if recommended else 0.0
        r = correct / n_true if n_true else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        results[k] = {"precision": p, "recall": r, "f1": f1, "accuracy": hit_posts / len(truths) if truths else 0.0}
    return results


def rank(scores: np.ndarray, vocab: list[str], k: int) -> list[list[str]]:
    """Top-k hashtags per row of a [posts, vocab] score matrix, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(
        part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable"), axis=1
    )
    return [[vocab[i] for i in row] for row in order]


def frequency_prior(train_labels: list[list[str]], vocab: list[str]) -> list[str]:
    """The vocabulary ordered by training frequency: the 'always recommend the most frequent' baseline."""
    counts = Counter(t for tags in train_labels for t in tags)
    position = {t: i for i, t in enumerate(vocab)}
    return sorted(vocab, key=lambda t: (-counts[t], position[t]))


def same_as_prior(ranked: list[list[str]], prior: list[str], k: int = 2) -> float:
    """Share of posts whose top-k is the prior's: near 1.0 means the model learned only the frequencies."""
    top = set(prior[:k])
    return sum(set(r[:k]) == top for r in ranked) / len(ranked) if ranked else 0.0


def metrics_table(title: str, systems: dict[str, dict[int, dict[str, float]]]) -> Table:
    """One row per system and k, one column per metric."""
    table = Table(title=title)
    table.add_column("system")
    table.add_column("k", justify="right")
    for m in METRICS:
        table.add_column(m, justify="right")
    for name, by_k in systems.items():
        for k, row in by_k.items():
            table.add_row(name if k == min(by_k) else "", str(k), *(f"{row[m]:.3f}" for m in METRICS))
    return table
