"""The practical text baseline of `evaluate`: TF-IDF over the cleaned caption the model sees, and one logistic
regression per hashtag of the model's vocabulary, fitted on the run's training split only. It shows whether the
transformer earns its cost over what a user could write in ten lines. No torch; scikit-learn (the `train` extra)
is imported when the baseline is fitted, so that a core install can still evaluate a bundle without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

TFIDF = "TF-IDF + logistic regression"
EXTRA = "train"  # the extra that installs scikit-learn


def tfidf_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def tfidf_scores(
    train_texts: Sequence[str], train_labels: Sequence[Sequence[str]], vocab: list[str], texts: Sequence[str]
) -> np.ndarray:
    """[len(texts), len(vocab)] probabilities (per_hashtag_probabilities). ValueError when the training captions
    hold no word."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    # Word unigrams and bigrams with sublinear counts: the usual strong setting for short posts.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train_texts)
    x = vectorizer.transform(texts)
    index = {t: i for i, t in enumerate(vocab)}
    y = np.zeros((len(train_texts), len(vocab)), dtype=bool)
    for row, tags in enumerate(train_labels):
        y[row, [index[t] for t in tags if t in index]] = True
    # On the real tweets' validation posts C=1 and C=10 score alike (F1@2 0.50) and C=100 lower; liblinear
    # fits the 500 one-hashtag problems about 8x faster than the default lbfgs (~20 s against ~150 s).
    return per_hashtag_probabilities(
        x_train, y, x, lambda: LogisticRegression(C=10.0, solver="liblinear", max_iter=1000)
    )


def per_hashtag_probabilities(x_train, y: np.ndarray, x, classifier: Callable[[], Any]) -> np.ndarray:
    """[len(x), hashtags] probabilities of one binary classifier per column of the multi-hot y (a fresh
    `classifier()` each, scikit-learn style). A hashtag always or never present in training gets that constant
    (a classifier needs both classes)."""
    scores = np.empty((x.shape[0], y.shape[1]), dtype=np.float32)
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.all() or not column.any():
            scores[:, j] = float(column.any())
            continue
        scores[:, j] = classifier().fit(x_train, column).predict_proba(x)[:, 1]
    return scores
