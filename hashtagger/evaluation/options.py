"""What `hashtagger evaluate` is given: `EvaluateOptions`, named like its options and checked in one place; the
Python API (evaluate, compare, evaluate_unseen) takes the same object."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hashtagger.data.posts import CsvColumns
from hashtagger.errors import DataError
from hashtagger.evaluation.metrics import KS

SPLITS = ("val", "test", "all")


@dataclass(frozen=True)
class EvaluateOptions:
    split: str = "test"  # test / val: the model's stored split of the data; all: every post of it
    ks: tuple[int, ...] = KS  # the cut-offs k
    device: str = "auto"  # auto | cpu | cuda | tensorrt (a bundle)
    batch_size: int = 64  # posts per forward pass
    cache_dir: str | Path | None = None  # region features: default a checkpoint's training cache, else a temporary one
    columns: CsvColumns | None = None  # CSV columns: default training's for val / test, the standard ones for all
    ablations: bool = True  # False: the model and the prior only

    def checked(self) -> EvaluateOptions:
        """The options with the cut-offs sorted; DataError for a value no evaluation can take."""
        if self.split not in SPLITS:
            raise DataError(f"unknown split '{self.split}': use val, test or all")
        ks = tuple(sorted(set(self.ks)))
        if not ks or ks[0] < 1:
            raise DataError("cut-offs k must be 1 or more")
        if self.batch_size < 1:
            raise DataError(f"--batch-size must be at least 1, not {self.batch_size}")
        return replace(self, ks=ks)
