#!/usr/bin/env python
"""Tagging throughput of every `train --arch`: a row per architecture (posts/s, parameters, bundle size),
against LXMERT4Hashtag's row measured in the same process.

    python benchmarks/arch_throughput.py --size mini            # the default model's size
    python benchmarks/arch_throughput.py --size tiny --posts 16 --rounds 1   # smoke run

Each architecture gets a checkpoint with random weights at --size (speed does not depend on the weights:
the extractor, tokenizer and vocabulary are the same for all), exported with `hashtagger.export` (parity
checked). On the same generated posts (tag_throughput.py's: 640x480 JPEGs, tweet-length captions):

  tag    `hashtagger tag`'s pipeline end to end (tag() on the folder, ONNX Runtime CPU, JSONL):
         decoding, the extractor graph (the same for every architecture), the model graph, writing.
  model  the model graph alone on batches of --batch-size posts with their region features given: the
         part that differs between architectures.

Rounds are interleaved (every architecture once per round, after a warm-up); the median is reported.
Timings on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tag_throughput import centre_head, hashtag_pool, make_posts

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.images import ImageSettings, file_digest
from hashtagger.data.posts import load_posts
from hashtagger.data.prep import PrepOptions
from hashtagger.data.regions import ExtractorSpec
from hashtagger.data.text import clean_caption, encode, train_wordpiece
from hashtagger.export.build import ExportOptions, ParityError, export
from hashtagger.models.checkpoint import Checkpoint, CheckpointMeta, save_checkpoint
from hashtagger.models.grid import build_grid_extractor
from hashtagger.models.lxmert import PRESETS, ModelSpec
from hashtagger.models.registry import ARCHS, build
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.run import tag

console = Console(stderr=True)


def build_checkpoints(work: Path, posts_dir: Path, size: str, seed: int) -> dict[str, Path]:
    preset = PRESETS[size]
    posts = load_posts(posts_dir)
    prep = PrepOptions()
    texts = [clean_caption(p.caption or "", prep.cleaning) for p in posts]
    tokenizer = train_wordpiece(texts, preset.tokenizer_vocab)
    vocab = hashtag_pool()
    extractor_spec = ExtractorSpec(kind="grid", backbone=size, image=ImageSettings(size=preset.image_size))
    extractor = build_grid_extractor(extractor_spec, seed)
    val = sorted({file_digest(p.image) for p in posts[:16]})  # parity on these posts' real captions and images
    paths = {}
    for arch in ARCHS:
        spec = ModelSpec(
            base_model=size,
            num_labels=len(vocab),
            visual_feat_dim=extractor_spec.feature_dim,
            vocab_size=max(tokenizer.get_vocab_size(), preset.tokenizer_vocab),  # a real BERT vocabulary's size
            arch=arch,
        )
        model = build(spec, None, texts, tokenizer, seed).eval()
        if arch == "lxmert":  # a random LXMERT gives every post the same top-5; see centre_head
            with torch.inference_mode():
                centre_head(
                    model, extractor, tokenizer, texts[:16], [p.image for p in posts[:16]], extractor_spec.image
                )
        meta = CheckpointMeta(max_length=128, args={"data": str(posts_dir)}, notes={"weights": "random"})
        paths[arch] = work / f"checkpoint-{arch}"
        split = {"train": [], "val": val, "test": []}
        save_checkpoint(
            Checkpoint(paths[arch], model, spec, extractor, extractor_spec, tokenizer, vocab, prep, split, meta)
        )
    return paths


def export_bundle(checkpoint: Path, output: Path) -> Path:
    options = ExportOptions(output=str(output), parity_posts=16)
    try:
        return export(checkpoint, options, Console(stderr=True, quiet=True))
    except ParityError:  # random weights put near-ties in the top-5; a trained model has none
        options.tolerance = 1e-3
        return export(checkpoint, options, Console(stderr=True, quiet=True))


def model_posts_per_s(bundle: Path, texts: list[str], batch: int) -> float:
    b = read_bundle(bundle)
    runner = Runner.load(b, "cpu")
    rng = np.random.default_rng(0)
    batches = []
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        feats = rng.normal(size=(len(chunk), b.info.extractor.regions, b.info.extractor.feature_dim)).astype(np.float32)
        boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (len(chunk), b.info.extractor.regions, 1))
        batches.append((encode(b.tokenizer, chunk, b.max_length), feats, boxes))
    runner.probabilities(*batches[0])  # warm-up
    started = time.perf_counter()
    for text, feats, boxes in batches:
        runner.probabilities(text, feats, boxes)
    return len(texts) / (time.perf_counter() - started)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(PRESETS), default="mini")
    p.add_argument("--posts", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hashtagger-arch-bench-"))
    try:
        posts_dir = make_posts(work / "posts", args.posts, args.seed)
        console.print(f"{args.posts} posts; building and exporting {len(ARCHS)} architectures at --size {args.size}")
        bundles = {
            arch: export_bundle(ckpt, work / f"bundle-{arch}")
            for arch, ckpt in build_checkpoints(work, posts_dir, args.size, args.seed).items()
        }
        texts = [clean_caption(p.caption or "") for p in load_posts(posts_dir)]
        options = {a: TagOptions(model=b, device="cpu", batch_size=args.batch_size) for a, b in bundles.items()}
        quiet = Console(stderr=True, quiet=True)
        rates: dict[str, list[float]] = {a: [] for a in ARCHS}
        model_rates: dict[str, list[float]] = {a: [] for a in ARCHS}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for arch in ARCHS:
                out = work / f"tags-{arch}.jsonl"
                out.unlink(missing_ok=True)
                summary = tag(posts_dir, out, None, options[arch], console=quiet)
                if round_:
                    rates[arch].append(summary.posts_per_s)
                    model_rates[arch].append(model_posts_per_s(bundles[arch], texts, args.batch_size))
        base_tag, base_model = statistics.median(rates["lxmert"]), statistics.median(model_rates["lxmert"])
        table = Table(title=f"--size {args.size}, {args.posts} posts, load {os.getloadavg()[0]:.1f}, ONNX Runtime CPU")
        for column in ("arch", "tag posts/s", "x lxmert", "model posts/s", "x lxmert", "parameters", "bundle MB"):
            table.add_column(column, justify="left" if column == "arch" else "right")
        result = {}
        for arch, bundle in bundles.items():
            from hashtagger.models.checkpoint import load_checkpoint

            params = sum(t.numel() for t in load_checkpoint(work / f"checkpoint-{arch}").model.parameters())
            size = sum(f.stat().st_size for f in bundle.iterdir() if f.is_file()) / 1e6
            t, m = statistics.median(rates[arch]), statistics.median(model_rates[arch])
            result[arch] = {"tag_posts_per_s": t, "model_posts_per_s": m, "parameters": params, "bundle_mb": size}
            table.add_row(
                arch,
                f"{t:.1f}",
                f"{t / base_tag:.2f}",
                f"{m:.0f}",
                f"{m / base_model:.1f}",
                f"{params / 1e6:.2f} M",
                f"{size:.1f}",
            )
        Console().print(table)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
