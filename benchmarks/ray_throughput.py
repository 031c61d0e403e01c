#!/usr/bin/env python
"""Posts/s of `tag --engine ray` with 1 and 2 CPU actors against the single-process `tag`, and each driver's peak
resident memory, on N generated posts (random-colour JPEGs, tweet-length captions) and the bundle in --model.

    python benchmarks/ray_throughput.py --posts 100000      # the scale the driver's memory must stay flat at
    python benchmarks/ray_throughput.py --posts 64          # smoke run

Each row runs in a fresh process (this script with --run), so that a row's peak RSS (ru_maxrss) is its own driver's:
the Ray driver holds shard edges and the records of shards in flight, never the posts, so its peak should not grow
with --posts. posts/s is from the pipeline's start (actors starting included) to the last shard written; Ray's
own start-up is not counted. Ray runs locally with every core this machine has.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

WORDS = "storm flood rescue city night street river bridge crowd rain wind power fire team".split()


def make_posts(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        colour = np.array([rng.randrange(256) for _ in range(3)], dtype=np.uint8)
        Image.fromarray(np.broadcast_to(colour, (240, 320, 3)).copy()).save(root / f"p{i:07d}.jpg", quality=85)
        (root / f"p{i:07d}.txt").write_text(" ".join(rng.choices(WORDS, k=14)))


def run_one(kind: str, actors: int, posts: Path, model: str, batch_size: int, shard_size: int) -> dict:
    """One row, in this process: tag `posts`, return posts/s and this driver's peak RSS."""
    from hashtagger.raytag import RayOptions, connect, tag_on_ray
    from hashtagger.tagging import TagOptions, tag

    options = TagOptions(model=model, device="cpu", batch_size=batch_size)
    quiet = Console(file=io.StringIO())
    with tempfile.TemporaryDirectory() as out:
        if kind == "single":
            summary = tag(posts, Path(out) / "tags.jsonl", None, options, console=quiet)
        else:
            connect(None)
            summary = tag_on_ray(
                posts, Path(out) / "shards", None, options, RayOptions(actors=actors, shard_size=shard_size), quiet
            )
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"posts_per_s": summary.posts_per_s, "rss_mib": rss_mib, "ran": summary.provider}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--model", default="exported")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--run", choices=["single", "ray"], help=argparse.SUPPRESS)  # one row, in a child process
    parser.add_argument("--actors", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--posts-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        row = run_one(args.run, args.actors, Path(args.posts_dir), args.model, args.batch_size, args.shard_size)
        print(json.dumps(row))
        return
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        make_posts(Path(tmp), args.posts)
        print(f"{args.posts} posts generated in {time.perf_counter() - started:.1f} s; model {args.model}")
        print(f"{'engine':<22}{'posts/s':>10}{'driver peak RSS':>18}")
        for name, kind, actors in [
            ("single process", "single", 1),
            ("ray, 1 actor", "ray", 1),
            ("ray, 2 actors", "ray", 2),
        ]:
            command = [sys.executable, __file__, "--run", kind, "--actors", str(actors), "--posts-dir", tmp]
            command += [
                "--model",
                args.model,
                "--batch-size",
                str(args.batch_size),
                "--shard-size",
                str(args.shard_size),
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{name:<22} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            # On a machine with 2 cores, 2 actors are capped to 1 (one core reads and decodes): "ran" says so.
            print(f"{name:<22}{row['posts_per_s']:>10.1f}{row['rss_mib']:>14.0f} MiB   {row['ran']}")


if __name__ == "__main__":
    main()
