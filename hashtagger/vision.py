"""Image decoding and preprocessing, shared by training and tagging. No torch: `tag` imports this.

Every way an image file can be bad ends in an ImageError whose message is the reason shown to the user.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .files import sha256_file

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
# load_image enforces its own limit before decoding; Pillow's warning (a process-wide filter would not
# be thread-safe to toggle per call) would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageSettings:
    size: int = 224  # square input side: ImageNet ResNets' own resolution
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    max_pixels: int = DEFAULT_MAX_PIXELS


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: the feature cache's key and the split's grouping key."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise ImageError("image file not found", "image_not_found") from None
    except OSError as e:
        raise ImageError(f"image file unreadable: {e.strerror or e}", "image_unreadable") from None


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to an upright RGB image: EXIF-rotated, first frame, alpha composited on white."""
    path = Path(path)
    if not path.is_file():
        raise ImageError("image file not found", "image_not_found")
    if path.stat().st_size == 0:
        raise ImageError("image file is empty", "image_empty")
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"image too large ({im.width}x{im.height} pixels; limit {max_pixels})", "image_too_large"
                )
            im.seek(0)
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large (decompression bomb): {e}", "image_too_large") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)", "not_an_image") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
        raise ImageError(f"image data is corrupt: {e}", "image_corrupt") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of letting Pillow clip everything above 255.
        a = np.asarray(im, dtype=np.float64)
        peak = a.max() if a.size and a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def preprocess(im: Image.Image, settings: ImageSettings) -> np.ndarray:
    """RGB image -> normalised float32 [3, size, size]."""
    resized = im.resize((settings.size, settings.size), Image.Resampling.BILINEAR)
    rgb = np.asarray(resized, dtype=np.float32) / 255.0
    normalised = (rgb - np.asarray(settings.mean, dtype=np.float32)) / np.asarray(settings.std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def load_pixels(path: Path, settings: ImageSettings) -> np.ndarray:
    return preprocess(load_image(path, settings.max_pixels), settings)


def grid_boxes(rows: int = 6, cols: int = 6) -> np.ndarray:
    """Normalised (x1, y1, x2, y2) of each grid cell, row-major: the 'positions' of grid regions."""
    boxes = [(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows) for r in range(rows) for c in range(cols)]
    return np.asarray(boxes, dtype=np.float32)
