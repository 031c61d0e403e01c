"""`hashtagger evaluate`: the paper's top-k metrics for a model, beside its text-only and image-only
ablations, a TF-IDF text baseline and the frequency prior, on the model's validation or test split or on
every post of a separate dataset; bootstrap intervals for the differences that matter, and the F1 of the
bundle's thresholded output.

The metrics (metrics.py), summed over all evaluated posts (micro), for k = 1..5:
    precision@k = correct recommended hashtags / recommended hashtags
    recall@k    = correct recommended hashtags / true hashtags
    F1@k        = harmonic mean of precision@k and recall@k
    accuracy@k  = share of posts with at least one correct hashtag among the k recommended

Which posts, and what is true:
- split "test" (or "val"): the posts of DATA (the training data) whose image is in the model's stored test
  (validation) split, prepared as training prepared them; the true hashtags are the post's hashtags in the
  vocabulary (the paper's protocol). A checkpoint stores its split in split.json; `export` copies it into
  the bundle. The validation split chose the checkpoint and the bundle's thresholds: its figures flatter.
- split "all": every post of DATA, its caption cleaned with the model's options; the true hashtags are
  all of the post's hashtags, in the vocabulary or not. A post none of whose hashtags is in the
  vocabulary cannot be hit: it counts as a miss, and their number is reported.
Posts with no hashtag and posts whose image cannot be read are skipped and counted.

Systems: the model; text-only (visual features zeroed) and image-only (empty caption), blanked by
batching.make_batch for both backends; TF-IDF + logistic regression over the cleaned caption, fitted on the
model's training split (baselines.py; skipped with a note without scikit-learn); the frequency prior (the k
most frequent training hashtags).

Differences (intervals.py): F1@k of model - TF-IDF, model - text-only, image-only - prior and model - prior,
each with a 95% bootstrap interval over images (2,000 seeded resamples). Thresholded (thresholds.py, a
bundle only): micro precision / recall / F1 of every hashtag at or above the bundle's global threshold, and
at or above its per-hashtag thresholds.

The compared systems and the posts are opened in systems.py; the tables, JSON report and plot are in
report.py; `evaluate --unseen` is in unseen.py.

No torch at import: a bundle is evaluated with ONNX Runtime alone; a checkpoint loads PyTorch when opened.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from hashtagger.bundle import thresholds
from hashtagger.bundle.locate import find_model
from hashtagger.data.batching import Sample
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.errors import DataError
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.options import EvaluateOptions
from hashtagger.evaluation.report import Report, skipped_text
from hashtagger.evaluation.systems import (
    ABLATIONS,
    PRIOR,
    EvalModel,
    Posts,
    open_bundle,
    open_checkpoint,
    select_posts,
    tfidf_baseline,
)
from hashtagger.evaluation.tfidf import TFIDF
from hashtagger.io.console import progress_bar

# (system, baseline) pairs whose F1@k difference gets a bootstrap interval, where both were scored.
DIFFERENCES = (("model", TFIDF), ("model", "text-only"), ("image-only", PRIOR), ("model", PRIOR))
COMPARE_KS = (2,)  # compare's cut-off unless told: the paper's Table 3 reports F1@2


def parse_ks(text: str) -> tuple[int, ...]:
    """'1..5' / '1-5' (a range), '2', '1,2,5' -> sorted cut-offs."""
    ks: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)\s*(?:\.\.|-)\s*(\d+)|(\d+)", part)
        if not m:
            raise DataError(f"--k {text!r}: use a number, a range such as 1..5, or a list such as 1,2,5")
        lo, hi = (int(m[1]), int(m[2])) if m[3] is None else (int(m[3]), int(m[3]))
        ks.update(range(lo, hi + 1))
    if not ks or min(ks) < 1:
        raise DataError(f"--k {text!r}: cut-offs must be 1 or more")
    return tuple(sorted(ks))


def evaluate(
    data: str | Path | None,
    model: str | Path | None = None,
    checkpoint: str | Path | None = None,
    options: EvaluateOptions | None = None,
    console: Console | None = None,
) -> Report:
    """Score the model (a bundle via ONNX Runtime, or a checkpoint via PyTorch; default: exported/),
    its text-only / image-only ablations, the TF-IDF baseline and the frequency prior on the same posts.

    data: the posts (folder or CSV); for split "val" / "test" None means the training data the model records.
    """
    return _evaluate(data, model, checkpoint, options or EvaluateOptions(), console)[0]


@dataclass
class _Scored:
    """Each system's top-k per post, the posts' true hashtags and image groups: what differences are taken from."""

    ranked: dict[str, list[list[str]]]
    truths: list[set[str]]
    groups: np.ndarray


def _evaluate(
    data: str | Path | None,
    model: str | Path | None,
    checkpoint: str | Path | None,
    options: EvaluateOptions,
    console: Console | None = None,
) -> tuple[Report, _Scored]:
    """evaluate(), with what it ranked: compare() takes the differences between systems from it."""
    console = console or Console(stderr=True)
    options = options.checked()
    split, ks = options.split, options.ks
    if model is not None and checkpoint is not None:
        raise DataError("give --model (an exported bundle) or --checkpoint, not both")
    if checkpoint is not None:
        m = open_checkpoint(Path(checkpoint), options.device, options.batch_size)
    else:
        m = open_bundle(find_model(model).path, options.device, options.batch_size)
    posts = select_posts(m, data, split, options.columns)
    vocab = m.vocab
    samples, truths, ranked, probs = _score_model(m, posts, ks, console, options.cache_dir, options.ablations)
    notes = list(m.notes)
    with console.status(f"{TFIDF}: fitting on the training split"):
        baseline, note = tfidf_baseline(m, posts.train, [s.text for s in samples])
    notes.append(note)
    if baseline is not None:
        ranked[TFIDF] = metrics.rank(baseline, vocab, ks[-1])
    prior = metrics.frequency_prior([list(Counter(m.train_counts).elements())], vocab)[: ks[-1]]
    ranked[PRIOR] = [prior] * len(samples)
    groups = intervals.group_ids([s.digest for s in samples])
    thresholded, threshold_notes = _thresholded(m, probs["model"], truths, split)
    in_vocab = set(vocab)
    report = Report(
        data=str(data if data is not None else m.args.get("data")),
        split=split,
        model=str(m.path),
        backend=m.backend,
        device=m.device,
        ks=list(ks),
        posts=len(samples),
        oov_posts=sum(1 for t in truths if not t & in_vocab),
        true_hashtags=sum(len(t) for t in truths),
        vocab_size=len(vocab),
        skipped=posts.skipped,
        systems={name: metrics.topk_metrics(r, truths, ks) for name, r in ranked.items()},
        missing_test_images=posts.missing_test_images,
        arch=m.arch,
        vocab_id=_digest(vocab),
        posts_id=_digest([f"{s.digest}:{s.text}" for s in samples]),
        notes=notes + threshold_notes,
        differences=_differences(ranked, truths, ks, groups),
        images=int(groups.max()) + 1,
        thresholded=thresholded,
    )
    return report, _Scored(ranked, truths, groups)


def _score_model(
    m: EvalModel,
    posts: Posts,
    ks: tuple[int, ...],
    console: Console,
    cache_dir: str | Path | None,
    ablations: bool,
) -> tuple[list[Sample], list[set[str]], dict[str, list[list[str]]], dict[str, np.ndarray]]:
    """The model (and its ablations) on every post with a readable image: the samples, their true hashtags, and
    each system's top-k and probabilities. Posts whose image cannot be read are counted in `posts.skipped`."""
    index = {t: i for i, t in enumerate(m.vocab)}
    with ExitStack() as stack:
        root = cache_dir or m.cache_root or stack.enter_context(tempfile.TemporaryDirectory(prefix="hashtagger-eval-"))
        cache = FeatureCache(Path(root), m.cache_id)
        images = {d: e.image for e, d, _ in posts.rows if d is not None}
        with progress_bar(console) as progress:
            task = progress.add_task("region features", total=len(images))
            errors = fill_cache(
                images, m.encoder, m.extractor_spec, cache, on_progress=lambda n: progress.advance(task, n)
            )
        usable = [(e, d, truth) for e, d, truth in posts.rows if d is not None and d not in errors]
        posts.skipped["unreadable image"] = len(posts.rows) - len(usable)
        if not usable:
            raise DataError(f"no post can be evaluated (skipped: {skipped_text(posts.skipped)})")
        truths = [truth for _, _, truth in usable]
        samples = [Sample(e.text, [index[t] for t in truth if t in index], d) for e, d, truth in usable]
        store = FeatureStore(cache)
        ranked, probs = {}, {}
        for name, blank in ABLATIONS.items() if ablations else [("model", None)]:
            with console.status(f"{name}: scoring {len(samples)} posts"):
                probs[name] = m.probabilities(samples, store, blank)
                ranked[name] = metrics.rank(probs[name], m.vocab, ks[-1])
    return samples, truths, ranked, probs


def _differences(
    ranked: dict[str, list[list[str]]],
    truths: list[set[str]],
    ks: tuple[int, ...],
    groups: np.ndarray,
    pairs: Sequence[tuple[str, str]] = DIFFERENCES,
) -> list[dict]:
    """The (system, baseline) pairs whose systems were both scored, each with its bootstrap interval over images."""
    true = np.array([len(t) for t in truths])
    weights = intervals.resample_weights(groups)
    counts = {name: intervals.topk_counts(r, truths, ks) for name, r in ranked.items()}
    result = []
    for system, baseline in pairs:
        if system in counts and baseline in counts:
            rows = intervals.f1_difference(counts[system], counts[baseline], true, groups, weights)
            result.append({"system": system, "baseline": baseline, "f1": dict(zip(ks, map(list, rows), strict=True))})
    return result


def _thresholded(m: EvalModel, probs: np.ndarray, truths: list[set[str]], split: str) -> tuple[dict, list[str]]:
    """The F1 of the model's thresholded output with the bundle's global and per-hashtag thresholds, and notes."""
    if m.threshold is None:
        return {}, ["thresholded F1: only for a bundle (`export` tunes the thresholds); evaluate it with --model"]
    result = {
        "global": {"threshold": m.threshold}
        | thresholds.thresholded_f1(probs, np.full(len(m.vocab), m.threshold), m.vocab, truths)
    }
    notes = []
    if m.hashtag_thresholds is None:
        notes.append("thresholded F1: the bundle has no per-hashtag thresholds (exported before them): re-export it")
    else:
        cutoffs = thresholds.cutoff_vector(m.vocab, m.threshold, m.hashtag_thresholds)
        result["per-hashtag"] = {"tuned": len(m.hashtag_thresholds)} | thresholds.thresholded_f1(
            probs, cutoffs, m.vocab, truths
        )
    if split == "val":
        notes.append("thresholded F1: the thresholds were tuned on these validation posts, so it flatters")
    return result, notes


def _digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def compare(
    data: str | Path | None,
    models: Sequence[str | Path],
    names: list[str] | None = None,
    options: EvaluateOptions | None = None,
    console: Console | None = None,
) -> Report:
    """Several trained systems (bundles or checkpoints, e.g. of different --arch) on the same posts, with
    the TF-IDF baseline and the frequency prior: the paper's Table 3, and the F1 differences of the first system
    to each other one with their bootstrap intervals. Each is scored on its own vocabulary; where vocabularies or
    the evaluated posts differ the baselines are given per vocabulary, no difference is taken, and the notes
    say so. Default options: k = 2; the ablations are never scored."""
    options = replace(options or EvaluateOptions(ks=COMPARE_KS), ablations=False)
    if not models:
        raise DataError("--compare needs at least one bundle or run")
    reports, scored, paths = [], [], [Path(m) for m in models]
    for path in paths:
        bundle = (path / "bundle.json").is_file()
        report, ranks = _evaluate(data, path if bundle else None, None if bundle else path, options, console)
        reports.append(report)
        scored.append(ranks)
    given = list(names or [r.arch for r in reports])
    names = [  # the same architecture twice: tell them apart by folder
        f"{name} ({path.name})" if given.count(name) > 1 else name for name, path in zip(given, paths, strict=True)
    ]
    first = reports[0]
    shared = all(r.vocab_id == first.vocab_id and r.posts_id == first.posts_id for r in reports)
    systems, notes, differences = _side_by_side(names, reports, scored, shared)
    return Report(
        data=first.data,
        split=options.split,
        model=", ".join(r.model for r in reports),
        backend=", ".join(sorted({r.backend for r in reports})),
        device=", ".join(sorted({r.device for r in reports})),
        ks=first.ks,
        posts=first.posts,
        oov_posts=first.oov_posts,
        true_hashtags=first.true_hashtags,
        vocab_size=first.vocab_size,
        skipped=first.skipped,
        systems=systems,
        missing_test_images=first.missing_test_images,
        arch="compare",
        vocab_id=first.vocab_id if shared else "",
        posts_id=first.posts_id if shared else "",
        notes=notes,
        differences=differences,
        images=first.images,
    )


def _side_by_side(
    names: list[str], reports: list[Report], scored: list[_Scored], shared: bool
) -> tuple[dict[str, dict[int, dict[str, float]]], list[str], list[dict]]:
    """compare()'s systems, notes and differences: with one vocabulary and the same posts, the first system's
    baselines and its differences to each other system; otherwise each system beside its own vocabulary's."""
    systems = {name: r.systems["model"] for name, r in zip(names, reports, strict=True)}
    first = reports[0]
    notes = [f"{name}: {r.model} ({r.backend})" for name, r in zip(names, reports, strict=True)]
    if shared:
        if TFIDF in first.systems:  # the first system's: one vocabulary, the same posts
            systems[TFIDF] = first.systems[TFIDF]
        systems[PRIOR] = first.systems[PRIOR]
        notes.append(f"one vocabulary ({first.vocab_size} hashtags) and the same {first.posts} posts for every system")
        # The first system against each other one, on the same posts: which gaps the posts support.
        ranked = {name: r.ranked["model"] for name, r in zip(names, scored, strict=True)}
        ranked |= {b: scored[0].ranked[b] for b in (TFIDF, PRIOR) if b in scored[0].ranked}
        pairs = [(names[0], other) for other in ranked if other != names[0]]
        differences = _differences(ranked, scored[0].truths, tuple(first.ks), scored[0].groups, pairs)
    else:
        differences = []
        for name, r in zip(names, reports, strict=True):
            for baseline in (TFIDF, PRIOR):
                if baseline in r.systems:
                    systems[f"{baseline} ({name}'s vocabulary)"] = r.systems[baseline]
        notes.append(
            "vocabularies or posts differ: each system is scored on its own vocabulary and split, beside the "
            "prior of that vocabulary; "
            + "; ".join(f"{n}: {r.vocab_size} hashtags, {r.posts} posts" for n, r in zip(names, reports, strict=True))
        )
    return systems, notes, differences
