"""The wide part of a bundle (Cheng et al. 2016, "Wide & Deep Learning"), no torch and no scikit-learn: a linear
model over TF-IDF weighted word unigrams and bigrams of the cleaned caption the model sees, one logistic
regression per hashtag, fitted apart from the deep model (evaluation/wide.py) and blended with it:

    p = (1 - w) * p_deep + w * sigmoid(tfidf(caption) . coef + intercept)

with w chosen on the validation split. It learns what the transformer does not: rare words and bigrams.

wide.npz holds the n-gram vocabulary (`terms`, column order), their `idf`, `coef` [terms, hashtags] (float16:
a caption's few rows are gathered, so terms-major) and `intercept` [hashtags]; bundle.json's "wide" section holds
w and how it was chosen. `terms` is the analyser the fit uses too (scikit-learn's TfidfVectorizer is handed it),
so that fitting and tagging split a caption in one way by construction.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from hashtagger.errors import BundleError

FILE = "wide.npz"
# scikit-learn's default token pattern: words of two or more word characters.
TOKEN = re.compile(r"(?u)\b\w\w+\b")


def terms(text: str) -> list[str]:
    """The caption's lower-cased words and adjacent word pairs ("a b"), in order: TfidfVectorizer's default
    analyser with ngram_range (1, 2)."""
    words = TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


@dataclass
class WidePart:
    terms: list[str]  # column order
    idf: np.ndarray  # [terms] float32
    coef: np.ndarray  # [terms, hashtags], float16 or float32
    intercept: np.ndarray  # [hashtags] float32
    weight: float = 0.0  # w, the wide part's share of the blended probability
    # Hashtags the deep model never had (`adapt`), scored by the wide part alone: its last columns.
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.column = {t: i for i, t in enumerate(self.terms)}

    @property
    def hashtags(self) -> int:
        """Columns scored: the vocabulary's, then `extra`."""
        return len(self.intercept)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The caption's known terms (columns) and their TF-IDF values: sublinear counts times idf, L2-normalised,
        as TfidfVectorizer(sublinear_tf=True) computes them."""
        counts = Counter(c for c in map(self.column.get, terms(text)) if c is not None)
        if not counts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        columns = np.fromiter(counts, np.int64, len(counts))
        values = (1.0 + np.log(np.fromiter(counts.values(), np.float64, len(counts)))) * self.idf[columns]
        return columns, (values / np.linalg.norm(values)).astype(np.float32)

    def logits(self, texts: list[str]) -> np.ndarray:
        """[len(texts), hashtags] float32: each caption's linear scores (an empty caption: the intercepts)."""
        out = np.tile(self.intercept.astype(np.float32), (len(texts), 1))
        for row, text in enumerate(texts):
            columns, values = self.features(text)
            if len(columns):
                out[row] += values @ self.coef[columns].astype(np.float32)
        return out

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))

    def blend(self, deep: np.ndarray, texts: list[str]) -> np.ndarray:
        """(1 - w) * deep + w * wide over the vocabulary's columns, then the `extra` hashtags' columns (the wide
        part's probabilities alone), then the deep columns beyond the vocabulary (--candidates, which the wide part
        never saw) as they are."""
        if self.weight == 0.0 and not self.extra:
            return deep
        n = self.hashtags - len(self.extra)
        wide = self.probabilities(texts).astype(deep.dtype)
        vocabulary = (1.0 - self.weight) * deep[:, :n] + self.weight * wide[:, :n]
        return np.concatenate([vocabulary, wide[:, n:], deep[:, n:]], axis=1)

    def top_terms(self, text: str, hashtag: int, top: int = 3) -> list[tuple[str, float]]:
        """The caption's terms that raise the hashtag's wide logit most: (term, coef x tf-idf), largest first,
        positive ones only."""
        columns, values = self.features(text)
        weights = values * self.coef[columns, hashtag].astype(np.float32)
        order = np.argsort(-weights, kind="stable")[:top]
        return [(self.terms[columns[i]], float(weights[i])) for i in order if weights[i] > 0]

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                terms=np.array(self.terms, dtype=str),
                idf=self.idf.astype(np.float32),
                coef=self.coef,
                intercept=self.intercept.astype(np.float32),
                extra=np.array(self.extra, dtype=str),
            )


def read_wide(file: Path, weight: float, hashtags: int) -> WidePart:
    """The wide part stored in `file`, blended with weight `weight` into a deep model that scores `hashtags`
    (Bundle.wide_part reads a bundle's; bundle.json's checks hold the weight in 0..1)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            extra = list(z["extra"]) if "extra" in z.files else []
            part = WidePart(list(z["terms"]), z["idf"], z["coef"], z["intercept"], weight, extra)
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"{file}: unreadable wide part ({e})") from None
    columns = hashtags + len(part.extra)
    if part.coef.shape != (len(part.terms), columns) or part.idf.shape != (len(part.terms),):
        raise BundleError(f"{file}: shapes do not match {len(part.terms)} terms and {columns} hashtags")
    return part
