#!/usr/bin/env python
"""The review sheet at scale: its size per post and how fast it opens and pages in headless Chromium, a small
sheet measured in the same browser as the baseline.

    python benchmarks/review_sheet.py                      # 10,000 posts of generated images, against 100
    python benchmarks/review_sheet.py --images DATA/images  # the posts' images: links to these photos, cycled
    python benchmarks/review_sheet.py --posts 500 --rounds 1   # smoke run

Each post has its own image path (a link to one of --distinct generated images, or of the --images photos,
cycled), so no thumbnail is shared: the worst case for the size. Generated images vary in size (320..1600 px),
colours, shapes and noise, as photos do for JPEG.
The tag output is made up (5 hashtags a post, 2% skipped): the sheet's cost does not depend on the scores.

Figures: build  the sheet written by review.sheet.build_sheet (thumbnails on all cores)
         size   bytes of the sheet, and per post
         load   navigation start -> the first page rendered (the page's own performance mark), and -> every
                thumbnail of that page decoded; median over --rounds fresh loads after one warm-up load
         page   `next page` pressed -> the new page rendered and painted (two animation frames)
         filter a hashtag typed in the filter -> the filtered first page painted; and the min-score slider
Needs `apt-get install chromium chromium-driver` and selenium (the [test] extra).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import chromium, close, missing

from hashtagger.review.sheet import SheetOptions, build_sheet
from hashtagger.tagging.writers import write_file

TAGS = [f"tag{i}" for i in range(200)]
WORDS = "flood storm rescue street city night power water wind shore people news photo today".split()


def generated_image(path: Path, rng: np.random.Generator) -> None:
    w, h = (int(v) for v in rng.integers(320, 1601, 2))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xs / w * rng.uniform(-1, 1) + ys / h * rng.uniform(-1, 1)) % 1.0
    pixels = a + (b - a) * t[..., None] + rng.normal(0, rng.uniform(0, 30), (h, w, 3))
    im = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    im.save(path, quality=90)


def generated_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        generated_image(folder / f"image{i:04d}.jpg", rng)
    return sorted(folder.iterdir())


def make_posts(root: Path, n: int, photos: list[Path], seed: int = 0) -> tuple[Path, Path]:
    """n posts (an image linked to one of `photos`, a caption) and a tag output for them."""
    pick = random.Random(seed)
    posts = root / "posts"
    posts.mkdir(parents=True)
    records = []
    for i in range(n):
        name = f"post{i:05d}.jpg"
        (posts / name).symlink_to(photos[i % len(photos)].resolve())
        (posts / f"post{i:05d}.txt").write_text(" ".join(pick.choices(WORDS, k=pick.randint(5, 25))))
        if pick.random() < 0.02:
            records.append({"id": name, "status": "skipped: image data is corrupt", "reason": "image_corrupt"})
            records[-1]["hashtags"] = []
            continue
        scores = sorted((pick.random() for _ in range(5)), reverse=True)
        tags = [{"tag": t, "score": round(s, 4)} for t, s in zip(pick.sample(TAGS, 5), scores, strict=True)]
        records.append({"id": name, "status": "ok", "reason": "ok", "hashtags": tags})
    write_file(root / "tags.jsonl", records, "jsonl")
    return posts, root / "tags.jsonl"


PAINTED = """
const done = arguments[arguments.length - 1];
const t0 = performance.now();
%s
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"""


def timings(driver, sheet: Path) -> dict[str, float]:
    driver.get(sheet.as_uri())
    driver.set_script_timeout(60)
    rendered = driver.execute_async_script(
        """const done = arguments[0];
        const check = () => {
          const mark = performance.getEntriesByName("hashtagger-rendered")[0];
          const imgs = [...document.querySelectorAll("article.post img")];
          if (mark && imgs.every((i) => i.complete)) done([mark.startTime, performance.now(), imgs.length]);
          else setTimeout(check, 5);
        };
        check();"""
    )
    page = driver.execute_async_script(PAINTED % 'document.getElementById("next").click();')
    typed = driver.execute_async_script(
        PAINTED % 'const f = document.getElementById("f-tag"); f.value = "tag7"; f.dispatchEvent(new Event("input"));'
    )
    slider = driver.execute_async_script(
        PAINTED % 'const f = document.getElementById("f-score"); f.value = "0.9"; f.dispatchEvent(new Event("input"));'
    )
    return {"load": rendered[0], "images": rendered[1], "page": page, "filter": typed, "score": slider}


def measure(driver, sheet: Path, rounds: int) -> dict[str, float]:
    timings(driver, sheet)  # warm-up: the first load of a file also fills the browser's caches
    runs = [timings(driver, sheet) for _ in range(rounds)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100, help="posts of the small sheet measured beside it")
    parser.add_argument("--images", type=Path, help="photos to link the posts' images to (cycled)")
    parser.add_argument("--distinct", type=int, default=1000, help="generated images (without --images)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if missing():
        sys.exit(missing())
    console = Console(stderr=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            photos = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        else:
            started = time.perf_counter()
            photos = generated_images(Path(tmp) / "images", args.distinct)
            console.print(f"{len(photos):,} images made in {time.perf_counter() - started:.1f} s", highlight=False)
        driver = chromium()
        try:
            for n in (args.baseline, args.posts):
                root = Path(tmp) / str(n)
                started = time.perf_counter()
                posts, output = make_posts(root, n, photos)
                console.print(f"{n:,} posts made in {time.perf_counter() - started:.1f} s", highlight=False)
                started = time.perf_counter()
                summary = build_sheet(output, root / "sheet.html", SheetOptions(posts=posts), console)
                build = time.perf_counter() - started
                rows.append((n, build, summary.bytes, measure(driver, root / "sheet.html", args.rounds)))
        finally:
            close(driver)
    kind = f"links to {len(photos):,} {'photos' if args.images else 'generated images'}"
    load = os.getloadavg()[0]
    table = Table(title=f"review sheet ({kind}; {os.cpu_count()} cores, load average {load:.1f})")
    for column in ("posts", "build s", "MB", "bytes/post", "load ms", "+thumbs ms", "page ms", "filter ms", "score ms"):
        table.add_column(column, justify="right")
    for n, build, size, t in rows:
        table.add_row(
            f"{n:,}", f"{build:.1f}", f"{size / 1e6:.2f}", f"{size / n:,.0f}", f"{t['load']:.0f}", f"{t['images']:.0f}",
            f"{t['page']:.0f}", f"{t['filter']:.0f}", f"{t['score']:.0f}",
        )  # fmt: skip
    Console(width=120).print(table)
    print(json.dumps([{"posts": n, "build_s": b, "bytes": s, **t} for n, b, s, t in rows]))


if __name__ == "__main__":
    main()
