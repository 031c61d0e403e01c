"""The bootstrap over images (intervals.py), the decision thresholds (thresholds.py) and the TF-IDF baseline
(baselines.py) on hand-made inputs: no model, no training."""

from __future__ import annotations

import numpy as np
import pytest

from hashtagger.bundle import thresholds
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.tfidf import tfidf_scores

TRUTHS = [{"a"}, {"b"}, {"a", "c"}, {"c"}, {"b"}, {"a"}, {"c"}, {"a", "b"}]
GOOD = [sorted(t) + [x for x in "abc" if x not in t] for t in TRUTHS]  # every post's hashtags first
POOR = [["c", "b", "a"]] * 8


def counts(ranked, ks=(1, 2, 3)):
    return intervals.topk_counts(ranked, TRUTHS, ks)


def test_posts_sharing_images_are_one_group_each():
    images = ["x", "x", "x", "y", "y", "z", "z", "z"]
    groups = intervals.group_ids(images)
    assert groups.max() + 1 == 3
    assert len(set(groups[:3])) == 1 and len(set(groups[3:5])) == 1 and groups[0] != groups[3]
    weights = intervals.resample_weights(groups, resamples=50)
    assert weights.shape == (50, 3) and (weights.sum(axis=1) == 3).all()  # images are drawn, not posts
    # One image for every post: every resample is the whole set, so the interval is the point itself.
    same = intervals.group_ids(["only"] * len(TRUTHS))
    true = np.array([len(t) for t in TRUTHS])
    for d, lo, hi in intervals.f1_difference(counts(GOOD), counts(POOR), true, same, intervals.resample_weights(same)):
        assert lo == pytest.approx(d) and hi == pytest.approx(d)


def test_point_estimate_is_the_f1_difference_and_lies_in_its_interval():
    ks = (1, 2, 3)
    groups = intervals.group_ids(["p", "p", "q", "r", "s", "s", "t", "u"])
    true = np.array([len(t) for t in TRUTHS])
    rows = intervals.f1_difference(counts(GOOD), counts(POOR), true, groups, intervals.resample_weights(groups))
    good, poor = metrics.topk_metrics(GOOD, TRUTHS, ks), metrics.topk_metrics(POOR, TRUTHS, ks)
    for k, (d, lo, hi) in zip(ks, rows, strict=True):
        assert d == pytest.approx(good[k]["f1"] - poor[k]["f1"])
        assert lo <= d <= hi
    # At k=1 GOOD is right on every post, POOR on three of eight: never worse on any resample.
    assert rows[0][0] > 0 and rows[0][1] >= 0


def test_identical_systems_differ_by_exactly_zero():
    groups = intervals.group_ids([str(i % 3) for i in range(len(TRUTHS))])
    true = np.array([len(t) for t in TRUTHS])
    rows = intervals.f1_difference(counts(GOOD), counts(GOOD), true, groups, intervals.resample_weights(groups))
    assert rows == [(0.0, 0.0, 0.0)] * 3


def test_the_bootstrap_is_seeded():
    groups = intervals.group_ids([str(i) for i in range(8)])
    assert (intervals.resample_weights(groups) == intervals.resample_weights(groups)).all()


def test_per_hashtag_thresholds_need_enough_positives():
    rng = np.random.default_rng(0)
    vocab = ["often", "rare"]
    labels = [{"often"} if i % 2 else set() for i in range(40)] + [{"rare"}] * 4
    # "often" is told apart only above 0.7; "rare" has 4 positives, fewer than MIN_POSITIVES.
    probs = np.column_stack(
        [
            [rng.uniform(0.75, 0.95) if "often" in t else rng.uniform(0.4, 0.65) for t in labels],
            rng.uniform(0, 1, len(labels)),
        ]
    )
    tuned = thresholds.tune_per_hashtag(probs, vocab, labels, start=0.3)
    assert set(tuned) == {"often"} and 0.65 <= tuned["often"] <= 0.75
    cutoffs = thresholds.cutoff_vector(vocab, 0.3, tuned)
    assert cutoffs[1] == 0.3  # the global threshold for the rest
    per_hashtag = thresholds.thresholded_f1(probs, cutoffs, vocab, labels)
    assert per_hashtag["f1"] > thresholds.thresholded_f1(probs, np.full(2, 0.3), vocab, labels)["f1"]


def test_thresholded_f1_counts_hashtags_outside_the_vocabulary_as_missed():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    got = thresholds.thresholded_f1(probs, np.full(2, 0.5), ["a", "b"], [{"a"}, {"b", "zz"}])
    assert got == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "hashtags_per_post": 1.0})


def test_tfidf_learns_the_words_that_go_with_a_hashtag():
    texts = ["a cat on the sofa", "my cat sleeps", "the dog runs", "a dog barks", "birds sing", "a bird flies"] * 3
    labels = [["cat"], ["cat"], ["dog"], ["dog"], ["bird"], ["bird"]] * 3
    vocab = ["bird", "cat", "dog", "never"]
    scores = tfidf_scores(texts, labels, vocab, ["a cat", "two dogs and a dog", "nothing here"])
    assert scores.shape == (3, 4)
    assert [vocab[i] for i in scores[:2].argmax(axis=1)] == ["cat", "dog"]
    assert (scores[:, 3] == 0).all()  # a hashtag no training post carries is never recommended
