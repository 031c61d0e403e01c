#!/usr/bin/env python
"""What the wide part of a bundle (bundle/wide.py) costs per post, against the deep part's, in one process.

    python benchmarks/wide_cost.py [BUNDLE] [DATA] [--posts 256] [--rounds 5]

On the same N real captions (DATA's, cleaned as `tag` cleans them; the region features of one real image):
  wide        the NumPy scorer alone: terms, TF-IDF, the gathered coefficient rows, sigmoid
  blend       wide + the blend with the deep probabilities (what `tag` adds per batch)
  deep        LXMERT + head on ONNX Runtime's CPU provider, batches of 32 (tokenising included)
  extractor   the region extractor on a batch of 8 images, per image (a post with a new image pays it)
Milliseconds per post, the median over --rounds rounds. A bundle without a wide part gets one fitted on DATA's
first posts for the measurement (its speed does not depend on what it learnt, only on its size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.images import load_pixels
from hashtagger.data.posts import load_posts
from hashtagger.data.text import clean_caption, encode, extract_hashtags


def median_ms(run, posts: int, rounds: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=Path("exported"))
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--posts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bundle = read_bundle(args.bundle)
    runner = Runner.load(bundle, "cpu", "model")
    posts = load_posts(args.data)
    texts = [clean_caption(p.caption or "", bundle.cleaning) for p in posts[: args.posts]]
    wide = runner.wide
    if wide is None:
        from hashtagger.evaluation.tfidf import fit_tfidf

        train = posts[args.posts : args.posts + 3000]
        known = set(bundle.vocab)
        labels = [[t for t in extract_hashtags(p.caption or "") if t in known] for p in train]
        wide = fit_tfidf([clean_caption(p.caption or "", bundle.cleaning) for p in train], labels, bundle.vocab)
        wide = wide.wide_part(weight=0.5)
        print(f"{args.bundle} has no wide part: one fitted on {len(train)} other posts for the measurement")
    image = next(p.image for p in posts if p.image is not None)
    pixels = load_pixels(image, bundle.image)[None]
    feats, boxes = runner.features(pixels)
    batch = 32
    probs = np.zeros((len(texts), len(bundle.vocab)), np.float32)

    def deep() -> None:
        for i in range(0, len(texts), batch):
            part = texts[i : i + batch]
            encoded = encode(bundle.tokenizer, part, bundle.max_length)
            n = len(part)
            runner.probabilities(encoded, np.repeat(feats, n, 0), np.repeat(boxes, n, 0))

    rows = {
        "wide": median_ms(lambda: wide.probabilities(texts), len(texts), args.rounds),
        "blend": median_ms(lambda: wide.blend(probs, texts), len(texts), args.rounds),
        "deep": median_ms(deep, len(texts), args.rounds),
        "extractor": median_ms(lambda: runner.features(np.repeat(pixels, 8, 0)), 8, args.rounds),
    }
    print(
        f"{args.bundle}: {len(wide.terms)} terms x {wide.hashtags} hashtags ({wide.coef.dtype}), {len(texts)} "
        f"captions, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    for name, ms in rows.items():
        print(f"  {name:10s} {ms:8.3f} ms/post")
    print(f"  the blend adds {rows['blend'] / rows['deep']:.1%} to the deep part's time per post")


if __name__ == "__main__":
    main()
