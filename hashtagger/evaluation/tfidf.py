"""The practical text baseline of `evaluate`: TF-IDF over the cleaned caption the model sees, and one logistic
regression per hashtag of the model's vocabulary, fitted on the run's training split only. It shows whether the
transformer earns its cost over what a user could write in ten lines. Fitted once more, it is also the wide part
of a wide & deep bundle (bundle/wide.py scores it without scikit-learn; evaluation/wide.py writes it). No torch;
scikit-learn (the `train` extra) is imported when the baseline is fitted, so that a core install can still
evaluate a bundle without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashtagger.bundle.wide import WidePart, terms

TFIDF = "TF-IDF + logistic regression"
EXTRA = "train"  # the extra that installs scikit-learn
# The logit stored for a hashtag always (or never) present in the training posts: sigmoid(+-30) is 1 (0) to
# within 1e-13, what per_hashtag_probabilities gives such a column.
CONSTANT_LOGIT = 30.0


def tfidf_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None


@dataclass
class TfidfModel:
    """The fitted baseline: the vectorizer and, per hashtag, a logistic regression or a constant probability."""

    vectorizer: Any  # sklearn TfidfVectorizer
    models: list[Any]  # per hashtag: a fitted LogisticRegression, or 0.0 / 1.0

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), hashtags] scikit-learn's predict_proba: the reference the wide part is checked against."""
        return column_probabilities(self.models, self.vectorizer.transform(texts))

    def wide_part(self, weight: float = 0.0, dtype: type = np.float16) -> WidePart:
        """The same model as arrays for bundle/wide.py; coefficients stored as `dtype`."""
        vocabulary = self.vectorizer.vocabulary_
        names = sorted(vocabulary, key=vocabulary.__getitem__)
        coef = np.zeros((len(names), len(self.models)), np.float32)
        intercept = np.zeros(len(self.models), np.float32)
        for j, m in enumerate(self.models):
            if isinstance(m, float):
                intercept[j] = CONSTANT_LOGIT if m else -CONSTANT_LOGIT
            else:
                coef[:, j], intercept[j] = m.coef_[0], m.intercept_[0]
        idf = self.vectorizer.idf_.astype(np.float32)
        return WidePart(names, idf, coef.astype(dtype), intercept, weight)


def fit_tfidf(train_texts: Sequence[str], train_labels: Sequence[Sequence[str]], vocab: list[str]) -> TfidfModel:
    """Fitted on the training posts; ValueError when their captions hold no word."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    # Word unigrams and bigrams (bundle/wide.py's analyser, so that tagging splits captions the same way) with
    # sublinear counts: the usual strong setting for short posts.
    vectorizer = TfidfVectorizer(analyzer=terms, sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train_texts)
    index = {t: i for i, t in enumerate(vocab)}
    y = np.zeros((len(train_texts), len(vocab)), dtype=bool)
    for row, tags in enumerate(train_labels):
        y[row, [index[t] for t in tags if t in index]] = True
    # On the real tweets' validation posts C=1 and C=10 score alike (F1@2 0.50) and C=100 lower; liblinear
    # fits the 500 one-hashtag problems about 8x faster than the default lbfgs (~20 s against ~150 s).
    models = per_hashtag_classifiers(x_train, y, lambda: LogisticRegression(C=10.0, solver="liblinear", max_iter=1000))
    return TfidfModel(vectorizer, models)


def tfidf_scores(
    train_texts: Sequence[str], train_labels: Sequence[Sequence[str]], vocab: list[str], texts: Sequence[str]
) -> np.ndarray:
    """[len(texts), len(vocab)] probabilities (per_hashtag_probabilities). ValueError when the training captions
    hold no word."""
    return fit_tfidf(train_texts, train_labels, vocab).probabilities(texts)


def per_hashtag_classifiers(x_train, y: np.ndarray, classifier: Callable[[], Any]) -> list[Any]:
    """One binary classifier per column of the multi-hot y (a fresh `classifier()` each, scikit-learn style),
    fitted; a hashtag always or never present in training gets that constant instead (a classifier needs both
    classes)."""
    models: list[Any] = []
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.all() or not column.any():
            models.append(float(column.any()))
        else:
            models.append(classifier().fit(x_train, column))
    return models


def column_probabilities(models: list[Any], x) -> np.ndarray:
    """[len(x), len(models)] float32: each classifier's positive-class probability, or its constant."""
    scores = np.empty((x.shape[0], len(models)), dtype=np.float32)
    for j, m in enumerate(models):
        scores[:, j] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
    return scores


def per_hashtag_probabilities(x_train, y: np.ndarray, x, classifier: Callable[[], Any]) -> np.ndarray:
    """[len(x), hashtags] probabilities of per_hashtag_classifiers."""
    return column_probabilities(per_hashtag_classifiers(x_train, y, classifier), x)
