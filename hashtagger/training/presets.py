"""`train --preset NAME`: a recipe in one flag, options given explicitly winning over it. No torch, so that the
CLI can show the presets in its help without loading the training side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from hashtagger.errors import DataError

if TYPE_CHECKING:
    from hashtagger.training.config import TrainConfig

# `train --preset NAME`: a recipe in one flag; options given explicitly win over it. cpu: the default model's
# recipe, chosen on validation (docs/ablations.md), offline (MiniLM and EfficientNet-Lite2 weights from packages).
TRAIN_PRESETS: dict[str, dict[str, object]] = {
    "cpu": {
        "base_model": "mini",
        "text_init": "minilm",
        "backbone": "efficientnet-lite2",
        "modality_dropout": 0.35,
        "pooling": "mean",
        "lr": 5e-5,
        "epochs": 4,
        "vocab_size": 250,
    },
}


def preset_flags(name: str) -> str:
    """A preset as the flags it stands for, e.g. "--base-model mini --text-init minilm ..."."""
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in TRAIN_PRESETS[name].items())


def apply_preset(cfg: TrainConfig, name: str, explicit: Iterable[str] = ()) -> TrainConfig:
    """`cfg` with the preset's settings, except those in `explicit` (option names, as TrainConfig's fields): the
    ones the user gave. DataError for an unknown preset."""
    if name not in TRAIN_PRESETS:
        raise DataError(f"unknown --preset '{name}': use {' or '.join(TRAIN_PRESETS)}")
    given = set(explicit)
    chosen = {k: v for k, v in TRAIN_PRESETS[name].items() if k not in given}
    return replace(cfg, **chosen)  # type: ignore[arg-type]
