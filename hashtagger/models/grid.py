"""The `grid` region extractor (a CNN's last feature map pooled to 6x6 = 36 regions) in PyTorch, and
the identity of an extractor's features (the feature cache's folder). The CNN is a transformers ResNet or a
timm model (backbones.py). The cache itself: regions.py."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

from hashtagger.data.images import grid_boxes
from hashtagger.data.regions import GRID, Encoder, ExtractorSpec
from hashtagger.errors import DataError
from hashtagger.models import backbones


class GridExtractor(nn.Module):
    """pixels [B, 3, S, S] -> (features [B, 36, C], boxes [B, 36, 4])."""

    def __init__(self, backbone: nn.Module, image_size: int):
        super().__init__()
        self.backbone = backbone
        training = backbone.training
        with torch.inference_mode():  # in eval mode: a probe in train mode would move BatchNorm's statistics
            probe = self.feature_map(backbone.eval(), torch.zeros(1, 3, image_size, image_size))
        backbone.train(training)
        if probe.dim() != 4 or probe.shape[1] != self.feature_dim:
            raise DataError(
                f"the backbone gives features of shape {tuple(probe.shape)}, not a [1, {self.feature_dim}, H, W] "
                "map: the grid extractor needs a convolutional network"
            )
        height, width = probe.shape[-2:]
        # Adaptive average pooling written as one matrix product: it exports to ONNX for any map size
        # (torch's adaptive pooling exports only when 6 divides the map), so the backbone's own resolution
        # (224 for ImageNet ResNets: a 7x7 map) can be used.
        self.register_buffer("pool", torch.from_numpy(grid_pooling(height, width, GRID)), persistent=False)
        self.register_buffer("boxes", torch.from_numpy(grid_boxes(GRID, GRID)), persistent=False)

    @staticmethod
    def feature_map(backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        if isinstance(backbone, ResNetModel):
            return backbone(pixel_values).last_hidden_state
        return backbone.forward_features(pixel_values)  # timm: the last map, before global pooling

    @property
    def feature_dim(self) -> int:
        if isinstance(self.backbone, ResNetModel):
            return self.backbone.config.hidden_sizes[-1]
        return self.backbone.num_features

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.feature_map(self.backbone, pixel_values)
        features = torch.matmul(self.pool, fmap.flatten(2).transpose(1, 2))
        boxes = self.boxes.unsqueeze(0).expand(pixel_values.shape[0], -1, -1)
        return features, boxes


def grid_pooling(height: int, width: int, grid: int = GRID) -> np.ndarray:
    """[grid*grid, height*width] weights that average each cell's window of the map, row-major: the same
    windows as torch's adaptive_avg_pool2d (neighbouring cells overlap when grid does not divide the map)."""

    def windows(n: int) -> list[range]:
        return [range((i * n) // grid, -((-(i + 1) * n) // grid)) for i in range(grid)]

    pool = np.zeros((grid * grid, height * width), dtype=np.float32)
    for r, rows in enumerate(windows(height)):
        for c, cols in enumerate(windows(width)):
            cells = [y * width + x for y in rows for x in cols]
            pool[r * grid + c, cells] = 1.0 / len(cells)
    return pool


def build_grid_extractor(spec: ExtractorSpec, seed: int = 0, image_size: int | None = None) -> GridExtractor:
    """The frozen extractor `spec` names. A timm backbone also fills in spec.image with its own preprocessing
    (`image_size`, --image-size, overriding its side) and spec.weights with where its weights came from."""
    from hashtagger.models.lxmert import PRESETS

    backbone: nn.Module
    if spec.backbone in PRESETS:
        # No pretrained weights without a hub: a seeded random backbone, frozen. Say so in model cards.
        torch.manual_seed(seed)
        backbone = ResNetModel(ResNetConfig(**PRESETS[spec.backbone].backbone))
    elif backbones.is_timm(spec.backbone, PRESETS):
        backbone, spec.weights = backbones.create_backbone(spec.backbone)
        spec.image = replace(backbones.image_settings(backbone, image_size), max_pixels=spec.image.max_pixels)
    else:
        backbone = ResNetModel.from_pretrained(spec.backbone)
    extractor = GridExtractor(backbone, spec.image.size).eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    spec.feature_dim = extractor.feature_dim
    return extractor


def backbone_entry(backbone: nn.Module) -> dict:
    """What a checkpoint stores to rebuild the backbone before loading its weights."""
    if isinstance(backbone, ResNetModel):
        return {"backbone_config": backbone.config.to_dict()}
    return {"backbone_timm": backbone.pretrained_cfg["architecture"]}


def rebuild_backbone(info: dict) -> nn.Module | None:
    """A checkpoint's backbone with its weights still to load (None: the run used precomputed features)."""
    if "backbone_config" in info:
        return ResNetModel(ResNetConfig.from_dict(info["backbone_config"]))
    if "backbone_timm" in info:
        return backbones.rebuild_backbone(info["backbone_timm"])
    return None


def fingerprint(module: nn.Module, spec: ExtractorSpec) -> str:
    """The extractor's identity: its weights and preprocessing. Cache entries are valid only under it."""
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(extractor: nn.Module | None, spec: ExtractorSpec) -> str:
    """The feature cache's folder for this extractor: its fingerprint, or the precomputed folder's identity."""
    if extractor is not None:
        return fingerprint(extractor, spec)
    return "precomputed-" + hashlib.sha256(str(Path(spec.features_dir or "").resolve()).encode()).hexdigest()[:12]


def torch_encoder(extractor: nn.Module, device: str = "cpu") -> Encoder:
    """The extractor as a numpy-in, numpy-out encoder for regions.fill_cache."""
    extractor = extractor.to(device)

    def encode(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            features, boxes = extractor(torch.from_numpy(pixels).to(device))
        return features.cpu().numpy(), boxes.cpu().numpy()

    return encode
