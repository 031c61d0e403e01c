"""Draw the example posts in examples/posts/ (our own pictures, free to redistribute) with their captions.

python scripts/make_examples.py
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "examples" / "posts"
W, H = 640, 480


def sky(top: tuple, bottom: tuple) -> Image.Image:
    im = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(im)
    for y in range(H):
        t = y / H
        d.line([(0, y), (W, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return im


def storm() -> Image.Image:
    im = sky((40, 45, 55), (110, 115, 125))
    d = ImageDraw.Draw(im)
    for row in range(12):
        y0 = 260 + row * 18
        pts = [(x, y0 + 12 * math.sin(x / 25 + row)) for x in range(0, W + 10, 10)]
        d.line(pts, fill=(20 + row * 6, 50 + row * 5, 90 + row * 4), width=14)
    d.line([(420, 40), (400, 120), (430, 120), (405, 210)], fill=(250, 250, 210), width=4)
    return im


def skyline() -> Image.Image:
    im = sky((5, 5, 30), (30, 30, 70))
    d = ImageDraw.Draw(im)
    rng = random.Random(1)
    x = 0
    while x < W:
        w, h = rng.randint(40, 90), rng.randint(120, 380)
        d.rectangle([x, H - h, x + w, H], fill=(15, 15, 20))
        for wy in range(H - h + 10, H - 10, 18):
            for wx in range(x + 6, x + w - 8, 14):
                if rng.random() < 0.15:
                    d.rectangle([wx, wy, wx + 6, wy + 8], fill=(240, 210, 120))
        x += w + rng.randint(2, 10)
    return im


def mountains() -> Image.Image:
    im = sky((150, 180, 220), (220, 225, 230))
    d = ImageDraw.Draw(im)
    d.polygon([(0, 360), (160, 120), (330, 360)], fill=(110, 100, 95))
    d.polygon([(220, 360), (420, 80), (640, 360)], fill=(90, 85, 80))
    d.polygon([(380, 140), (420, 80), (460, 140)], fill=(245, 245, 250))
    d.rectangle([0, 360, W, H], fill=(150, 130, 100))
    for i in range(9):  # rubble
        x, y = 80 + i * 55, 380 + (i % 3) * 25
        d.polygon([(x, y), (x + 40, y + 10), (x + 20, y + 45)], fill=(120 - i * 5, 110, 100))
    return im


def marathon() -> Image.Image:
    im = sky((120, 170, 230), (200, 220, 240))
    d = ImageDraw.Draw(im)
    d.polygon([(260, 200), (380, 200), (640, H), (0, H)], fill=(70, 70, 75))
    d.rectangle([180, 120, 460, 160], fill=(230, 200, 40))
    d.rectangle([180, 120, 190, 320], fill=(200, 200, 200))
    d.rectangle([450, 120, 460, 320], fill=(200, 200, 200))
    for i, x in enumerate((240, 300, 360, 420)):  # runners
        y = 300 + (i % 2) * 30
        d.ellipse([x - 8, y - 60, x + 8, y - 44], fill=(90, 60, 40))
        d.line([(x, y - 44), (x, y - 10)], fill=(200, 30, 30), width=6)
        d.line([(x, y - 10), (x - 12, y + 20)], fill=(30, 30, 30), width=4)
        d.line([(x, y - 10), (x + 12, y + 20)], fill=(30, 30, 30), width=4)
    return im


def flooded_street() -> Image.Image:
    im = sky((120, 130, 140), (160, 165, 170))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 120, 200, 300], fill=(140, 100, 80))
    d.rectangle([440, 100, 640, 300], fill=(120, 110, 100))
    d.rectangle([0, 280, W, H], fill=(70, 90, 95))
    for y in range(290, H, 14):
        d.line([(0, y), (W, y + 4)], fill=(90, 110, 115), width=2)
    d.polygon([(300, 330), (345, 250), (360, 330)], fill=(60, 65, 70))  # a fin
    return im


def eclipse() -> Image.Image:
    im = Image.new("RGB", (W, H), (0, 0, 8))
    d = ImageDraw.Draw(im)
    d.ellipse([230, 150, 410, 330], fill=(255, 230, 160))
    d.ellipse([240, 158, 412, 330], fill=(0, 0, 8))
    return im


POSTS = {
    "storm.jpg": (storm, "Huge waves hitting the shore as the hurricane makes landfall tonight. Stay safe everyone!"),
    "skyline.jpg": (skyline, "Lower Manhattan is dark after the storm, the power is out in the whole neighbourhood"),
    "mountains.jpg": (mountains, "Rescue teams are searching for survivors after the earthquake near Kathmandu"),
    "marathon.jpg": (marathon, "Thoughts with everyone at the marathon finish line today. Pray for Boston"),
    "flooded street.png": (flooded_street, "Is this real? A shark swimming down a flooded street in New Jersey"),
    "eclipse.jpg": (eclipse, None),  # no caption: tagged from the image alone
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (draw, caption) in POSTS.items():
        path = OUT / name
        draw().save(path, **({"quality": 88} if path.suffix == ".jpg" else {}))
        if caption:
            path.with_suffix(".txt").write_text(caption + "\n")


if __name__ == "__main__":
    main()
