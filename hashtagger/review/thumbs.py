"""Thumbnails for the review sheet: small JPEGs as data: URIs, so that the sheet is one file that loads
nothing. No torch.

Each thumbnail is decoded by data/images.load_image (EXIF-upright, first frame, alpha on white, pixel limit,
JPEG draft decoding) and saved as a JPEG whose longest side is `size` pixels at `quality`; one that still
takes more than MAX_BYTES is saved again at lower qualities, then smaller, so a thumbnail never exceeds
MAX_BYTES (4/3 of that as base64 in the sheet). An image that cannot be read gets no thumbnail and a reason.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from rich.console import Console

from hashtagger.data.images import load_image
from hashtagger.errors import ImageError
from hashtagger.io.console import progress_bar

SIZE = 128  # longest side, pixels
QUALITY = 70
MAX_BYTES = 12 * 1024  # JPEG bytes per thumbnail, at most
FALLBACK_QUALITIES = (50, 35, 20)


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def thumbnail_bytes(path: str | Path, size: int = SIZE, quality: int = QUALITY) -> bytes:
    """The image as a JPEG of at most MAX_BYTES, longest side `size`; ImageError when it cannot be read."""
    im = load_image(Path(path), size=size)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    data = _jpeg(im, quality)
    for lower in FALLBACK_QUALITIES:
        if len(data) <= MAX_BYTES:
            break
        data = _jpeg(im, min(lower, quality))
    while len(data) > MAX_BYTES:  # noise at the lowest quality: fewer pixels, each halving the bytes or so
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), Image.Resampling.LANCZOS)
        data = _jpeg(im, FALLBACK_QUALITIES[-1])
    return data


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _one(path: Path, size: int, quality: int) -> str | ImageError:
    try:
        return data_uri(thumbnail_bytes(path, size, quality))
    except ImageError as e:
        return e
    except (OSError, ValueError) as e:  # decoded, yet Pillow cannot resize or encode it: a placeholder, not a failure
        return ImageError(f"no thumbnail: {e}", "thumbnail_failed")


def make_thumbnails(
    paths: Iterable[Path], console: Console, size: int = SIZE, quality: int = QUALITY, workers: int = 4
) -> dict[Path, str | ImageError]:
    """Each distinct path's data: URI, or the ImageError saying why it has none; a progress bar on `console`.
    Pillow decodes with the GIL released, so threads use the cores."""
    distinct = list(dict.fromkeys(paths))
    out: dict[Path, str | ImageError] = {}
    with progress_bar(console) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        task = bar.add_task("thumbnails", total=len(distinct))
        for path, result in zip(distinct, pool.map(lambda p: _one(p, size, quality), distinct), strict=True):
            out[path] = result
            bar.advance(task)
    return out
