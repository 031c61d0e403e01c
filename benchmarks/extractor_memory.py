#!/usr/bin/env python
"""Memory and posts/s of the image extractor on the CPU when it sees the whole batch (the baseline) against
EXTRACT_PIXELS at a time (bundle/runtime.py, issue 31: ONNX Runtime's CPU arena keeps the largest batch's
activations, so the run's memory followed --batch-size). Each setting runs in a fresh process, twice, alternating,
on the same N generated 640x480 posts: its peak resident set and its anonymous resident memory at the end.

    python benchmarks/extractor_memory.py --model exported --posts 300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tag_throughput import make_posts

CHILD = """
import sys, time
import hashtagger.bundle.runtime as rt
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.tagger import Tagger
pixels, model, folder, batch = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
if pixels:
    rt.EXTRACT_PIXELS = pixels
tagger = Tagger(TagOptions(model=model, device="cpu", threads=1, batch_size=batch, variant="model"))
start = time.perf_counter()
n = sum(1 for _ in tagger.tag_many(folder))
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("MEASURED", n / seconds, int(status["VmHWM"].split()[0]), int(status["RssAnon"].split()[0]))
"""


def measure(pixels: int, model: str, folder: Path, batch: int) -> tuple[float, float, float]:
    """(posts/s, peak RSS GB, anonymous RSS GB) of one fresh process."""
    args = [sys.executable, "-c", CHILD, str(pixels), model, str(folder), str(batch)]
    done = subprocess.run(args, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("MEASURED")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"failed:\n{done.stderr[-2000:]}")
    _, rate, peak, anon = line.split()
    return float(rate), int(peak) / 1024**2, int(anon) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="exported")
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="extractor-memory-") as tmp:
        folder = make_posts(Path(tmp) / "posts", args.posts)
        whole = 1 << 40  # more pixels than any batch: the extractor sees the whole batch
        settings = {"whole batch (baseline)": whole, "EXTRACT_PIXELS (default)": 0}
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in settings}
        for _ in range(2):
            for name, pixels in settings.items():
                runs[name].append(measure(pixels, args.model, folder, args.batch_size))
    print(f"{args.posts} posts, --batch-size {args.batch_size}, 1 thread (best of 2 runs)")
    print(f"{'extractor sees':<26} {'posts/s':>8} {'peak RSS':>10} {'anon RSS':>10}")
    best = {name: (max(r[0] for r in rs), min(r[1] for r in rs), min(r[2] for r in rs)) for name, rs in runs.items()}
    for name, (rate, peak, anon) in best.items():
        print(f"{name:<26} {rate:>8.1f} {peak:>7.2f} GB {anon:>7.2f} GB")
    (r0, p0, a0), (r1, p1, a1) = best.values()
    print(f"default / baseline: posts/s {r1 / r0:.2f}x, peak RSS {p1 / p0:.2f}x, anonymous RSS {a1 / a0:.2f}x")


if __name__ == "__main__":
    main()
