"""Image files of every awkward kind, generated on the spot for the `tag` tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED = (220, 30, 30)
BLUE = (30, 40, 220)


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def noisy(colour=RED, size=(48, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float32)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8))


def good(path: Path, colour=RED, seed: int = 0) -> Path:
    noisy(colour, seed=seed).save(_parent(path))
    return path


def zero_byte(path: Path) -> Path:
    _parent(path).write_bytes(b"")
    return path


def not_an_image(path: Path) -> Path:
    _parent(path).write_bytes(b"this is a caption, not a picture\n" * 4)
    return path


def truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    noisy(size=(64, 64)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    _parent(path).write_bytes(data[: len(data) // 2])
    return path


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height: a decompression bomb without the memory."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])  # depth, colour type, ... unchanged
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    _parent(path).write_bytes(bytes(data))
    return path


def cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (48, 48), (0, 255, 255, 0)).save(_parent(path), "JPEG", quality=95)  # pure red in CMYK
    return path


def png16(path: Path) -> Path:
    """16-bit greyscale, a ramp from 0 to 65535 (values above 255 must be scaled, not clipped)."""
    ramp = np.tile(np.linspace(0, 65535, 48, dtype=np.uint16), (48, 1))
    Image.frombytes("I;16", (48, 48), ramp.astype("<u2").tobytes()).save(_parent(path))
    return path


def grey_png(path: Path) -> Path:
    Image.new("L", (48, 48), 128).save(_parent(path))
    return path


def palette_png(path: Path) -> Path:
    noisy(BLUE).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(_parent(path))
    return path


def rgba_png(path: Path) -> Path:
    """Left half fully transparent (must become white), right half opaque red."""
    a = np.zeros((48, 48, 4), dtype=np.uint8)
    a[:, :, :3] = (0, 0, 0)
    a[:, 24:] = (*RED, 255)
    Image.fromarray(a, "RGBA").save(_parent(path))
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 60 wide x 30 high with EXIF orientation 6 (rotate 90° clockwise): upright it is 30 x 60."""
    im = noisy(size=(60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(_parent(path), "JPEG", exif=exif.tobytes())
    return path


def animated_gif(path: Path) -> Path:
    """Two frames: red first, then blue. Tagging uses the first."""
    frames = [Image.new("RGB", (48, 48), RED), Image.new("RGB", (48, 48), BLUE)]
    frames[0].save(_parent(path), save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def big_jpeg(path: Path, side: int = 2000) -> Path:
    """A large, slow-to-decode but small-on-disk image (for runs that must last a moment)."""
    Image.new("RGB", (side, side), BLUE).save(_parent(path), "JPEG", quality=90)
    return path
