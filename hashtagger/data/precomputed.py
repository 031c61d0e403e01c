"""Detector region features read from files (e.g. the paper's BUTD boxes), one .npz per image. No torch:
`tag` reads them too."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashtagger.data.images import ImageError


def read_precomputed(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A detector's features for one image: .npz with `features` [N, D] and `boxes` [N, 4] (normalised)."""
    try:
        with np.load(path) as z:
            features, boxes = np.asarray(z["features"], np.float32), np.asarray(z["boxes"], np.float32)
    except FileNotFoundError:
        raise ImageError(f"no precomputed features ({path.name})", "features_not_found") from None
    except (KeyError, ValueError, OSError) as e:
        raise ImageError(f"precomputed features unreadable ({path.name}): {e}", "features_unusable") from None
    if features.ndim != 2 or boxes.shape != (features.shape[0], 4):
        raise ImageError(
            f"precomputed features in {path.name} have shapes {features.shape} and {boxes.shape}", "features_unusable"
        )
    if boxes.max(initial=0) > 1.5:
        raise ImageError(f"boxes in {path.name} are not normalised to [0, 1]", "features_unusable")
    return features, boxes


def precomputed_path(features_dir: str | Path, image: Path) -> Path:
    return Path(features_dir) / f"{image.stem}.npz"
