#!/usr/bin/env python
"""Peak memory of decoding large images (issue 31): `explain` on one near-limit PNG, and `tag` on N of them with
1 decoding worker against --workers W, each in a fresh process (its peak resident set, ru_maxrss).

    python benchmarks/decode_memory.py --model exported                 # 9400 x 9400 PNG, 16 copies, W = 16
    python benchmarks/decode_memory.py --model exported --side 4000 --copies 4 --workers 4   # minutes less

The image is mostly flat colour with a few shapes (a few hundred KB as PNG, 88 million pixels: just under
Pillow's decompression-bomb limit). What is compared is in the same run: `tag --workers 1` is the baseline
that `--workers W` must stay near (the decoded-bytes budget lets one over-budget image decode at a time, and
each decode's memory is given back when it ends). `explain` must stay under 1.5 GB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import resource, sys, time
from typer.main import get_command
from hashtagger.cli.main import app
start = time.perf_counter()
try:
    get_command(app).main(args=sys.argv[1:], prog_name="hashtagger", standalone_mode=False)
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"MEASURED {peak} {time.perf_counter() - start:.2f}", file=sys.stderr)
"""


def big_png(path: Path, side: int) -> Path:
    import numpy as np
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (side, side), (40, 90, 160))
    draw = ImageDraw.Draw(im)
    rng = np.random.default_rng(0)
    for _ in range(60):
        x, y = rng.integers(0, side, 2)
        r = int(rng.integers(side // 200, side // 10))
        draw.ellipse((x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    im.save(path, optimize=True)
    return path


def measure(*args: str) -> tuple[float, float]:
    """(peak resident GB, seconds) of one hashtagger command in a fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    line = next((x for x in done.stderr.splitlines() if x.startswith("MEASURED")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"failed: hashtagger {' '.join(args)}\n{done.stderr[-2000:]}")
    _, kb, seconds = line.split()
    return int(kb) / 1024**2, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="exported")
    parser.add_argument("--side", type=int, default=9400)
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="decode-memory-") as tmp:
        folder = Path(tmp) / "posts"
        folder.mkdir()
        image = big_png(Path(tmp) / "big.png", args.side)
        for i in range(args.copies):
            (folder / f"big{i:02d}.png").hardlink_to(image)
        print(f"{args.side} x {args.side} PNG of {image.stat().st_size / 1e3:,.0f} KB; {args.copies} copies")
        common = ["--model", args.model, "--device", "cpu"]
        rows = [
            (
                "explain, one image",
                measure("explain", str(image), "--caption", "a storm", *common, "-o", f"{tmp}/w.png"),
            )
        ]
        for workers in (1, args.workers):
            out = f"{tmp}/tags-{workers}.jsonl"
            rows.append(
                (
                    f"tag, --workers {workers}",
                    measure("tag", str(folder), *common, "--workers", str(workers), "-o", out),
                )
            )
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"{'command':<24} {'peak RSS':>10} {'seconds':>8}   (load average {load})")
        for name, (gb, seconds) in rows:
            print(f"{name:<24} {gb:>8.2f} GB {seconds:>8.1f}")
        base, wide = rows[1][1][0], rows[2][1][0]
        print(f"--workers {args.workers} / --workers 1 peak: {wide / base:.2f}x")


if __name__ == "__main__":
    main()
