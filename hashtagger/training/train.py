"""`hashtagger train`: fine-tuning LXMERT4Hashtag, the best epoch on validation kept.

The run in order (each step in its own module):

config.check_config               every number and choice of the run, before any work
setup.begin                       a new run, or a resumed one with its own settings (one decision, up front)
setup.prepare_samples             posts -> prepared examples -> cached region features -> samples by split
setup.build_tokenizer_and_model   the tokenizer and the model, the head's bias at the label log-odds
setup.configure_optimizers        AdamW; no decay on biases, LayerNorm weights or the head's bias
trainer.Trainer.train_one_epoch   the epoch's batches; Ctrl-C saves a resumable last/
trainer.Trainer.end_epoch         validate, record, keep best/ and last/
trainer.Trainer.test              the best checkpoint on the test split

Under torchrun (distributed.py) every rank runs all of this on its share of each batch; rank 0 alone prints and
writes checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import TextColumn

from hashtagger.bundle.scope import collapse_share, collapse_warning
from hashtagger.io.console import progress_bar, say
from hashtagger.models.lxmert import torch_device
from hashtagger.training.config import TrainConfig
from hashtagger.training.distributed import process_group
from hashtagger.training.trainer import StopOnSignal, Trainer


def _training_bar(console: Console):
    return progress_bar(console, TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} posts/s"))


def train(cfg: TrainConfig, console: Console | None = None, resume: Path | None = None) -> Path:
    """Fine-tune; returns the run folder (best/ holds the checkpoint that was best on validation).

    `resume`: a run folder whose last/ checkpoint to continue, with the run's own settings (only `epochs`,
    which re-plans the learning-rate schedule, and `device` may change)."""
    console = console or Console(stderr=True)
    with process_group(torch_device(cfg.device)) as group:
        console.quiet = console.quiet or not group.leader
        trainer = Trainer.start(cfg, console, resume, group)
        with StopOnSignal(second_stops=group.world == 1) as stop, _training_bar(console) as progress:
            task = progress.add_task("training", total=trainer.total_steps, completed=trainer.step, loss="-", rate="-")
            while trainer.epoch < trainer.epochs:
                train_loss, rate = trainer.train_one_epoch(progress, task, stop)
                trainer.end_epoch(train_loss, rate, progress.console)
        trainer.test()
        # DDP holds the process group: dropped while the group is registered, so that the group is not destroyed
        # wherever the trainer is freed (gloo's destructor, joining its threads with the GIL held, can hang a rank).
        del trainer.loss
    say(console, f"best checkpoint: {trainer.run_dir / 'best'}")
    collapsed = collapse_warning(
        collapse_share(trainer.meta.top2_same_as_prior, trainer.meta.history), f"the run {trainer.run_dir}"
    )
    if collapsed:
        say(console, collapsed, "warning")
    return trainer.run_dir
