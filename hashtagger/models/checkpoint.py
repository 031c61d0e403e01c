"""Training checkpoints: safetensors weights and JSON, written atomically, loaded without unpickling.

run/best/ or run/last/
    model.safetensors      the LXMERT + head weights
    extractor.safetensors  the frozen grid extractor (absent for precomputed features)
    hashtagger.json        model/extractor specs, configs, vocabulary, preparation options, metrics
    tokenizer.json         the tokenizer (tokenizers format)
    split.json             image digests of the train / val / test posts
    training_state.pt      optimiser, scheduler, position, RNG (last/ only; tensors only)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from hashtagger.data.prep import PrepOptions, upgrade_train_args
from hashtagger.data.regions import ExtractorSpec
from hashtagger.errors import DataError
from hashtagger.io.files import atomic_folder
from hashtagger.io.structs import from_dict
from hashtagger.models import registry as archs
from hashtagger.models.grid import GridExtractor, backbone_entry, rebuild_backbone
from hashtagger.models.lxmert import HashtagModel, ModelSpec

FORMAT = 1
# The run's arguments that are paths: recorded absolute, so that evaluate, export and --resume find them from
# any folder (runs of older versions recorded them as typed, relative to where `train` ran).
PATH_ARGS = ("data", "output", "cache_dir", "features_dir")


@dataclass
class CheckpointMeta:
    """hashtagger.json's record of the training run, beside the model's shape; read once by load_checkpoint. The
    defaults are what a checkpoint written before an entry existed means."""

    max_length: int  # tokens per caption, [CLS] and [SEP] included
    args: dict = field(default_factory=dict)  # the run's TrainConfig as a dict, named like train's flags
    label_counts: dict[str, int] = field(default_factory=dict)  # training posts per hashtag
    new_parameters: list[str] | None = None  # parameters that started random (None: all of them)
    held_out_tags: list[str] = field(default_factory=list)  # hashtags kept out of training (evaluate --unseen)
    history: list[dict] = field(default_factory=list)  # one entry per validation
    val_metrics: dict | None = None  # the best validation's
    test_metrics: dict | None = None  # best/ only, once the run has ended
    prior_test_metrics: dict | None = None
    # The best validation's share of posts whose top 2 was the frequency prior's (bundle/scope.py: a collapse)
    top2_same_as_prior: float | None = None
    notes: dict = field(default_factory=dict)  # what a script keeps with a checkpoint (a benchmark's random weights)

    def to_json(self) -> dict:
        """The entries that are set, as hashtagger.json holds them."""
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "notes" and not v)}


@dataclass
class Checkpoint:
    path: Path
    model: HashtagModel
    spec: ModelSpec
    extractor: GridExtractor | None
    extractor_spec: ExtractorSpec
    tokenizer: Tokenizer
    vocab: list[str]
    prep: PrepOptions
    split: dict[str, list[str]]
    meta: CheckpointMeta

    @property
    def max_length(self) -> int:
        return self.meta.max_length

    @property
    def args(self) -> dict:
        return self.meta.args


def save_checkpoint(ckpt: Checkpoint, training_state: dict | None = None) -> None:
    """Write to a temporary folder beside ckpt.path, then swap it in: a crash never leaves half a checkpoint."""
    with atomic_folder(Path(ckpt.path)) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in ckpt.model.state_dict().items()}
        save_file(state, tmp / "model.safetensors")
        info = {
            "format": FORMAT,
            "model_spec": asdict(ckpt.spec),
            **ckpt.model.config_entry(),
            "extractor_spec": asdict(ckpt.extractor_spec),
            "vocab": ckpt.vocab,
            "prep": asdict(ckpt.prep),
            **ckpt.meta.to_json(),
        }
        if ckpt.extractor is not None:
            weights = {k: v.contiguous() for k, v in ckpt.extractor.state_dict().items()}
            save_file(weights, tmp / "extractor.safetensors")
            info |= backbone_entry(ckpt.extractor.backbone)
        (tmp / "hashtagger.json").write_text(json.dumps(info, indent=1, default=str))
        (tmp / "split.json").write_text(json.dumps(ckpt.split))
        ckpt.tokenizer.save(str(tmp / "tokenizer.json"))
        if training_state is not None:
            torch.save(training_state, tmp / "training_state.pt")


def load_checkpoint(path: Path, map_location: str = "cpu") -> Checkpoint:
    path = resolve_checkpoint(Path(path))
    try:
        info = json.loads((path / "hashtagger.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a hashtagger checkpoint ({e})") from None
    if info.get("format") != FORMAT:
        raise DataError(f"{path}: checkpoint format {info.get('format')} is not {FORMAT}, the one this version reads")
    spec = from_dict(ModelSpec, info["model_spec"])
    model = archs.rebuild(spec, info)
    extractor_spec = from_dict(ExtractorSpec, info["extractor_spec"])
    extractor = None
    try:
        model.load_state_dict(load_file(path / "model.safetensors", device=map_location))
        backbone = rebuild_backbone(info)
        if backbone is not None:
            extractor = GridExtractor(backbone, extractor_spec.image.size)
            extractor.load_state_dict(load_file(path / "extractor.safetensors", device=map_location))
            extractor.eval().requires_grad_(False)
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        split = json.loads((path / "split.json").read_text())
    except OSError as e:
        raise DataError(f"{path}: checkpoint file unreadable ({e})") from None
    model.eval()
    known = {f.name for f in fields(CheckpointMeta)}
    meta = from_dict(CheckpointMeta, {k: v for k, v in info.items() if k in known})
    meta.args = upgrade_train_args(meta.args)
    base = training_folder(path, meta.args.get("output"))
    if base is not None:
        meta.args = absolute_args(meta.args, base)
    return Checkpoint(
        path=path,
        model=model,
        spec=spec,
        extractor=extractor,
        extractor_spec=extractor_spec,
        tokenizer=tokenizer,
        vocab=info["vocab"],
        prep=from_dict(PrepOptions, info["prep"]),
        split=split,
        meta=meta,
    )


def absolute_args(args: dict, base: Path) -> dict:
    """`args` with its relative paths (PATH_ARGS) made absolute against `base`, the folder `train` ran in."""

    def absolute(key: str, value):
        if key not in PATH_ARGS or not isinstance(value, str) or not value or Path(value).is_absolute():
            return value
        return os.path.normpath(base / value)

    return {k: absolute(k, v) for k, v in args.items()}


def training_folder(checkpoint: Path, output: str | None) -> Path | None:
    """The folder `train` ran in, from a checkpoint at <there>/<output>/<run>/<best|last> and the --output it
    recorded; None when that cannot be undone (an output with '..', a run folder moved elsewhere)."""
    if not output:
        return None
    if Path(output).is_absolute():
        return Path(output)  # nothing relative to undo: any folder does
    folder = Path(checkpoint).resolve().parent.parent
    for part in reversed(Path(output).parts):
        if part == ".":
            continue
        if part != folder.name:
            return None
        folder = folder.parent
    return folder


def load_training_state(path: Path) -> dict:
    # weights_only: tensors and plain containers only, never arbitrary pickled objects.
    return torch.load(Path(path) / "training_state.pt", map_location="cpu", weights_only=True)


def latest_run(runs: Path) -> Path:
    runs = Path(runs)
    candidates = sorted(
        (p for p in runs.glob("*/") if (p / "last").is_dir() or (p / "best").is_dir()), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise DataError(f"no training run found under {runs}")
    return candidates[-1]


def resolve_checkpoint(path: Path) -> Path:
    """Accept a checkpoint folder, a run folder (-> its best/), or a runs folder (-> latest run's best/)."""
    if (path / "hashtagger.json").is_file():
        return path
    if not path.exists():
        raise DataError(f"{path} does not exist")
    run = path if (path / "best").is_dir() else latest_run(path)
    best = run / "best"
    if not (best / "hashtagger.json").is_file():
        raise DataError(f"{run} has no best/ checkpoint yet")
    return best
