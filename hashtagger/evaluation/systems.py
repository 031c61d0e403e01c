"""What `evaluate` compares, and on which posts: the model opened from a bundle (ONNX Runtime) or a checkpoint
(PyTorch, loaded only then), its ablations, the TF-IDF baseline fitted on the model's training split, the
frequency prior; and the posts of a split (val, test) or of a whole dataset (all) with their true hashtags."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.batching import Sample, examples_by_split, image_digests
from hashtagger.data.posts import CsvColumns, load_posts
from hashtagger.data.prep import Example, PrepOptions, prepare
from hashtagger.data.regions import Encoder, ExtractorSpec, FeatureStore
from hashtagger.errors import DataError
from hashtagger.evaluation.prediction import onnx_scorer, predict
from hashtagger.evaluation.tfidf import EXTRA, TFIDF, tfidf_available, tfidf_scores
from hashtagger.io.extras import install_command
from hashtagger.io.files import sha256_file
from hashtagger.io.structs import from_dict

# System name -> the stream batching.make_batch blanks (None: the full model). The prior is added apart.
ABLATIONS = {"model": None, "text-only": "image", "image-only": "text"}
PRIOR = "frequency prior"


@dataclass
class EvalModel:
    """What evaluate needs of a model, whichever backend runs it. Also what batching.split_examples reads
    (path, args, prep, vocab, split)."""

    path: Path
    backend: str
    device: str
    vocab: list[str]
    tokenizer: Tokenizer
    max_length: int
    prep: PrepOptions
    split: dict[str, list[str]] | None
    args: dict  # the training run's settings where known (its data and columns)
    train_counts: dict[str, int]
    encoder: Encoder | None  # pixels -> regions; None for precomputed features
    extractor_spec: ExtractorSpec
    cache_id: str  # FeatureCache folder: valid only for this extractor and image preprocessing
    cache_root: Path | None  # an existing cache to reuse (the training run's), else None
    arch: str
    probabilities: Callable[[list[Sample], FeatureStore, str | None], np.ndarray]
    threshold: float | None = None  # a bundle's tuned global threshold (a checkpoint has none)
    hashtag_thresholds: dict[str, float] | None = None  # a bundle's per-hashtag ones; None: exported before them
    notes: list[str] = field(default_factory=list)  # about the model, shown under the report


def open_checkpoint(path: Path, device: str, batch_size: int) -> EvalModel:
    from hashtagger.evaluation.prediction import torch_scorer
    from hashtagger.models.checkpoint import load_checkpoint  # PyTorch: only for checkpoints
    from hashtagger.models.grid import cache_key, torch_encoder
    from hashtagger.models.lxmert import torch_device

    ckpt = load_checkpoint(path)
    device = torch_device(device)
    score = torch_scorer(ckpt.model.to(device), device)
    spec = ckpt.extractor_spec
    args = ckpt.meta.args
    cache_id = cache_key(ckpt.extractor, spec)
    training_cache = Path(args.get("cache_dir") or Path(args["output"]) / "feature-cache") if "output" in args else None

    def probabilities(samples: list[Sample], store: FeatureStore, blank: str | None) -> np.ndarray:
        return predict(score, samples, ckpt.tokenizer, store, len(ckpt.vocab), ckpt.max_length, batch_size, blank)

    return EvalModel(
        path=ckpt.path,
        backend="pytorch",
        device=device,
        vocab=ckpt.vocab,
        tokenizer=ckpt.tokenizer,
        max_length=ckpt.max_length,
        prep=ckpt.prep,
        split=ckpt.split,
        args=args,
        train_counts=ckpt.meta.label_counts,
        encoder=torch_encoder(ckpt.extractor, device) if ckpt.extractor is not None else None,
        extractor_spec=spec,
        cache_id=cache_id,
        cache_root=training_cache if training_cache and training_cache.is_dir() else None,
        arch=ckpt.spec.arch,
        probabilities=probabilities,
    )


def open_bundle(path: Path, device: str, batch_size: int, wide: bool = True) -> EvalModel:
    """`wide`: score as the bundle tags, blended with its wide part where it has one; False: the deep model alone."""
    bundle = read_bundle(path)
    if "extractor" not in bundle.info.graphs:
        raise DataError(f"{path}: the bundle has no extractor graph; evaluate needs one")
    runner = Runner.load(bundle, device, "model")  # fp32 on a GPU too: the reference
    training = bundle.info.training
    prep = training.prep or PrepOptions(cleaning=bundle.cleaning)
    split_file = bundle.path / "split.json"
    hashtags = json.loads((bundle.path / "hashtags.json").read_text())
    identity = sha256_file(bundle.graph("extractor")) + json.dumps(bundle.info.raw["image"], sort_keys=True)
    # An adapted bundle's wide part scores hashtags beyond the deep model's: they are the model's too.
    vocab, score = runner.labels(bundle.vocab) if wide else bundle.vocab, onnx_scorer(runner)

    def probabilities(samples: list[Sample], store: FeatureStore, blank: str | None) -> np.ndarray:
        deep = predict(score, samples, bundle.tokenizer, store, len(vocab), bundle.max_length, batch_size, blank)
        # The image-only ablation blanks the caption of both parts.
        return runner.blend(deep, ["" if blank == "text" else s.text for s in samples]) if wide else deep

    return EvalModel(
        path=bundle.path,
        backend="onnx",
        device=runner.provider,
        vocab=vocab,
        tokenizer=bundle.tokenizer,
        max_length=bundle.max_length,
        prep=prep,
        split=json.loads(split_file.read_text()) if split_file.is_file() else None,
        args={"data": training.data} | from_dict(CsvColumns, training.columns or {}).flags(),
        train_counts=dict(zip(bundle.vocab, hashtags.get("train_counts", [0] * len(bundle.vocab)), strict=True)),
        encoder=runner.features,
        extractor_spec=ExtractorSpec(kind="grid", image=bundle.image),
        cache_id="onnx-" + hashlib.sha256(identity.encode()).hexdigest()[:16],
        cache_root=None,
        arch=bundle.info.arch,
        probabilities=probabilities,
        threshold=bundle.threshold,
        hashtag_thresholds=bundle.info.hashtag_thresholds,
        notes=[
            f"model: the deep model blended with the bundle's wide part, w = {runner.wide.weight:.1f} (ablations "
            "blank a stream in both parts)"
        ]
        if wide and runner.wide is not None
        else [],
    )


@dataclass
class Posts:
    rows: list[tuple[Example, str | None, set[str]]]  # post, image digest (None: unreadable), true hashtags
    skipped: dict[str, int]
    missing_test_images: int = 0
    train: list[Example] | None = None  # the model's training split of the same data, when it was read


def select_posts(m: EvalModel, data: str | Path | None, split: str, columns: CsvColumns | None) -> Posts:
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
                f"{data or m.args.get('data')}; --split {split} needs the training data (use --split all "
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
    return Posts(tagged, skipped, missing, train)


def tfidf_baseline(m: EvalModel, train: list[Example] | None, texts: list[str]) -> tuple[np.ndarray | None, str]:
    """The TF-IDF baseline's probabilities on `texts`, fitted on the model's training split (read from the
    training data the model records when the evaluated posts are another dataset), or None; and a note."""
    if not tfidf_available():
        return None, f"{TFIDF}: skipped, scikit-learn is not installed ({install_command(EXTRA)})"
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
