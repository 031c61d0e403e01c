"""Region features: the `grid` extractor (a ResNet's last feature map pooled to 6x6 = 36 regions),
the `precomputed` reader (.npz per image), and the on-disk cache that encodes each image once."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

from .precomputed import precomputed_path, read_precomputed
from .vision import ImageError, ImageSettings, grid_boxes, load_pixels

GRID = 6  # 6 x 6 = 36 regions, as many as the paper's detector boxes


class GridExtractor(nn.Module):
    """pixels [B, 3, S, S] -> (features [B, 36, C], boxes [B, 36, 4])."""

    def __init__(self, backbone: ResNetModel, image_size: int):
        super().__init__()
        self.backbone = backbone
        training = backbone.training
        with torch.inference_mode():  # in eval mode: a probe in train mode would move BatchNorm's statistics
            height, width = backbone.eval()(torch.zeros(1, 3, image_size, image_size)).last_hidden_state.shape[-2:]
        backbone.train(training)
        # Adaptive average pooling written as one matrix product: it exports to ONNX for any map size
        # (torch's adaptive pooling exports only when 6 divides the map), so the backbone's own resolution
        # (224 for ImageNet ResNets: a 7x7 map) can be used.
        self.register_buffer("pool", torch.from_numpy(grid_pooling(height, width, GRID)), persistent=False)
        self.register_buffer("boxes", torch.from_numpy(grid_boxes(GRID, GRID)), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.backbone.config.hidden_sizes[-1]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone(pixel_values).last_hidden_state
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


@dataclass
class ExtractorSpec:
    kind: str = "grid"  # grid | precomputed
    backbone: str = "tiny"  # a preset name (random init, seeded) or a hub id / folder of a ResNet
    image: ImageSettings = ImageSettings()
    feature_dim: int = 0  # filled in once the extractor exists
    features_dir: str | None = None  # precomputed: where the .npz files are

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "ExtractorSpec":
        d = dict(d)
        d["image"] = ImageSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["image"].items()})
        return ExtractorSpec(**d)


def build_grid_extractor(spec: ExtractorSpec, seed: int = 0) -> GridExtractor:
    from .model import PRESETS

    if spec.backbone in PRESETS:
        # No pretrained weights without a hub: a seeded random backbone, frozen. Say so in model cards.
        torch.manual_seed(seed)
        backbone = ResNetModel(ResNetConfig(**PRESETS[spec.backbone].backbone))
    else:
        backbone = ResNetModel.from_pretrained(spec.backbone)
    extractor = GridExtractor(backbone, spec.image.size).eval()
    for p in extractor.parameters():
        p.requires_grad_(False)
    spec.feature_dim = extractor.feature_dim
    return extractor


def fingerprint(module: nn.Module, spec: ExtractorSpec) -> str:
    """The extractor's identity: its weights and preprocessing. Cache entries are valid only under it."""
    h = hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(extractor: nn.Module | None, spec: ExtractorSpec) -> str:
    """The feature cache's folder for this extractor: its fingerprint, or the precomputed folder's identity."""
    if extractor is not None:
        return fingerprint(extractor, spec)
    return "precomputed-" + hashlib.sha256(str(Path(spec.features_dir or "").resolve()).encode()).hexdigest()[:12]


class FeatureCache:
    """One .npz (features, boxes) per image content hash, under a folder per extractor identity."""

    def __init__(self, root: Path, extractor_id: str):
        self.dir = Path(root) / extractor_id
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npz"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.path(digest)) as z:
            return z["features"], z["boxes"]

    def put(self, digest: str, features: np.ndarray, boxes: np.ndarray) -> None:
        path = self.path(digest)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=features.astype(np.float32), boxes=boxes.astype(np.float32))
        tmp.replace(path)  # a killed run never leaves a half-written entry


def extract_all(
    images: dict[str, Path],
    extractor: GridExtractor | None,
    spec: ExtractorSpec,
    cache: FeatureCache,
    batch_size: int = 16,
    device: str = "cpu",
    on_progress: Callable[[int], None] = lambda n: None,
) -> dict[str, str]:
    """Fill the cache for every {digest: image path}; returns {digest: error} for images that failed."""
    todo = [(d, p) for d, p in images.items() if not cache.has(d)]
    on_progress(len(images) - len(todo))
    errors: dict[str, str] = {}
    if spec.kind == "precomputed":
        for digest, path in todo:
            try:
                cache.put(digest, *read_precomputed(precomputed_path(spec.features_dir, path)))
            except ImageError as e:
                errors[digest] = str(e)
            on_progress(1)
        return errors

    def decode(item: tuple[str, Path]) -> tuple[str, np.ndarray | str]:
        digest, path = item
        try:
            return digest, load_pixels(path, spec.image)
        except ImageError as e:
            return digest, str(e)

    extractor = extractor.to(device)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch in _chunks(pool.map(decode, todo), batch_size):
            good = [(d, x) for d, x in batch if isinstance(x, np.ndarray)]
            errors.update({d: x for d, x in batch if isinstance(x, str)})
            if good:
                with torch.inference_mode():
                    pixels = torch.from_numpy(np.stack([x for _, x in good])).to(device)
                    features, boxes = extractor(pixels)
                for (digest, _), f, b in zip(good, features.cpu().numpy(), boxes.cpu().numpy()):
                    cache.put(digest, f, b)
            on_progress(len(batch))
    return errors


def _chunks(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
