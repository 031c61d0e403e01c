"""Where true hashtags land in a ranking of candidates: recall@k and mean reciprocal rank, with ties broken at
random (in expectation), bootstrap intervals over posts, and the two reference rankers of `evaluate --unseen`
(random order; the hashtag's words found in the caption). No torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashtagger.evaluation import intervals


@dataclass
class Hits:
    """Per (post, true hashtag) pair: the chance it is in the top k (one column per k), and 1 / its rank (both
    expected over random tie-breaking); `post` says which post each pair belongs to, for the bootstrap."""

    at_k: np.ndarray  # [pairs, len(ks)]
    reciprocal: np.ndarray  # [pairs]
    post: np.ndarray  # [pairs]


def hits(scores: np.ndarray, targets: list[list[int]], ks: tuple[int, ...]) -> Hits:
    """scores [posts, candidates]; targets: each post's true candidate columns."""
    at_k, reciprocal, post = [], [], []
    for row, columns in enumerate(targets):
        for c in columns:
            s = scores[row, c]
            better = int(np.sum(scores[row] > s))
            ties = int(np.sum(scores[row] == s))  # itself included
            at_k.append([min(1.0, max(0.0, (k - better) / ties)) for k in ks])
            reciprocal.append(float(np.mean(1.0 / (better + np.arange(1, ties + 1)))))
            post.append(row)
    return Hits(np.asarray(at_k, float).reshape(-1, len(ks)), np.asarray(reciprocal, float), np.asarray(post, int))


def summary(h: Hits, ks: tuple[int, ...], resamples: int = 1000, seed: int = 0) -> dict:
    """{"recall@k": {k: [value, low, high]}, "mrr": [value, low, high]}: 95% percentile intervals from
    resampling posts (the pairs of one post move together)."""
    posts = np.unique(h.post)
    rng = np.random.default_rng(seed)
    by_post = {p: np.flatnonzero(h.post == p) for p in posts}
    draws_k, draws_rr = [], []
    for _ in range(resamples):
        chosen = np.concatenate([by_post[p] for p in rng.choice(posts, size=len(posts))])
        draws_k.append(h.at_k[chosen].mean(0))
        draws_rr.append(h.reciprocal[chosen].mean())
    low_k, high_k = np.percentile(draws_k, [2.5, 97.5], axis=0)
    low_rr, high_rr = np.percentile(draws_rr, [2.5, 97.5])
    mean_k = h.at_k.mean(0)
    return {
        "recall@k": {k: [float(mean_k[i]), float(low_k[i]), float(high_k[i])] for i, k in enumerate(ks)},
        "mrr": [float(h.reciprocal.mean()), float(low_rr), float(high_rr)],
    }


def mrr_difference(a: Hits, b: Hits, resamples: int = 1000, seed: int = 0) -> list[float]:
    """[value, low, high]: a's MRR minus b's over the same pairs, with a 95% interval from resampling posts
    (intervals.resample_weights; paired: both rankings of a post move together)."""
    _, posts = np.unique(a.post, return_inverse=True)
    weights = intervals.resample_weights(posts, resamples, seed)  # [resamples, posts]
    diff = np.bincount(posts, a.reciprocal - b.reciprocal)
    pairs = np.bincount(posts).astype(float)
    low, high = np.percentile((weights @ diff) / (weights @ pairs), [2.5, 97.5])
    return [float(diff.sum() / pairs.sum()), float(low), float(high)]


def random_scores(posts: int, candidates: int) -> np.ndarray:
    """All candidates tied: with random tie-breaking, exactly a random ranking's expected recall@k and MRR."""
    return np.zeros((posts, candidates), np.float32)


def text_match_scores(texts: list[str], candidate_words: list[str], candidates: list[str]) -> np.ndarray:
    """Share of each candidate's words found among the caption's words (1 also when the hashtag itself is one
    of them): [posts, candidates]."""
    names = [set(words.split()) for words in candidate_words]
    out = np.zeros((len(texts), len(candidates)), np.float32)
    for row, text in enumerate(texts):
        present = set(text.lower().split())
        for column, (tag, words) in enumerate(zip(candidates, names, strict=True)):
            out[row, column] = 1.0 if tag in present else len(words & present) / max(1, len(words))
    return out
