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

No torch at import: a bundle is evaluated with ONNX Runtime alone; a checkpoint loads PyTorch when opened.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tokenizers import Tokenizer

from hashtagger.bundle import thresholds
from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.batching import Sample, examples_by_split, image_digests
from hashtagger.data.posts import CsvColumns, Example, PrepOptions, load_posts, prepare
from hashtagger.data.regions import Encoder, ExtractorSpec, FeatureCache, FeatureStore, fill_cache
from hashtagger.data.tagnames import tag_words
from hashtagger.errors import DataError
from hashtagger.evaluation import intervals, metrics, ranking
from hashtagger.evaluation.metrics import metrics_table
from hashtagger.evaluation.prediction import onnx_scorer, predict
from hashtagger.evaluation.tfidf import EXTRA, TFIDF, tfidf_available, tfidf_scores
from hashtagger.io.console import progress_bar
from hashtagger.io.files import atomic_write, sha256_file
from hashtagger.io.structs import from_dict

SPLITS = ("val", "test", "all")
# System name -> the stream batching.make_batch blanks (None: the full model). The prior is added apart.
ABLATIONS = {"model": None, "text-only": "image", "image-only": "text"}
PRIOR = "frequency prior"
# (system, baseline) pairs whose F1@k difference gets a bootstrap interval, where both were scored.
DIFFERENCES = (("model", TFIDF), ("model", "text-only"), ("image-only", PRIOR), ("model", PRIOR))
DEFINITIONS = {
    "precision": "correct recommended hashtags / recommended hashtags, summed over all posts",
    "recall": "correct recommended hashtags / true hashtags, summed over all posts",
    "f1": "harmonic mean of precision and recall",
    "accuracy": "share of posts with at least one correct hashtag among the k recommended",
    "differences": "F1@k of system - F1@k of baseline on the same posts: [difference, low, high], the 95% "
    "bootstrap interval over images (posts sharing an image are drawn together)",
    "thresholded": "every hashtag at or above its cut-off (not a top k): micro precision, recall and F1, with the "
    "bundle's global threshold and with its per-hashtag thresholds (the global one where none was tuned)",
}


@dataclass
class Report:
    data: str
    split: str  # val | test | all
    model: str  # the bundle or checkpoint folder
    backend: str  # onnx | pytorch
    device: str  # the ONNX Runtime provider or the torch device
    ks: list[int]
    posts: int  # posts evaluated
    oov_posts: int  # of those, posts whose true hashtags are all outside the vocabulary (misses)
    true_hashtags: int  # recall's denominator
    vocab_size: int
    skipped: dict[str, int]  # reason -> posts not evaluated
    systems: dict[str, dict[int, dict[str, float]]]  # system -> k -> metric -> value
    missing_test_images: int = 0  # split test: images of the stored test split not found in DATA
    arch: str = "lxmert"  # the model's architecture (archs.py)
    vocab_id: str = ""  # identity of the hashtag vocabulary: systems compare directly only when equal
    posts_id: str = ""  # identity of the evaluated posts (images and texts)
    notes: list[str] = field(default_factory=list)  # shown under the table (e.g. --compare's vocabularies)
    # [{"system", "baseline", "f1": {k: [difference, low, high]}}], see DIFFERENCES
    differences: list[dict] = field(default_factory=list)
    images: int = 0  # distinct images of the evaluated posts: the bootstrap's units
    resamples: int = intervals.RESAMPLES
    # {"global": {"threshold", "precision", "recall", "f1", "hashtags_per_post"}, "per-hashtag": {... "tuned"}}
    thresholded: dict[str, dict] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))


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


# ----------------------------------------------------------------------------------------------- models


@dataclass
class _Model:
    """What evaluate needs of a model, whichever backend runs it. Also what batching.split_examples reads
    (path, meta["args"], prep, vocab, split)."""

    path: Path
    backend: str
    device: str
    vocab: list[str]
    tokenizer: Tokenizer
    max_length: int
    prep: PrepOptions
    split: dict[str, list[str]] | None
    meta: dict
    train_counts: dict[str, int]
    encoder: Encoder | None  # pixels -> regions; None for precomputed features
    extractor_spec: ExtractorSpec
    cache_id: str  # FeatureCache folder: valid only for this extractor and image preprocessing
    cache_root: Path | None  # an existing cache to reuse (the training run's), else None
    arch: str
    probabilities: Callable[[list[Sample], FeatureStore, str | None], np.ndarray]
    threshold: float | None = None  # a bundle's tuned global threshold (a checkpoint has none)
    hashtag_thresholds: dict[str, float] | None = None  # a bundle's per-hashtag ones; None: exported before them


def _open_checkpoint(path: Path, device: str, batch_size: int) -> _Model:
    from hashtagger.evaluation.prediction import torch_scorer
    from hashtagger.models.checkpoint import load_checkpoint  # PyTorch: only for checkpoints
    from hashtagger.models.grid import cache_key, torch_encoder
    from hashtagger.models.lxmert import torch_device

    ckpt = load_checkpoint(path)
    device = torch_device(device)
    score = torch_scorer(ckpt.model.to(device), device)
    spec = ckpt.extractor_spec
    args = ckpt.meta.get("args", {})
    cache_id = cache_key(ckpt.extractor, spec)
    training_cache = Path(args.get("cache_dir") or Path(args["output"]) / "feature-cache") if "output" in args else None

    def probabilities(samples: list[Sample], store: FeatureStore, blank: str | None) -> np.ndarray:
        return predict(score, samples, ckpt.tokenizer, store, len(ckpt.vocab), ckpt.max_length, batch_size, blank)

    return _Model(
        path=ckpt.path,
        backend="pytorch",
        device=device,
        vocab=ckpt.vocab,
        tokenizer=ckpt.tokenizer,
        max_length=ckpt.max_length,
        prep=ckpt.prep,
        split=ckpt.split,
        meta=ckpt.meta,
        train_counts=ckpt.meta.get("label_counts", {}),
        encoder=torch_encoder(ckpt.extractor, device) if ckpt.extractor is not None else None,
        extractor_spec=spec,
        cache_id=cache_id,
        cache_root=training_cache if training_cache and training_cache.is_dir() else None,
        arch=ckpt.meta["model_spec"].get("arch", "lxmert"),
        probabilities=probabilities,
    )


def _open_bundle(path: Path, device: str, batch_size: int) -> _Model:
    bundle = read_bundle(path)
    if "extractor" not in bundle.info["graphs"]:
        raise DataError(f"{path}: the bundle has no extractor graph; evaluate needs one")
    runner = Runner.load(bundle, device, "model")  # fp32 on a GPU too: the reference
    training = bundle.info.get("training", {})
    prep = from_dict(PrepOptions, training["prep"]) if "prep" in training else PrepOptions(cleaning=bundle.cleaning)
    split_file = bundle.path / "split.json"
    hashtags = json.loads((bundle.path / "hashtags.json").read_text())
    image = bundle.info["image"]
    identity = sha256_file(bundle.graph("extractor")) + json.dumps(image, sort_keys=True)
    vocab, score = bundle.vocab, onnx_scorer(runner)

    def probabilities(samples: list[Sample], store: FeatureStore, blank: str | None) -> np.ndarray:
        return predict(score, samples, bundle.tokenizer, store, len(vocab), bundle.max_length, batch_size, blank)

    return _Model(
        path=bundle.path,
        backend="onnx",
        device=runner.provider,
        vocab=vocab,
        tokenizer=bundle.tokenizer,
        max_length=bundle.max_length,
        prep=prep,
        split=json.loads(split_file.read_text()) if split_file.is_file() else None,
        meta={"args": {k: v for k, v in training.items() if k != "prep" and v is not None}},
        train_counts=dict(zip(vocab, hashtags.get("train_counts", [0] * len(vocab)), strict=True)),
        encoder=runner.features,
        extractor_spec=ExtractorSpec(kind="grid", image=bundle.image),
        cache_id="onnx-" + hashlib.sha256(identity.encode()).hexdigest()[:16],
        cache_root=None,
        arch=bundle.info["model"].get("arch", "lxmert"),
        probabilities=probabilities,
        threshold=bundle.threshold,
        hashtag_thresholds=bundle.hashtag_thresholds if "hashtag_thresholds" in bundle.info else None,
    )


# ----------------------------------------------------------------------------------------------- posts


@dataclass
class _Posts:
    rows: list[tuple[Example, str | None, set[str]]]  # post, image digest (None: unreadable), true hashtags
    skipped: dict[str, int]
    missing_test_images: int = 0
    train: list[Example] | None = None  # the model's training split of the same data, when it was read


def _select_posts(m: _Model, data: str | Path | None, split: str, columns: CsvColumns | None) -> _Posts:
    missing, train = 0, None
    if split != "all":
        if m.split is None:
            raise DataError(
                f"{m.path} has no split.json (a bundle exported before `evaluate` existed): re-export it, "
                "evaluate its checkpoint with --checkpoint, or use --split all"
            )
        by_split = examples_by_split(m, str(data) if data else None, columns)
        chosen, train = by_split[split], [e for e, _ in by_split["train"]]
        if not chosen:
            raise DataError(
                f"none of the model's {len(m.split[split])} {split} images are in "
                f"{data or m.meta['args'].get('data')}; --split {split} needs the training data (use --split all "
                "for a separate dataset)"
            )
        missing = len(set(m.split[split]) - {d for _, d in chosen})
        # Training's labels: the post's hashtags in the vocabulary. Only with --min-tags 0 can a post have
        # none there; then its own hashtags are the truth, and it is a miss.
        rows: list[tuple[Example, str | None, set[str]]] = [(e, d, set(e.labels or e.post.hashtags)) for e, d in chosen]
        skipped = {"no image named": 0}
    else:
        if data is None:
            raise DataError("--split all needs DATA, the posts to evaluate on")
        # Every post: the model's text cleaning, none of training's selection rules.
        keep_all = PrepOptions(
            cleaning=m.prep.cleaning, min_tags=0, min_words=0, drop_reposts=False, drop_duplicate_texts=False
        )
        prepared = prepare(load_posts(data, columns or CsvColumns()), keep_all, m.vocab)
        digests = image_digests([e for e in prepared.examples if e.post.hashtags])
        rows = [(e, digests.get(e.image), set(e.post.hashtags)) for e in prepared.examples]
        skipped = {"no image named": dict(prepared.report).get("no image named", 0)}
    tagged = [r for r in rows if r[2]]
    skipped["no hashtags"] = len(rows) - len(tagged)
    return _Posts(tagged, skipped, missing, train)


# ----------------------------------------------------------------------------------------------- evaluate


def evaluate(
    data: str | Path | None,
    model: str | Path | None = None,
    checkpoint: str | Path | None = None,
    split: str = "test",
    ks: tuple[int, ...] = metrics.KS,
    device: str = "auto",
    console: Console | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    columns: CsvColumns | None = None,
    ablations: bool = True,
) -> Report:
    """Score the model (a bundle via ONNX Runtime, or a checkpoint via PyTorch; default: exported/),
    its text-only / image-only ablations, the TF-IDF baseline and the frequency prior on the same posts.

    data: the posts (folder or CSV); for split "val" / "test" None means the training data the model records.
    cache_dir: region-feature cache (default: a checkpoint's training cache if present, else a temporary one).
    columns: CSV column names (default: training's for split "val" / "test", the standard ones for "all").
    ablations: False scores the model and the prior only.
    """
    return _evaluate(data, model, checkpoint, split, ks, device, console, batch_size, cache_dir, columns, ablations)[0]


@dataclass
class _Scored:
    """Each system's top-k per post, the posts' true hashtags and image groups: what differences are taken from."""

    ranked: dict[str, list[list[str]]]
    truths: list[set[str]]
    groups: np.ndarray


def _evaluate(
    data: str | Path | None,
    model: str | Path | None = None,
    checkpoint: str | Path | None = None,
    split: str = "test",
    ks: tuple[int, ...] = metrics.KS,
    device: str = "auto",
    console: Console | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    columns: CsvColumns | None = None,
    ablations: bool = True,
) -> tuple[Report, _Scored]:
    """evaluate(), with what it ranked: compare() takes the differences between systems from it."""
    console = console or Console(stderr=True)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': use val, test or all")
    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise DataError("cut-offs k must be 1 or more")
    if model is not None and checkpoint is not None:
        raise DataError("give --model (an exported bundle) or --checkpoint, not both")
    if checkpoint is not None:
        m = _open_checkpoint(Path(checkpoint), device, batch_size)
    else:
        m = _open_bundle(Path(model or "exported"), device, batch_size)
    posts = _select_posts(m, data, split, columns)
    vocab = m.vocab
    index = {t: i for i, t in enumerate(vocab)}

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
            raise DataError(f"no post can be evaluated (skipped: {_skipped_text(posts.skipped)})")
        truths = [truth for _, _, truth in usable]
        samples = [Sample(e.text, [index[t] for t in truth if t in index], d) for e, d, truth in usable]
        store = FeatureStore(cache)
        ranked, probs = {}, {}
        for name, blank in ABLATIONS.items() if ablations else [("model", None)]:
            with console.status(f"{name}: scoring {len(samples)} posts"):
                probs[name] = m.probabilities(samples, store, blank)
                ranked[name] = metrics.rank(probs[name], vocab, ks[-1])

    notes = []
    with console.status(f"{TFIDF}: fitting on the training split"):
        baseline, note = _tfidf_scores(m, posts.train, [s.text for s in samples])
    notes.append(note)
    if baseline is not None:
        ranked[TFIDF] = metrics.rank(baseline, vocab, ks[-1])
    prior = metrics.frequency_prior([list(Counter(m.train_counts).elements())], vocab)[: ks[-1]]
    ranked[PRIOR] = [prior] * len(samples)
    groups = intervals.group_ids([s.digest for s in samples])
    thresholded, threshold_notes = _thresholded(m, probs["model"], truths, split)
    in_vocab = set(vocab)
    report = Report(
        data=str(data if data is not None else m.meta.get("args", {}).get("data")),
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


def _tfidf_scores(m: _Model, train: list[Example] | None, texts: list[str]) -> tuple[np.ndarray | None, str]:
    """The TF-IDF baseline's probabilities on `texts`, fitted on the model's training split (read from the
    training data the model records when the evaluated posts are another dataset), or None; and a note."""
    if not tfidf_available():
        return None, f"{TFIDF}: skipped, scikit-learn is not installed (pip install 'lxmert-hashtagger[{EXTRA}]')"
    if train is None:
        try:
            train = [e for e, _ in examples_by_split(m)["train"]]
        except DataError as e:
            return None, f"{TFIDF}: skipped, the model's training split cannot be read ({e})"
    train = [e for e in train if e.labels]  # as in training: a post without a vocabulary hashtag teaches nothing
    if not train:
        return None, f"{TFIDF}: skipped, the model's training split has no post in the data"
    try:
        scores = tfidf_scores([e.text for e in train], [e.labels for e in train], m.vocab, texts)
    except ValueError as e:  # e.g. no word at all in the training captions
        return None, f"{TFIDF}: skipped ({e})"
    return scores, f"{TFIDF}: fitted on the {len(train)} posts of the model's training split"


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


def _thresholded(m: _Model, probs: np.ndarray, truths: list[set[str]], split: str) -> tuple[dict, list[str]]:
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
    split: str = "test",
    ks: tuple[int, ...] = (2,),
    device: str = "auto",
    console: Console | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    columns: CsvColumns | None = None,
) -> Report:
    """Several trained systems (bundles or checkpoints, e.g. of different --arch) on the same posts, with
    the TF-IDF baseline and the frequency prior: the paper's Table 3, and the F1 differences of the first system
    to each other one with their bootstrap intervals. Each is scored on its own vocabulary; where vocabularies or
    the evaluated posts differ the baselines are given per vocabulary, no difference is taken, and the notes
    say so."""
    if not models:
        raise DataError("--compare needs at least one bundle or run")
    reports, scored, paths = [], [], [Path(m) for m in models]
    for path in paths:
        bundle = (path / "bundle.json").is_file()
        report, ranks = _evaluate(
            data,
            model=path if bundle else None,
            checkpoint=None if bundle else path,
            split=split,
            ks=ks,
            device=device,
            console=console,
            batch_size=batch_size,
            cache_dir=cache_dir,
            columns=columns,
            ablations=False,
        )
        reports.append(report)
        scored.append(ranks)
    given = list(names or [r.arch for r in reports])
    names = [  # the same architecture twice: tell them apart by folder
        f"{name} ({path.name})" if given.count(name) > 1 else name for name, path in zip(given, paths, strict=True)
    ]
    systems = {name: r.systems["model"] for name, r in zip(names, reports, strict=True)}
    first = reports[0]
    shared = all(r.vocab_id == first.vocab_id and r.posts_id == first.posts_id for r in reports)
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
    return Report(
        data=first.data,
        split=split,
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


def _skipped_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in skipped.items() if n) or "none"


def report_table(report: Report) -> Table:
    """The metrics of every system at every k, with the post counts underneath."""
    table = metrics_table(
        f"{report.split} split of {report.data}: {report.posts} posts ({report.backend}, {report.device})",
        report.systems,
    )
    notes = [
        f"{report.oov_posts} posts with every true hashtag outside the {report.vocab_size}-hashtag vocabulary "
        "(counted as misses)",
        f"skipped: {_skipped_text(report.skipped)}",
    ]
    if report.missing_test_images:
        notes.append(f"{report.missing_test_images} {report.split}-split images not found in the data")
    notes += report.notes
    table.caption = "\n".join(notes)
    return table


def differences_table(report: Report) -> Table | None:
    """The F1@k differences with their bootstrap intervals (None when no pair of systems was scored)."""
    if not report.differences:
        return None
    table = Table(title="F1@k differences on the same posts, 95% bootstrap interval over images", title_justify="left")
    table.add_column("system - baseline")
    for k in report.ks:
        table.add_column(f"ΔF1@{k}", justify="right")
    for row in report.differences:
        cells = (row["f1"][k] for k in report.ks)
        table.add_row(
            f"{row['system']} - {row['baseline']}", *(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in cells)
        )
    table.caption = (
        f"{report.resamples} resamples of the {report.images} images (all of an image's posts drawn together); "
        "an interval that excludes 0 is a difference the posts support"
    )
    return table


def thresholded_table(report: Report) -> Table | None:
    """The F1 of the thresholded output (every hashtag at or above its cut-off), global vs per-hashtag."""
    if not report.thresholded:
        return None
    table = Table(title="thresholded output (every hashtag at or above its cut-off)", title_justify="left")
    for column in ("thresholds", "precision", "recall", "F1", "hashtags / post"):
        table.add_column(column, justify="left" if column == "thresholds" else "right")
    for name, row in report.thresholded.items():
        label = f"global {row['threshold']:.2f}" if name == "global" else f"per hashtag ({row['tuned']} tuned)"
        table.add_row(
            label, *(f"{row[m]:.3f}" for m in ("precision", "recall", "f1")), f"{row['hashtags_per_post']:.2f}"
        )
    return table


def write_report(report: Report, path: str | Path) -> Path:
    return atomic_write(path, json.dumps(asdict(report), indent=1).encode())


def plot(report: Report, path: str | Path) -> Path:
    """PNG in the style of the paper's Figure 3: a panel per metric, k on the x axis, a line per system."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(metrics.METRICS), 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    axes = fig.subplots(1, len(metrics.METRICS))
    markers = "osD^v<>"
    for ax, metric in zip(axes, metrics.METRICS, strict=True):
        for n, (name, by_k) in enumerate(report.systems.items()):
            ks = sorted(by_k)
            ax.plot(ks, [by_k[k][metric] for k in ks], marker=markers[n % len(markers)], label=name)
        ax.set_title("F1" if metric == "f1" else metric.capitalize())
        ax.set_xlabel("k")
        ax.set_xticks(report.ks)
        ax.set_ylim(0, min(1.0, max(0.05, ax.get_ylim()[1] * 1.05)))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"{report.split} split of {Path(report.data).name}: {report.posts} posts ({report.backend})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------- unseen hashtags


@dataclass
class UnseenReport:
    """`evaluate --unseen`: the held-out hashtags of a `--hold-out-tags` model, offered as candidates beside its
    vocabulary, on the posts of a split (test by default) that carry one."""

    data: str
    model: str
    split: str
    ks: list[int]
    posts: int  # posts of the split with at least one held-out hashtag
    pairs: int  # (post, held-out hashtag) pairs: recall's denominator
    vocabulary: int  # hashtags seen in training
    held_out: int  # hashtags offered as new candidates
    systems: dict[str, dict]  # system -> {"recall@k": {k: [value, low, high]}, "mrr": [value, low, high]}
    definitions: dict[str, str] = field(
        default_factory=lambda: {
            "recall@k": "share of (post, held-out hashtag) pairs whose hashtag ranks in the top k of all candidates "
            "(vocabulary + held-out), ties broken at random in expectation",
            "mrr": "mean over those pairs of 1 / the hashtag's rank",
            "interval": "95% bootstrap interval, resampling posts",
        }
    )


UNSEEN_SYSTEMS = ("model (name head)", "text match", "random")


def evaluate_unseen(
    data: str | Path | None,
    model: str | Path | None = None,
    ks: tuple[int, ...] = metrics.KS,
    device: str = "auto",
    console: Console | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    columns: CsvColumns | None = None,
    split: str = "test",
) -> UnseenReport:
    """Rank the vocabulary and the held-out hashtags together for each post of `split` carrying a held-out one
    (validation, to choose between models; test, to report)."""
    console = console or Console(stderr=True)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': use val, test or all")
    m = _open_bundle(Path(model or "exported"), device, batch_size)
    bundle = read_bundle(m.path, verify=False)
    held = json.loads((bundle.path / "hashtags.json").read_text()).get("held_out", [])
    if not held:
        raise DataError(f"{m.path}: the model was trained without --hold-out-tags: no hashtag was kept from it")
    runner = Runner.load(bundle, device, "model")  # fp32 on a GPU too: the reference
    runner.add_candidates(bundle, held)
    # Prepared with the held-out hashtags back in the vocabulary, so that posts keep them as labels.
    posts = _select_posts(replace(m, vocab=m.vocab + held), data, split, columns)
    candidates = runner.labels(bundle.vocab)
    column = {t: i for i, t in enumerate(candidates)}
    held_set = set(held)
    rows = [(e, d, truth & held_set) for e, d, truth in posts.rows if d is not None and truth & held_set]
    with ExitStack() as stack:
        root = cache_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="hashtagger-eval-"))
        cache = FeatureCache(Path(root), m.cache_id)
        errors = fill_cache({d: e.image for e, d, _ in rows}, m.encoder, m.extractor_spec, cache)
        rows = [r for r in rows if r[1] not in errors]
        if not rows:
            raise DataError(f"no {split} post carries a held-out hashtag (and a readable image)")
        samples = [Sample(e.text, [], d) for e, d, _ in rows]
        with console.status(f"scoring {len(samples)} posts against {len(candidates)} candidates"):
            scores = predict(
                onnx_scorer(runner), samples, bundle.tokenizer, FeatureStore(cache), 0, bundle.max_length, batch_size
            )
    targets = [[column[t] for t in sorted(truth)] for _, _, truth in rows]
    texts = [e.text for e, _, _ in rows]
    systems = {
        UNSEEN_SYSTEMS[0]: scores,
        UNSEEN_SYSTEMS[1]: ranking.text_match_scores(texts, [tag_words(t) for t in candidates], candidates),
        UNSEEN_SYSTEMS[2]: ranking.random_scores(len(rows), len(candidates)),
    }
    return UnseenReport(
        data=str(data if data is not None else m.meta.get("args", {}).get("data")),
        model=str(m.path),
        split=split,
        ks=list(ks),
        posts=len(rows),
        pairs=sum(len(t) for t in targets),
        vocabulary=len(bundle.vocab),
        held_out=len(held),
        systems={name: ranking.summary(ranking.hits(s, targets, ks), ks) for name, s in systems.items()},
    )


def unseen_table(report: UnseenReport) -> Table:
    table = Table(
        title=f"held-out hashtags on {report.posts} {report.split} posts ({report.pairs} pairs): {report.held_out} new "
        f"candidates beside {report.vocabulary} seen",
        title_justify="left",
    )
    table.add_column("system")
    for k in report.ks:
        table.add_column(f"recall@{k}", justify="right")
    table.add_column("MRR", justify="right")
    for name, result in report.systems.items():
        cells = [result["recall@k"][k] for k in report.ks] + [result["mrr"]]
        table.add_row(name, *(f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in cells))
    table.caption = "in brackets: 95% bootstrap interval over posts"
    return table


def write_unseen_report(report: UnseenReport, path: str | Path) -> Path:
    return atomic_write(path, json.dumps(asdict(report), indent=1).encode())
