"""Image decoding and preprocessing, shared by training and tagging. No torch: `tag` imports this.

Every way an image file can be bad ends in an ImageError whose message is the reason shown to the user.
"""

from __future__ import annotations

import io
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hashtagger.errors import ImageError
from hashtagger.io.files import sha256_file

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


RESAMPLING = {  # timm's interpolation names -> Pillow's filters (torchvision resizes Pillow images with these)
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
CROP_MODES = ("squash", "center")


@dataclass(frozen=True)
class ImageSettings:
    size: int = 224  # square input side: ImageNet ResNets' own resolution
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    max_pixels: int = DEFAULT_MAX_PIXELS
    # timm's eval transform: resize to size / crop_pct (squash: both sides; center: the shorter side, keeping
    # the aspect ratio), then cut out the centre size x size. The defaults squash the whole image to size x size,
    # which is what bundles written before these fields did.
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "squash"


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: the feature cache's key and the split's grouping key."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise ImageError("image file not found", "image_not_found") from None
    except OSError as e:
        raise ImageError(f"image file unreadable: {e.strerror or e}", "image_unreadable") from None


class DecodeBudget:
    """Bytes of decoded pixels held at once by all decoding threads. A decode waits until its bytes fit;
    one bigger than the whole budget runs once nothing else is held. Keeps a run's memory near a batch's
    needs however many workers decode, and however large the images (up to the pixel limit) are."""

    def __init__(self, limit_bytes: int = 256 << 20):
        self.limit, self.used, self.peak = limit_bytes, 0, 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


def decoded_bytes(width: int, height: int) -> int:
    """What decoding an image of this size may hold at its peak: RGBA, plus one converted copy."""
    return width * height * 4 * 2


REDUCE_MODES = {"1", "L", "LA", "RGB", "RGBA", "RGBa", "La", "CMYK", "YCbCr", "I", "F"}


# A decode that held at least this much gives its memory back to the system when it ends (release_freed).
TRIM_BYTES = 64 << 20


def load_image(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, size: int | None = None, budget: DecodeBudget | None = None
) -> Image.Image:
    """Decode to an upright RGB image: EXIF-rotated, first frame, alpha composited on white.

    With `size` (the side the image will be resized to) a large image is decoded at a reduced scale no
    smaller than twice that side (JPEG draft mode), or reduced right after decoding (Image.reduce), as
    Pillow's own reducing_gap does: memory and time follow the output size, the result barely moves."""
    held: list[int] = []
    try:
        return decode_image(_open_file(Path(path)), max_pixels, size, budget, held)
    finally:
        if held and held[0] >= TRIM_BYTES:  # the decoded pixels are freed once _decode has returned
            release_freed()


_libc_trim: Any = None  # glibc malloc_trim, False where there is none; looked up once


def release_freed() -> None:
    """Give freed heap memory back to the system (glibc's malloc_trim; nothing elsewhere). Each decoding thread
    gets its own malloc arena, which keeps the memory of the largest image it decoded: without this, 16 workers
    decoding near-limit PNGs one at a time (DecodeBudget) still held 4.3 GB, against 1.0 GB for one worker."""
    global _libc_trim
    if _libc_trim is None:
        try:
            import ctypes

            _libc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _libc_trim = False
    if _libc_trim:
        _libc_trim(0)


def decode_image(
    file: BinaryIO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size: int | None = None,
    budget: DecodeBudget | None = None,
    held: list[int] | None = None,
) -> Image.Image:
    """An open image file (or encoded bytes in a BytesIO) decoded as load_image decodes a path, and closed;
    `held` receives the decoded bytes it reserved."""
    held = [] if held is None else held
    try:
        with file, _opened(file) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"image too large ({im.width}x{im.height} pixels; limit {max_pixels})", "image_too_large"
                )
            im.seek(0)
            if size:
                im.draft(im.mode, (2 * size, 2 * size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale; others: no-op
            held.append(decoded_bytes(*im.size))
            with budget.hold(held[0]) if budget else _nothing():
                im.load()
                return _to_rgb(ImageOps.exif_transpose(_reduced(im, 2 * size) if size else im))
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large (decompression bomb): {e}", "image_too_large") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)", "not_an_image") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as e:
        raise ImageError(f"image data is corrupt: {e}", "image_corrupt") from None


def _open_file(path: Path) -> BinaryIO:
    """The image file opened for reading; an ImageError saying why a missing, special, empty or unreadable file
    cannot be (opened apart from decoding, to tell unreadable from corrupt)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageError("image file not found", "image_not_found") from None
    except OSError as e:
        raise ImageError(f"image file unreadable: {e.strerror or e}", "image_unreadable") from None
    if not stat.S_ISREG(info.st_mode):
        if stat.S_ISDIR(info.st_mode):
            raise ImageError("image file not found", "image_not_found")
        raise ImageError("image is not a regular file", "image_not_regular")
    if info.st_size == 0:
        raise ImageError("image file is empty", "image_empty")
    try:
        return open(path, "rb")
    except OSError as e:
        raise ImageError(f"image file unreadable: {e.strerror or e}", "image_unreadable") from None


def memory_image(image: object, max_pixels: int = DEFAULT_MAX_PIXELS, size: int | None = None) -> Image.Image:
    """An image held in memory as load_image gives a file's: a PIL image, encoded bytes (a JPEG's, a PNG's...) or
    a uint8 array (height x width, x 3 for RGB or x 4 for RGBA). ImageError (with its code) for anything else."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise ImageError("image is empty (no bytes)", "image_empty")
        return decode_image(io.BytesIO(bytes(image)), max_pixels, size)  # as a file of these bytes decodes
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageError(
                f"not an image: an array of shape {image.shape} and dtype {image.dtype} "
                "(expected uint8, height x width, x 3 or x 4)",
                "not_an_image",
            )
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ImageError(f"not an image: a {type(image).__name__} (a path, PIL image, bytes or array)", "not_an_image")
    if image.width * image.height > max_pixels:
        raise ImageError(
            f"image too large ({image.width}x{image.height} pixels; limit {max_pixels})", "image_too_large"
        )
    return _to_rgb(ImageOps.exif_transpose(image))


def _opened(file: BinaryIO) -> Image.Image:
    """Image.open without its DecompressionBombWarning: load_image applies its own pixel limit right after, so
    the warning would only repeat it. Caught here rather than by a filter set at import, which would change
    every program that imports hashtagger (threads decoding at once may each restore the other's filters;
    all they ever add is this one ignore)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(file)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _reduced(im: Image.Image, least: int) -> Image.Image:
    """`im` shrunk by whole factors per axis while each side stays >= `least` (box filter, alpha-aware)."""
    fx, fy = max(1, im.width // least), max(1, im.height // least)
    if (fx, fy) == (1, 1) or im.mode not in REDUCE_MODES:
        return im
    reduced = im.reduce((fx, fy))
    reduced.info = im.info  # keep the EXIF orientation for exif_transpose
    return reduced


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


def _resize_and_crop(width: int, height: int, settings: ImageSettings) -> tuple[tuple[int, int], int, int]:
    """The resized size and the crop's top-left corner in it, as timm's eval transform computes them."""
    scale = math.floor(settings.size / settings.crop_pct)
    if settings.crop_mode == "center":  # torchvision's Resize(int): the shorter side to `scale`
        short, long = sorted((width, height))
        new_long = int(scale * long / short)
        target = (scale, new_long) if width <= height else (new_long, scale)
    else:
        target = (scale, scale)
    left = round((target[0] - settings.size) / 2.0)  # torchvision's CenterCrop offsets (round half to even)
    top = round((target[1] - settings.size) / 2.0)
    return target, left, top


def crop_window(width: int, height: int, settings: ImageSettings) -> tuple[float, float, float, float]:
    """The part of a width x height image the model sees, (left, top, right, bottom) in its pixels: region
    boxes are normalised to this window, not to the whole picture."""
    (rw, rh), left, top = _resize_and_crop(width, height, settings)
    sx, sy = width / rw, height / rh
    return left * sx, top * sy, (left + settings.size) * sx, (top + settings.size) * sy


def preprocess(im: Image.Image, settings: ImageSettings) -> np.ndarray:
    """RGB image -> normalised float32 [3, size, size], as timm's eval transform makes it (same sizes, same
    rounding, same Pillow filter), so a timm backbone sees the pixels it was trained on."""
    target, left, top = _resize_and_crop(im.width, im.height, settings)
    resized = im.resize(target, RESAMPLING[settings.interpolation])
    cropped = resized.crop((left, top, left + settings.size, top + settings.size))
    rgb = np.asarray(cropped, dtype=np.float32) / 255.0
    normalised = (rgb - np.asarray(settings.mean, dtype=np.float32)) / np.asarray(settings.std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def load_pixels(path: Path, settings: ImageSettings, budget: DecodeBudget | None = None) -> np.ndarray:
    return preprocess(load_image(path, settings.max_pixels, settings.size, budget), settings)


def grid_boxes(rows: int = 6, cols: int = 6) -> np.ndarray:
    """Normalised (x1, y1, x2, y2) of each grid cell, row-major: the 'positions' of grid regions."""
    boxes = [(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows) for r in range(rows) for c in range(cols)]
    return np.asarray(boxes, dtype=np.float32)
