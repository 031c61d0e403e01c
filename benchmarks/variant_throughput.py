#!/usr/bin/env python
"""`hashtagger tag` posts/s with each graph variant of a bundle on the CPU, interleaved in one process.

    python benchmarks/variant_throughput.py /tmp/int8-bundle ../shared/data/mediaeval2016/posts.csv --posts 200
    python benchmarks/variant_throughput.py exported DATA --distinct --baseline OLD_BUNDLE   # a new default

--distinct takes the first post of each distinct image instead (every post then costs a decode and an extractor
run, as on a folder of new photos); --baseline adds a row for another bundle's fp32 (the default being replaced),
run in the same rounds.

Rows: fp32 (`--variant model`), the int8 model graph alone, the int8 extractor alone, both int8 graphs
(`--variant int8`), and what `--variant auto` picks. Each round runs every row once on the same first --posts
posts of the input (JSONL to a temporary file); posts/s is tag()'s own figure (sessions open to output closed),
the median over rounds; the load average is printed after each run. The bundle's recorded agreement of each
int8 variant with fp32 (F1@2 on validation, top-5 overlap) is printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import tempfile
from pathlib import Path
from unittest import mock

from rich.console import Console

from hashtagger.bundle import runtime
from hashtagger.bundle.format import read_bundle
from hashtagger.data.posts import load_posts
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.records import TagSummary
from hashtagger.tagging.run import tag

console = Console()
QUIET = Console(stderr=True, quiet=True)
# row -> (variant passed to tag, the graphs forced for it or None, the agreement key in bundle.json)
ROWS = {
    "fp32": ("model", None, None),
    "int8 model": ("model", ("int8", "extractor"), "int8"),
    "int8 extractor": ("model", ("model", "extractor_int8"), "extractor_int8"),
    "int8 both": ("int8", None, "int8_both"),
    "auto": ("auto", None, None),
}


def first_posts(source: Path, count: int, folder: Path, distinct: bool = False) -> Path:
    """The first `count` posts of `source` (`distinct`: of its distinct images) as a CSV in `folder` (images by
    absolute path)."""
    target = folder / "posts.csv"
    posts = load_posts(source)
    if distinct:
        posts = list({Path(p.image).resolve(): p for p in reversed(posts) if p.image}.values())[::-1]
    with target.open("w", newline="") as f:
        rows = [(Path(p.image).resolve() if p.image else "", p.caption or "") for p in posts[:count]]
        csv.writer(f).writerows([("image", "caption"), *rows])
    return target


def run(bundle: Path, posts: Path, variant: str, graphs: tuple[str, str] | None, out: Path) -> TagSummary:
    """tag() with `variant`; `graphs` forces the (model, extractor) graphs where no variant names them."""
    options = TagOptions(model=bundle, device="cpu", variant=variant)
    forced = mock.patch.object(runtime, "choose_graphs", lambda *_: graphs) if graphs else contextlib.nullcontext()
    with forced:
        return tag(posts, out, "jsonl", options, console=QUIET, overwrite=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("posts", type=Path, help="folder or CSV of posts")
    p.add_argument("--posts", dest="count", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--distinct", action="store_true", help="one post per distinct image")
    p.add_argument("--baseline", type=Path, help="another bundle whose fp32 row runs in the same rounds")
    args = p.parse_args()
    info = read_bundle(args.bundle).info
    recorded = info.variants
    rows = {k: v for k, v in ROWS.items() if all(g in info.graphs for g in (v[1] or ()))}
    bundles = {k: args.bundle for k in rows}
    if args.baseline:
        rows["baseline fp32"], bundles["baseline fp32"] = ROWS["fp32"], args.baseline
    rates: dict[str, list[float]] = {k: [] for k in rows}
    ran: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        posts = first_posts(args.posts, args.count, Path(tmp), args.distinct)
        for r in range(args.rounds + 1):  # round 0 warms the disk cache and the verification cache
            for key, (variant, graphs, _) in rows.items():
                summary = run(bundles[key], posts, variant, graphs, Path(tmp) / f"{key}.jsonl")
                ran[key] = summary.variant
                if r:
                    rates[key].append(summary.posts_per_s)
                console.print(
                    f"round {r}/{args.rounds} {key:<15} {summary.posts_per_s:6.2f} posts/s ({summary.variant}; "
                    f"first record {summary.startup_s:.2f} s)  load {os.getloadavg()[0]:.2f}"
                )
    fp32 = statistics.median(rates["fp32"])
    which = "of distinct images " if args.distinct else ""
    console.print(f"{args.count} posts {which}of {args.posts}, median of {args.rounds} rounds:")
    for key, (_, _, agreement_key) in rows.items():
        rate = statistics.median(rates[key])
        agreement = recorded.get(agreement_key or "", {})
        agree = (
            f"; F1@2 {agreement['f1@2']:.4f} vs fp32 {agreement['f1@2_reference']:.4f}, top-5 overlap "
            f"{agreement['top5_overlap']:.1%}"
            if "f1@2" in agreement
            else ""
        )
        console.print(f"  {key:<15} {rate:6.2f} posts/s  x{rate / fp32:.2f} fp32  ({ran[key]}{agree})")


if __name__ == "__main__":
    main()
