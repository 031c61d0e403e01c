"""Fitting a bundle's wide part (bundle/wide.py) beside its deep model, with scikit-learn and no torch.

The wide part is the TF-IDF + logistic regression classifier of tfidf.py, fitted on the bundle's training split
only (split.json; the training data it records, or `data`). Its weight w in the blend
p = (1 - w) * p_deep + w * p_wide is the one of 0, 0.1, ..., 1 with the best F1@2 on the validation split (ties
to the smaller w), and the bundle's decision thresholds are tuned again on the blend, as export tunes them on the
deep model. Before anything is written the NumPy scorer that tags with it is checked against scikit-learn's
predict_proba on the validation posts (the coefficients are stored in float16).

    fit_wide("exported", "exported-wide")       # a copy of the bundle with wide.npz; the source is untouched
    write_wide(folder, fit_wide_part(folder))   # in place, in a bundle folder being written (export --wide)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from hashtagger.bundle.format import check_bundle_target, read_bundle, write_manifest
from hashtagger.bundle.thresholds import MIN_POSITIVES, tune_per_hashtag, tune_threshold
from hashtagger.bundle.wide import FILE, WidePart
from hashtagger.data.batching import Sample, examples_by_split
from hashtagger.data.prep import Example
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.errors import DataError, ParityError
from hashtagger.evaluation import metrics
from hashtagger.evaluation.systems import open_bundle
from hashtagger.evaluation.tfidf import fit_tfidf
from hashtagger.io.claims import Inputs
from hashtagger.io.files import atomic_folder

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
# float16 coefficients move the real tweets' validation probabilities by 3.7e-4 at most (float32: 2e-7).
TOLERANCE = 1e-3


@dataclass
class WideFit:
    part: WidePart  # its weight is the chosen w
    grid: dict[float, float]  # w -> validation F1@2 of the blend
    parity: dict[str, float]  # max_abs_diff, same_top5 (share of validation posts), posts
    train_posts: int
    val_posts: int
    val_blend: np.ndarray  # [validation posts, hashtags] the blend's probabilities (thresholds are tuned on them)
    val_truths: list[set[str]]
    val_before: float  # validation F1@2 of the bundle as it was (its own wide part, if any)
    accepted: int = 0  # of train_posts, those given beside the training split (adapt)

    def record(self) -> dict:
        """bundle.json's "wide" section."""
        return {
            "file": FILE,
            "weight": self.part.weight,
            "terms": len(self.part.terms),
            "coef_dtype": str(self.part.coef.dtype),
            "fitted_on": {"posts": self.train_posts, "accepted": self.accepted},
            "extra_hashtags": len(self.part.extra),
            "validation_f1_at_2": {f"{w:.1f}": round(f1, 4) for w, f1 in self.grid.items()},
            "validation_posts": self.val_posts,
            "parity": self.parity,
        }


def f1_at(probs: np.ndarray, labels: list[str], truths: list[set[str]], k: int = 2) -> float:
    return metrics.topk_metrics(metrics.rank(probs, labels, k), truths, (k,))[k]["f1"]


def blend_grid(
    part: WidePart, deep: np.ndarray, texts: list[str], labels: list[str], truths: list[set[str]]
) -> dict[float, float]:
    """F1@2 of the blend (part.blend: `extra` hashtags included) for each w of WEIGHTS; part.weight is left at
    the last one."""
    grid = {}
    for w in WEIGHTS:
        part.weight = w
        grid[w] = f1_at(part.blend(deep, texts), labels, truths)
    return grid


def choose_weight(grid: dict[float, float]) -> float:
    """The best w; ties go to the smaller one (the deep model alone wins a tie at 0)."""
    best = max(grid.values())
    return min(w for w, f1 in grid.items() if f1 >= best - 1e-12)


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    top = np.argsort(-reference, axis=1, kind="stable")[:, :5]
    same = np.argsort(-candidate, axis=1, kind="stable")[:, :5]
    return {
        "max_abs_diff": float(np.abs(reference - candidate).max()) if reference.size else 0.0,
        "same_top5": float((np.sort(top, 1) == np.sort(same, 1)).all(1).mean()) if len(top) else 1.0,
        "posts": len(reference),
    }


def fit_wide_part(
    folder: Path,
    data: str | None = None,
    extra: list[Example] | None = None,
    new_tags: list[str] | None = None,
    console: Console | None = None,
) -> WideFit:
    """The wide part of the bundle in `folder`, fitted on its training split plus `extra` posts (whose labels may
    hold `new_tags`, hashtags outside the vocabulary: the wide part alone scores them), its weight chosen on the
    validation split. ParityError when the NumPy scorer and scikit-learn disagree beyond TOLERANCE."""
    console = console or Console(stderr=True)
    m = open_bundle(folder, "cpu", 64, wide=False)
    before = read_bundle(folder, verify=False).wide_part()  # the one being replaced
    by_split = examples_by_split(m, data)
    train = [e for e, _ in by_split["train"] if e.labels] + list(extra or [])
    if not train:
        raise DataError(f"{folder}: no post of the training split is in the data; pass the training data")
    labels = m.vocab + list(new_tags or [])
    new = set(new_tags or [])
    # A training post's hashtags outside the vocabulary were dropped from its labels; the new ones count again.
    tags = [e.labels + [t for t in e.post.hashtags if t in new and t not in e.labels] for e in train]
    with console.status(f"fitting the wide part on {len(train)} posts"):
        tfidf = fit_tfidf([e.text for e in train], tags, labels)
    part = tfidf.wide_part()
    part.extra = list(new_tags or [])
    with tempfile.TemporaryDirectory(prefix="hashtagger-wide-") as root:
        cache = FeatureCache(Path(root), m.cache_id)
        errors = fill_cache({d: e.image for e, d in by_split["val"]}, m.encoder, m.extractor_spec, cache)
        rows = [(e, d) for e, d in by_split["val"] if d not in errors]
        if not rows:
            raise DataError(f"{folder}: no validation post can be read; the weight needs them")
        index = {t: i for i, t in enumerate(m.vocab)}
        samples = [Sample(e.text, [index[t] for t in e.labels if t in index], d) for e, d in rows]
        with console.status(f"scoring {len(samples)} validation posts"):
            deep = m.probabilities(samples, FeatureStore(cache), None)
    texts = [s.text for s in samples]
    wide = part.probabilities(texts)
    check = parity(tfidf.probabilities(texts), wide)
    if check["max_abs_diff"] > TOLERANCE:
        raise ParityError(
            f"wide part: the NumPy scorer differs from scikit-learn by {check['max_abs_diff']:.2e} on "
            f"{len(texts)} validation posts (tolerance {TOLERANCE:.0e}); nothing written"
        )
    truths = [set(e.labels or e.post.hashtags) for e, _ in rows]
    grid = blend_grid(part, deep, texts, labels, truths)
    part.weight = choose_weight(grid)
    old_labels = m.vocab + (before.extra if before else [])
    old = f1_at(deep if before is None else before.blend(deep, texts), old_labels, truths)
    blend = part.blend(deep, texts)
    return WideFit(part, grid, check, len(train), len(rows), blend, truths, old, len(extra or []))


def write_wide(folder: Path, fit: WideFit, console: Console | None = None) -> None:
    """Add (or replace) the wide part `fit` (fit_wide_part) of the bundle in `folder`, in place: wide.npz,
    bundle.json's "wide" section and thresholds tuned on the blend, the manifest. For a folder being written
    (inside atomic_folder)."""
    console = console or Console(stderr=True)
    part, w = fit.part, fit.part.weight
    vocab = read_bundle(folder, verify=False).vocab + part.extra
    part.save(folder / FILE)
    info = json.loads((folder / "bundle.json").read_text())
    info["wide"] = fit.record()
    # The blend's scores are not the deep model's: its cut-offs are tuned again, as export tunes them.
    info["threshold"] = threshold = tune_threshold(fit.val_blend, vocab, fit.val_truths)
    info["hashtag_thresholds"] = {
        "min_positives": MIN_POSITIVES,
        "values": tune_per_hashtag(fit.val_blend, vocab, fit.val_truths, threshold),
    }
    (folder / "bundle.json").write_text(json.dumps(info, indent=1))
    write_manifest(folder)
    console.print(
        f"wide part: {len(part.terms)} terms, {len(part.extra)} new hashtags, w = {w:.1f}; validation F1@2 "
        f"{fit.grid[w]:.3f} (the bundle before: {fit.val_before:.3f}); parity with scikit-learn: max |Δp| "
        f"{fit.parity['max_abs_diff']:.1e}",
        highlight=False,
    )


def fit_wide(
    bundle: str | Path,
    output: str | Path,
    data: str | None = None,
    extra: list[Example] | None = None,
    new_tags: list[str] | None = None,
    console: Console | None = None,
    force: bool = False,
    inputs: Inputs = (),
) -> WideFit:
    """Write `output`: the bundle at `bundle` plus a wide part (fit_wide_part, write_wide). `output` may be
    `bundle` itself (it is replaced whole when the new one is complete) or a new folder; anything else only with
    `force`, and never one of `inputs` (the posts read beside the bundle). Returns what was fitted."""
    source = read_bundle(bundle)
    output = Path(output)
    check_bundle_target(output, force, inputs)
    with atomic_folder(output) as work:
        for file in source.path.iterdir():
            if file.is_file():
                shutil.copy2(file, work / file.name)
        fit = fit_wide_part(work, data, extra, new_tags, console)
        write_wide(work, fit, console)
    read_bundle(output)  # what we wrote must open
    return fit
