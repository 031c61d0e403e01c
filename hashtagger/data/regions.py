"""Region features without torch: what an extractor is (ExtractorSpec), the on-disk cache that encodes
each image once (FeatureCache), the in-memory view training and evaluation read (FeatureStore), and
filling the cache with any encoder, a PyTorch extractor or an ONNX graph alike (fill_cache)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashtagger.data.images import DecodeBudget, ImageSettings, load_pixels
from hashtagger.data.precomputed import precomputed_path, read_precomputed
from hashtagger.errors import DataError, ImageError, OutputError
from hashtagger.io.files import atomic_open

GRID = 6  # the grid extractor pools its feature map to GRID x GRID regions, as many as the paper's detector boxes
REGIONS = GRID * GRID

# pixels [B, 3, S, S] -> (features [B, N, D], boxes [B, N, 4])
Encoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class ExtractorSpec:
    kind: str = "grid"  # grid | precomputed
    backbone: str = "tiny"  # a preset name (random init, seeded), a hub id / folder of a ResNet, or a timm model
    image: ImageSettings = field(default_factory=ImageSettings)
    feature_dim: int = 0  # filled in once the extractor exists
    features_dir: str | None = None  # precomputed: where the .npz files are
    weights: str | None = None  # a timm backbone's: the package or hub file its pretrained weights came from


class FeatureCache:
    """One .npz (features, boxes) per image content hash, under a folder per extractor identity."""

    def __init__(self, root: Path, extractor_id: str):
        self.dir = Path(root) / extractor_id
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the feature cache {self.dir}: {e.strerror or e}") from None

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npz"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.path(digest)) as z:
            return z["features"], z["boxes"]

    def put(self, digest: str, features: np.ndarray, boxes: np.ndarray) -> None:
        with atomic_open(self.path(digest)) as f:  # a killed run never leaves a half-written entry
            np.savez(f, features=features.astype(np.float32), boxes=boxes.astype(np.float32))


class FeatureStore:
    """Region features by image digest, read from the cache once and kept (they are small next to the model)."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, digest: str) -> tuple[np.ndarray, np.ndarray]:
        if digest not in self.memory:
            self.memory[digest] = self.cache.get(digest)
        return self.memory[digest]


def fill_cache(
    images: dict[str, Path],
    encoder: Encoder | None,
    spec: ExtractorSpec,
    cache: FeatureCache,
    batch_size: int = 16,
    on_progress: Callable[[int], None] = lambda n: None,
) -> dict[str, str]:
    """Fill the cache for every {digest: image path}; returns {digest: error} for images that failed.

    `encoder`: pixels -> regions for a grid extractor; None for precomputed features (spec.features_dir)."""
    todo = [(d, p) for d, p in images.items() if not cache.has(d)]
    on_progress(len(images) - len(todo))
    errors: dict[str, str] = {}
    if spec.kind == "precomputed":
        if spec.features_dir is None:
            raise DataError("precomputed region features need their folder (--features-dir)")
        for digest, path in todo:
            try:
                cache.put(digest, *read_precomputed(precomputed_path(spec.features_dir, path)))
            except ImageError as e:
                errors[digest] = str(e)
            on_progress(1)
        return errors

    budget = DecodeBudget()

    def decode(item: tuple[str, Path]) -> tuple[str, np.ndarray | str]:
        digest, path = item
        try:
            return digest, load_pixels(path, spec.image, budget)
        except ImageError as e:
            return digest, str(e)

    if encoder is None:
        raise ValueError("a grid extractor's features need an encoder")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch in _chunks(pool.map(decode, todo), batch_size):
            good = [(d, x) for d, x in batch if isinstance(x, np.ndarray)]
            errors.update({d: x for d, x in batch if isinstance(x, str)})
            if good:
                features, boxes = encoder(np.stack([x for _, x in good]))
                for (digest, _), f, b in zip(good, features, boxes, strict=True):
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
