"""The training loop: `Trainer` (epochs of steps, validation, best/ and last/ checkpoints, the test split), stopping
cleanly on Ctrl-C / SIGTERM, and resuming where last/ stopped."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress, TaskID
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from hashtagger.data.batching import MODEL_INPUTS, Sample, make_batch
from hashtagger.data.regions import FeatureStore
from hashtagger.errors import DataError
from hashtagger.evaluation import metrics
from hashtagger.evaluation.metrics import metrics_table
from hashtagger.evaluation.prediction import predict, sample_metrics, torch_scorer
from hashtagger.io.files import atomic_write
from hashtagger.models import registry as archs
from hashtagger.models.checkpoint import Checkpoint, CheckpointMeta, absolute_args, load_checkpoint, save_checkpoint
from hashtagger.models.lxmert import HashtagModel, ModelSpec, NameHead, torch_device
from hashtagger.training.config import TrainConfig
from hashtagger.training.distributed import Group, Loss, Stop
from hashtagger.training.setup import (
    Samples,
    Start,
    begin,
    build_tokenizer_and_model,
    configure_optimizers,
    prepare_samples,
)


class Interrupted(Stop):
    """Training stopped by Ctrl-C / SIGTERM after saving a resumable checkpoint."""


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

    num_labels = model.num_labels
    probs = predict(score, samples, tokenizer, features, num_labels, max_length, batch_size)
    return probs, loss_sum / max(1, len(samples) * num_labels)


class StopOnSignal:
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
    meta: CheckpointMeta  # written into every checkpoint: settings, label counts, history, metrics
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
        meta = CheckpointMeta(
            max_length=cfg.max_length,
            label_counts={t: counts[t] for t in data.vocab},
            new_parameters=new_parameters,
            held_out_tags=data.held_out,
            args=absolute_args(asdict(cfg), Path.cwd()),  # paths that mean the same from any folder
        )
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
        self.meta.history = last.meta.history
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
        ckpt = Checkpoint(
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
        )
        save_checkpoint(ckpt, training_state)

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

    def train_one_epoch(self, progress: Progress, task: TaskID, stop: StopOnSignal) -> tuple[float, float]:
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
        self.meta.history.append(
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
            self.meta.val_metrics, self.meta.top2_same_as_prior = val, like_prior  # scope.collapse_share
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
