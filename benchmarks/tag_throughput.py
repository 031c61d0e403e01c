#!/usr/bin/env python
"""Throughput of `hashtagger tag` against the loop a user would write without it, and of `hashtagger train`.

    python benchmarks/tag_throughput.py --size base            # CPU rows, plus CUDA rows where a GPU works
    python benchmarks/tag_throughput.py --size tiny --posts 16 --rounds 1 --skip-train   # smoke run

What is measured, in one process, on the same N generated posts (640x480 JPEGs with varied content,
captions as long as the MediaEval 2016 tweets (--captions long: 20-30 words), ending in a block of hashtags):

  a     `hashtagger tag`'s pipeline, end to end: tag() on the posts folder with the fp32 bundle on
        ONNX Runtime's CPU provider (threaded decode + resize, batching, region extractor, caption cleaning
        and tokenising with dynamic padding, LXMERT + head, top-k, JSONL writer).
  b     the naive loop: PyTorch eager model + extractor, one post at a time, sequential decoding, captions
        padded to 128 tokens, sigmoid, top-k, one JSON line per post.
  c     (a) with the bundle's int8 graphs: LXMERT (dynamic quantisation) and the extractor (static, calibrated).
  cuda  (a) on the CUDA provider in fp32 and fp16, and on TensorRT (fp16) where present; b on CUDA when the
        installed torch has CUDA. On a machine without a usable GPU these rows say why and are skipped.

The model has random weights at the chosen size (speed does not depend on the weights); it is saved as a
hashtagger checkpoint and exported with `hashtagger.export` (parity-checked, plus the int8 variant).
Systems run interleaved for --rounds rounds after one warm-up each; posts/s is the median over rounds.
For (a)/(c) posts/s is tag()'s own figure (from its first batch to the output closed; ONNX Runtime session
start-up is reported on its own); for (b) it is the loop's wall time (the model is loaded beforehand).

Also printed: a/b; top-5 agreement of each row with (b) (fp32 rows must agree on >= 99% of posts);
peak resident memory (process-wide ru_maxrss, and each system's own peak from /proc/self/status VmHWM,
reset before each run); FLOPs per post (torch.utils.flop_counter on the extractor and on LXMERT at the token
lengths each system really runs) and the achieved GFLOP/s against a float32 GEMM peak measured here; a
profile of where a post's time goes (decode, extractor, tokenise, LXMERT, top-k + write) for both loops;
and training throughput (`train()` for one epoch with a cold, then a warm, feature cache).
Timings on a shared machine are noisy: the load average is printed next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw, ImageFilter
from rich.console import Console
from rich.table import Table

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import DeviceError, Runner, session
from hashtagger.data.images import ImageSettings, file_digest, load_pixels
from hashtagger.data.posts import CsvColumns, load_posts
from hashtagger.data.prep import PrepOptions
from hashtagger.data.text import clean_caption, encode, train_wordpiece
from hashtagger.export.build import ExportOptions, ParityError, export
from hashtagger.models.checkpoint import Checkpoint, CheckpointMeta, load_checkpoint, save_checkpoint
from hashtagger.models.grid import ExtractorSpec, build_grid_extractor
from hashtagger.models.lxmert import PRESETS, ModelSpec, build_model
from hashtagger.tagging import pipeline, tagger
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.run import tag
from hashtagger.tagging.writers import open_writer

console = Console(width=None if sys.stdout.isatty() else 150)
QUIET = Console(stderr=True, quiet=True)
TOP_K = 5
NAIVE_LENGTH = 128  # the paper's (and a naive loop's) fixed text length

# ----------------------------------------------------------------------------------------------- posts

WORDS = (
    "morning coffee walk park city street light summer winter autumn spring friends family dinner lunch "
    "breakfast beach ocean sunset sunrise mountain hike trail river bridge skyline view rooftop night "
    "music concert festival art museum gallery photo camera love happy weekend holiday travel trip road "
    "train station market food pizza pasta burger salad dessert cake chocolate wine beer cocktail bar "
    "restaurant kitchen home garden flowers tree leaves snow rain cloud sky blue green golden colour "
    "dog cat puppy kitten bird horse street style fashion dress shoes vintage design building window "
    "church tower square avenue downtown neighbourhood corner shop book reading quiet moment finally "
    "today tonight yesterday always never again little big beautiful amazing lovely perfect best "
    "first last new old favourite with from after before under over through around the a and of in "
    "on at to for this that my our your we they just so very really what when where"
).split()


def hashtag_pool(n: int = 500, seed: int = 0) -> list[str]:
    """n distinct hashtags made of one or two of the caption words (the paper keeps the 500 most frequent)."""
    rng = random.Random(seed)
    content = [w for w in WORDS if len(w) > 3]
    pool = list(dict.fromkeys(content))
    while len(pool) < n:
        pool.append(rng.choice(content) + rng.choice(content))
        pool = list(dict.fromkeys(pool))
    return pool[:n]


def make_image(rng: np.random.Generator, width: int = 640, height: int = 480) -> Image.Image:
    """A photo-like image: a smooth colour field, a few shapes, blur and sensor noise (JPEG-compresses like a photo)."""
    field_ = Image.fromarray(rng.integers(0, 256, (rng.integers(3, 7), rng.integers(3, 7), 3), dtype=np.uint8))
    im = field_.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, 300)), y0 + int(rng.integers(20, 250))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5))))
    noisy = np.asarray(im, np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def caption_words(rng: random.Random, captions: str) -> int:
    """Words a caption keeps after cleaning. tweets: as in the MediaEval 2016 tweets (6% none; else median 8,
    90th percentile 16, at most 24: a log-normal fit); long: 20-30, e.g. Instagram-style captions."""
    if captions == "long":
        return rng.randint(20, 30)
    if rng.random() < 0.06:
        return 0
    return min(24, max(1, round(rng.lognormvariate(2.04, 0.69))))


def make_posts(root: Path, n: int, seed: int = 0, captions: str = "tweets") -> Path:
    """n posts: postNNNN.jpg (640x480, quality 90) + postNNNN.txt (caption_words() words with an inline
    hashtag, then 3-6 trailing hashtags)."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    tags = hashtag_pool()
    weights = [1 / (i + 1) for i in range(len(tags))]  # Zipf-like: a few hashtags are common
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(nprng).save(root / f"post{i:04d}.jpg", quality=90)
        words = [rng.choice(WORDS) for _ in range(caption_words(rng, captions))]
        if words:
            words.insert(rng.randrange(len(words) + 1), "#" + rng.choice(tags))
        trailing = " ".join("#" + t for t in dict.fromkeys(rng.choices(tags, weights, k=rng.randint(3, 6))))
        (root / f"post{i:04d}.txt").write_text((" ".join(words).capitalize() + ". " if words else "") + trailing)
    return root


# ----------------------------------------------------------------------------------------------- model


def build_checkpoint(path: Path, size: str, posts_dir: Path, seed: int = 0, image_size: int | None = None) -> Path:
    """A hashtagger checkpoint at preset `size` with random weights (no training): extractor, LXMERT + head
    over the 500-hashtag pool, a WordPiece tokenizer learned from the captions, the preset's embedding size."""
    preset = PRESETS[size]
    posts = load_posts(posts_dir)
    prep = PrepOptions()
    extractor_spec = ExtractorSpec(
        kind="grid", backbone=size, image=ImageSettings(size=image_size or preset.image_size)
    )
    extractor = build_grid_extractor(extractor_spec, seed)
    texts = [clean_caption(p.caption or "", prep.cleaning) for p in posts]
    tokenizer = train_wordpiece(texts, preset.tokenizer_vocab)
    vocab = hashtag_pool()
    spec = ModelSpec(
        base_model=size,
        num_labels=len(vocab),
        visual_feat_dim=extractor_spec.feature_dim,
        vocab_size=max(tokenizer.get_vocab_size(), preset.tokenizer_vocab),  # a real BERT vocabulary's embedding
    )
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    gain = centre_head(model, extractor, tokenizer, texts[:16], [p.image for p in posts[:16]], extractor_spec.image)
    # The first posts act as the "validation split", so that export checks parity on real captions and images.
    val = sorted({file_digest(p.image) for p in posts[:16]})
    meta = CheckpointMeta(
        max_length=NAIVE_LENGTH,
        args={"data": str(posts_dir)} | CsvColumns().flags(),
        notes={"weights": "random: tag_throughput benchmark", "head_gain": gain},
    )
    split = {"train": [], "val": val, "test": []}
    save_checkpoint(Checkpoint(path, model, spec, extractor, extractor_spec, tokenizer, vocab, prep, split, meta))
    return path


@torch.inference_mode()
def centre_head(model, extractor, tokenizer, texts: list[str], images: list[Path], settings: ImageSettings) -> float:
    """Make the random model's top-5 depend on the post, as a trained model's does.

    A random LXMERT's pooled output barely varies between posts, so a random head gives every post the
    same top-5, and top-5 agreement would test nothing. Subtracting the head's output at the mean pooled
    vector (bias) and scaling the rest to unit spread (weights) leaves logits that vary from post to post.
    Returns the factor the head's weights were multiplied by (it multiplies rounding noise as well).
    """
    pixels = torch.from_numpy(np.stack([load_pixels(p, settings) for p in images]))
    feats, boxes = extractor(pixels)
    text = {k: torch.from_numpy(v) for k, v in encode(tokenizer, texts, NAIVE_LENGTH).items()}
    pooled = model.lxmert(**text, visual_feats=feats, visual_pos=boxes).pooled_output
    centre = pooled.mean(0)
    spread = float((model.head.weight @ (pooled - centre).T).std()) or 1.0
    model.head.weight /= spread
    # Logits ~ N(-3, 1): most hashtags unlikely, the top ones around p = 0.2, as in a trained multi-label head.
    model.head.bias.copy_(-model.head.weight @ centre - 3.0)
    return 1.0 / spread


# ----------------------------------------------------------------------------------------------- memory


def _status_kib(name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class PhaseMemory:
    start_mib: float | None = None
    peak_mib: float | None = None  # VmHWM during the phase (it is reset at the start)

    @property
    def added_mib(self) -> float | None:
        return None if self.peak_mib is None or self.start_mib is None else self.peak_mib - self.start_mib


@contextmanager
def phase_memory():
    """Peak RSS of the block alone: VmHWM reset through /proc/self/clear_refs (Linux), read at the end."""
    _release_memory()
    memory = PhaseMemory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        start = _status_kib("VmRSS")
        memory.start_mib = start / 1024 if start else None
    except OSError:
        pass  # not Linux, or not allowed: only the process-wide peak is reported
    yield memory
    peak = _status_kib("VmHWM")
    if memory.start_mib is not None and peak:
        memory.peak_mib = peak / 1024


def process_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ----------------------------------------------------------------------------------------------- systems


@dataclass
class Run:
    posts_per_s: float
    seconds: float
    startup_s: float = 0.0
    output: Path | None = None
    memory: PhaseMemory | None = None
    load: float = 0.0  # 1-minute load average when the run ended


def run_tag(posts_dir: Path, output: Path, options: TagOptions, runner: Runner | None = None) -> Run:
    """tag() as `hashtagger tag` runs it; `runner`: sessions made here (TensorRT with shape profiles)."""
    if runner is None:
        summary = tag(posts_dir, output, "jsonl", options, console=QUIET)
    else:
        bundle = read_bundle(options.model)
        with mock.patch.object(tagger, "open_runner", lambda _options: (bundle, runner)):
            summary = tag(posts_dir, output, "jsonl", options, console=QUIET)
    if summary.skipped:
        raise RuntimeError(f"tag skipped posts: {dict(summary.skipped)}")
    return Run(summary.posts_per_s, summary.seconds, summary.startup_s, output)


class NaiveTagger:
    """What a user writes without hashtagger: eager PyTorch, one post at a time, text padded to 128 tokens."""

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        ckpt = load_checkpoint(checkpoint)
        self.device = device
        self.model = ckpt.model.to(device).eval()
        self.extractor = ckpt.extractor.to(device).eval()
        self.vocab = ckpt.vocab
        self.cleaning = ckpt.prep.cleaning
        self.settings = ckpt.extractor_spec.image
        self.tokenizer = ckpt.tokenizer
        self.tokenizer.enable_truncation(NAIVE_LENGTH)
        self.tokenizer.enable_padding(length=NAIVE_LENGTH, pad_id=self.tokenizer.token_to_id("[PAD]") or 0)
        self.mean = torch.tensor(self.settings.mean).view(3, 1, 1)
        self.std = torch.tensor(self.settings.std).view(3, 1, 1)
        self.timings: dict[str, float] = {}

    def _timed(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - started
        return now

    @torch.inference_mode()
    def run(self, posts_dir: Path, output: Path) -> Run:
        posts = load_posts(posts_dir)
        self.timings = {}
        t0 = time.perf_counter()
        with open(output, "w") as out:
            for post in posts:
                t = time.perf_counter()
                image = (
                    Image.open(post.image).convert("RGB").resize((self.settings.size,) * 2, Image.Resampling.BILINEAR)
                )
                pixels = (
                    torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1) - self.mean
                ) / self.std
                t = self._timed("decode + resize", t)
                feats, boxes = self.extractor(pixels[None].to(self.device))
                t = self._sync_timed("extractor", t)
                enc = self.tokenizer.encode(clean_caption(post.caption or "", self.cleaning))
                text = [torch.tensor([x], device=self.device) for x in (enc.ids, enc.attention_mask, enc.type_ids)]
                t = self._timed("clean + tokenise", t)
                probs = torch.sigmoid(self.model(*text, feats, boxes))[0]
                t = self._sync_timed("LXMERT + head", t)
                scores, index = probs.topk(TOP_K)
                hashtags = [
                    {"tag": self.vocab[i], "score": round(float(s), 4)}
                    for s, i in zip(scores.tolist(), index.tolist(), strict=True)
                ]
                out.write(json.dumps({"id": post.id, "status": "ok", "hashtags": hashtags}) + "\n")
                self._timed("top-k + write", t)
        seconds = time.perf_counter() - t0
        return Run(len(posts) / seconds, seconds, 0.0, output)

    def _sync_timed(self, stage: str, started: float) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return self._timed(stage, started)


@dataclass
class System:
    key: str
    label: str
    run: Callable[[Path, Path], Run] | None  # (posts folder, output) -> Run; None: skipped
    skipped: str = ""  # why it was not run
    fp32: bool = True  # must agree with (b) on >= 99% of posts
    flops_key: str = (
        "tag"  # which FLOP count applies: "tag" (length-grouped batches), "tag_input_order" or "naive" (128 tokens)
    )
    peak_key: str = "cpu_fp32"  # which GEMM peak it is compared with
    runs: list[Run] = field(default_factory=list)

    @property
    def posts_per_s(self) -> float | None:
        return statistics.median(r.posts_per_s for r in self.runs) if self.runs else None


def cuda_status() -> tuple[bool, str]:
    """(True, "") when ONNX Runtime's CUDA provider really starts a session here, else (False, why)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
        try:
            session(path, "cuda")
        except DeviceError as e:
            return False, str(e)
    return True, ""


def naive_row(args, ckpt: Path, cuda_ok: bool, on_cuda: bool | None = None) -> System:
    """b, the naive loop: on the CPU, or with --device cuda (or `on_cuda`) on CUDA, where the installed torch has it
    (a CPU loop over thousands of posts would take the GPU check's whole time)."""
    on_cuda = args.device == "cuda" if on_cuda is None else on_cuda
    if not on_cuda:
        return System(
            "b", "naive loop, PyTorch eager CPU, 1 post, 128 tokens", NaiveTagger(ckpt, "cpu").run, flops_key="naive"
        )
    label = "naive loop, PyTorch eager CUDA, 1 post, 128 tokens"
    if not (cuda_ok and torch.cuda.is_available()):
        why = f"torch {torch.__version__} has no CUDA" if cuda_ok else "CUDA absent"
        return System("b", label, None, why, flops_key="naive", peak_key="cuda_fp32")
    return System("b", label, NaiveTagger(ckpt, "cuda").run, flops_key="naive", peak_key="cuda_fp32")


def make_systems(args, ckpt: Path, bundle: Path, work: Path, cuda_ok: bool, cuda_why: str) -> list[System]:
    def tag_with(**overrides) -> Callable[[Path, Path], Run]:
        # fp32 unless a row names its variant: tag's default, auto, may pick int8 graphs
        settings = {"variant": "model", **overrides}
        options = TagOptions(model=bundle, top_k=TOP_K, batch_size=args.batch_size, workers=args.workers, **settings)
        return lambda posts, out: run_tag(posts, out, options)

    has_int8 = "int8" in read_bundle(bundle).info.graphs
    cpu_rows = args.device in ("cpu", "auto") or not cuda_ok
    skip_cpu = "" if cpu_rows else "--device cuda: CPU provider rows not run"
    systems = [
        System("a", "tag pipeline, ONNX Runtime CPU, fp32", tag_with(device="cpu") if cpu_rows else None, skip_cpu),
        System(
            "a-order",
            "a with batches in input order (no grouping by caption length)",
            tag_with(device="cpu", length_window=1) if cpu_rows else None,
            skip_cpu,
            flops_key="tag_input_order",
        ),
        naive_row(args, ckpt, cuda_ok),
        System(
            "c",
            "tag pipeline, ONNX Runtime CPU, int8 graphs (LXMERT; extractor where exported)",
            tag_with(device="cpu", variant="int8") if cpu_rows and has_int8 else None,
            skip_cpu or ("" if has_int8 else "the bundle has no int8 graph"),
            fp32=False,
        ),
    ]
    if args.device == "cpu":
        why = "--device cpu"
    elif not cuda_ok:
        why = "CUDA absent (the reason is printed at the start)"
    else:
        why = ""
    gpu = not why
    has_fp16 = "fp16" in read_bundle(bundle).info.graphs
    trt = "TensorrtExecutionProvider" in ort.get_available_providers()
    systems += [
        System(
            "a-cuda",
            "tag pipeline, ONNX Runtime CUDA, fp32",
            tag_with(device="cuda") if gpu else None,
            why,
            peak_key="cuda_fp32",
        ),
        System(
            "a-cuda-fp16",
            "tag pipeline, ONNX Runtime CUDA, fp16 LXMERT",
            tag_with(device="cuda", variant="fp16") if gpu and has_fp16 else None,
            why or ("" if has_fp16 else "the bundle has no fp16 graph"),
            fp32=False,
            peak_key="cuda_fp16",
        ),
    ]
    if gpu and trt:
        systems.append(
            System(
                "a-trt",
                "tag pipeline, ONNX Runtime TensorRT, fp16 engines (cached in the user's cache)",
                tag_with(device="tensorrt", variant="default"),
                fp32=False,
                peak_key="cuda_fp16",
            )
        )
    else:
        systems.append(
            System(
                "a-trt",
                "tag pipeline, ONNX Runtime TensorRT, fp16",
                None,
                why or "no TensorrtExecutionProvider",
                fp32=False,
                peak_key="cuda_fp16",
            )
        )
    if gpu and args.device == "auto":  # with --device cuda, b itself is the CUDA loop
        cuda_naive = naive_row(args, ckpt, cuda_ok, on_cuda=True)
        systems.append(replace(cuda_naive, key="b-cuda"))
    return systems


@contextmanager
def busy_process(wanted: bool):
    """With `wanted`, one other process spinning on a core for the duration of the block."""
    if not wanted:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    console.print(f"a competing busy process is running (pid {spinner.pid})")
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def measure(systems: list[System], posts_dir: Path, warmup_dir: Path, out_dir: Path, rounds: int) -> None:
    """Warm each system up once, then `rounds` interleaved rounds; each run records its own peak memory."""
    active = [s for s in systems if s.run is not None]
    for s in active:
        console.print(f"warm-up  {s.key:<12} {s.label}")
        try:
            s.run(warmup_dir, out_dir / f"warmup-{s.key}.jsonl")
        except Exception as e:  # one failing provider must not end the benchmark
            s.run, s.skipped = None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            console.print(f"[yellow]{s.key}: {s.skipped}")
    for r in range(rounds):
        for s in (s for s in systems if s.run is not None):
            with phase_memory() as memory:
                run = s.run(posts_dir, out_dir / f"{s.key}-round{r + 1}.jsonl")
            run.memory, run.load = memory, os.getloadavg()[0]
            s.runs.append(run)
            console.print(
                f"round {r + 1}/{rounds} {s.key:<12} {run.posts_per_s:8.2f} posts/s  ({run.seconds:.1f} s, "
                f"start-up {run.startup_s:.1f} s, peak {memory.peak_mib or 0:,.0f} MiB)  load {os.getloadavg()[0]:.2f}"
            )


# ----------------------------------------------------------------------------------------------- start-up

# Run in a fresh interpreter: `tag` as a user starts it, with none of this process's imports, sessions or page
# cache of Python modules counting (the bundle's files stay in the OS page cache: a warm disk).
STARTUP_SCRIPT = """
import json, sys, time
started = time.time()
t0 = time.perf_counter()
from pathlib import Path
from rich.console import Console
from hashtagger.tagging import run, tagger
from hashtagger.tagging.options import TagOptions
imported = time.perf_counter() - t0
spent = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
    return wrapper
tagger.read_bundle = timed("bundle_s", tagger.read_bundle)
tagger.Runner.load = timed("sessions_s", tagger.Runner.load)
bundle, posts, out, variant, batch, workers = sys.argv[1:7]
options = TagOptions(model=bundle, device="cpu", variant=variant, batch_size=int(batch), workers=int(workers))
quiet = Console(stderr=True, quiet=True)
summary = run.tag(Path(posts), Path(out), "jsonl", options, console=quiet, overwrite=True)
print(json.dumps({"started": started, "import_s": imported, "first_record_s": summary.startup_s,
                  "variant": getattr(summary, "variant", "model fp32"), **spent}))
"""


def fresh_startup(bundle: Path, posts_dir: Path, output: Path, variant: str, args) -> dict:
    """Time to the first record of `tag` in a new Python process: imports, bundle read and check, sessions, the
    first batch. "total_s" runs from the process's spawn to the first record."""
    spawned = time.time()
    command = [sys.executable, "-c", STARTUP_SCRIPT, str(bundle), str(posts_dir), str(output), variant]
    done = subprocess.run(
        [*command, str(args.batch_size), str(args.workers)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    interpreter = result.pop("started") - spawned
    result["total_s"] = interpreter + result["import_s"] + result["first_record_s"]
    result["load"] = os.getloadavg()[0]
    return result


def measure_startup(bundle: Path, posts_dir: Path, out_dir: Path, args) -> dict[str, list[dict]]:
    """fresh_startup() for fp32 (a) and `--variant auto` (the CPU default), interleaved over --rounds after one
    warm-up each (which also fills the bundle's verification cache, as any earlier run of `tag` does)."""
    variants = {"a": "model", "auto": "auto"}
    runs: dict[str, list[dict]] = {key: [] for key in variants}
    for r in range(args.rounds + 1):
        for key, variant in variants.items():
            result = fresh_startup(bundle, posts_dir, out_dir / f"startup-{key}-{r}.jsonl", variant, args)
            if r:
                runs[key].append(result)
            console.print(
                f"start-up {'warm-up' if not r else f'round {r}/{args.rounds}'} {key:<5} first record "
                f"{result['total_s']:.2f} s from spawn (imports {result['import_s']:.2f}, bundle "
                f"{result['bundle_s']:.2f}, sessions {result['sessions_s']:.2f}, tag() to first record "
                f"{result['first_record_s']:.2f}; {result['variant']})  load {result['load']:.2f}"
            )
    return runs


# ----------------------------------------------------------------------------------------------- agreement


def read_top(path: Path) -> dict[str, list[str]]:
    top = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        top[record["id"]] = [h["tag"] for h in record["hashtags"]]
    return top


def agreement(reference: Path, candidate: Path) -> dict:
    ref, cand = read_top(reference), read_top(candidate)
    ids = list(ref)
    same_set = sum(set(ref[i]) == set(cand.get(i, [])) for i in ids) / len(ids)
    same_order = sum(ref[i] == cand.get(i) for i in ids) / len(ids)
    overlap = statistics.mean(len(set(ref[i]) & set(cand.get(i, []))) / TOP_K for i in ids)
    return {"same_top5_set": same_set, "same_top5_order": same_order, "top5_overlap": overlap, "posts": len(ids)}


# ----------------------------------------------------------------------------------------------- FLOPs


def tag_batches(posts: list, batch_size: int, bundle, length_window: int = TagOptions.length_window) -> list[list[int]]:
    """The input positions of each batch, as `tag` forms them (grouped by caption length within windows)."""
    return pipeline.batch_positions(posts, bundle, batch_size, length_window)


def batch_widths(posts_dir: Path, bundle, batch_size: int) -> tuple[list[int], dict[str, list[tuple[int, int]]]]:
    """Each post's own token count, and (padded width, posts) of each batch: as `tag` forms batches ("tag"), and
    in input order without length grouping ("tag_input_order")."""
    posts = load_posts(posts_dir)
    texts = [clean_caption(p.caption or "", bundle.cleaning) for p in posts]
    lengths = [int(encode(bundle.tokenizer, [t], bundle.max_length)["attention_mask"].sum()) for t in texts]
    widths = {
        key: [(max(lengths[i] for i in where), len(where)) for where in tag_batches(posts, batch_size, bundle, window)]
        for key, window in (("tag", TagOptions.length_window), ("tag_input_order", 1))
    }
    return lengths, widths


def count_flops(ckpt_path: Path, widths: dict[str, list[tuple[int, int]]]) -> dict:
    """FLOPs per post (matmuls and convolutions, via FlopCounterMode): extractor, LXMERT at the padded widths
    the tag rows run (each batch's longest caption) and at the naive loop's fixed 128 tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    ckpt = load_checkpoint(ckpt_path)
    size, dim = ckpt.extractor_spec.image.size, ckpt.extractor_spec.feature_dim

    def flops(fn) -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    extractor = flops(lambda: ckpt.extractor(torch.zeros(1, 3, size, size)))

    def lxmert(tokens: int) -> int:
        ids = torch.ones(1, tokens, dtype=torch.long)
        return flops(
            lambda: ckpt.model(
                ids, torch.ones_like(ids), torch.zeros_like(ids), torch.zeros(1, 36, dim), torch.zeros(1, 36, 4)
            )
        )

    by_width = {w: lxmert(w) for w in sorted({w for batches in widths.values() for w, _ in batches} | {NAIVE_LENGTH})}
    result = {
        "extractor": extractor,
        "lxmert_naive": by_width[NAIVE_LENGTH],
        "naive": extractor + by_width[NAIVE_LENGTH],
    }
    for key, batches in widths.items():  # every post of a batch runs at that batch's width
        posts = sum(n for _, n in batches)
        result[f"lxmert_{key}"] = sum(by_width[w] * n for w, n in batches) / posts
        result[key] = extractor + result[f"lxmert_{key}"]
        result[f"mean_width_{key}"] = sum(w * n for w, n in batches) / posts
    return result


def gemm_peak(n: int = 2048, reps: int = 5) -> dict:
    """Best-of-`reps` GFLOP/s of an n x n float32 matmul with 1 thread and one per core ("cpu_fp32": the better),
    and on CUDA when torch has it."""
    result = {}
    a, b = torch.randn(n, n), torch.randn(n, n)
    saved = torch.get_num_threads()
    for threads in sorted({1, saved, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        a @ b
        best = min(_timeit(lambda: a @ b) for _ in range(reps))
        result[f"cpu_fp32_{threads}t"] = 2 * n**3 / best / 1e9
    torch.set_num_threads(saved)
    result["cpu_fp32"] = max(v for k, v in result.items() if k.startswith("cpu_fp32_"))
    if torch.cuda.is_available():
        for name, dtype in (("cuda_fp32", torch.float32), ("cuda_fp16", torch.float16)):
            m = 8192
            x, y = torch.randn(m, m, device="cuda", dtype=dtype), torch.randn(m, m, device="cuda", dtype=dtype)
            x @ y
            torch.cuda.synchronize()
            best = min(_timeit(lambda x=x, y=y: (x @ y, torch.cuda.synchronize())) for _ in range(reps))
            result[name] = 2 * m**3 / best / 1e9
    return result


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------------------------- profile


def profile_tag(bundle_dir: Path, posts_dir: Path, batch_size: int, variants: list[str]) -> dict[str, dict[str, float]]:
    """ms per post of each stage of the tag pipeline, each timed alone on its own inputs (no overlap), CPU provider.

    {stage: {"ort": ms}}; the ONNX stages also with one intra-op thread ("ort_1"), to show what threading gives."""
    bundle = read_bundle(bundle_dir)
    posts = load_posts(posts_dir)
    batches = [slice(i, i + batch_size) for i in range(0, len(posts), batch_size)]  # images: order does not matter
    groups = tag_batches(posts, batch_size, bundle)  # captions: as tag groups them
    ms: dict[str, dict[str, float]] = {}

    def per_post(started: float) -> float:
        return (time.perf_counter() - started) * 1000 / len(posts)

    t = time.perf_counter()
    pixels = np.stack([load_pixels(p.image, bundle.image) for p in posts])
    ms["decode + resize (1 thread)"] = {"ort": per_post(t)}
    t = time.perf_counter()
    texts = [
        encode(bundle.tokenizer, [clean_caption(posts[i].caption or "", bundle.cleaning) for i in g], bundle.max_length)
        for g in groups
    ]
    ms["clean + tokenise"] = {"ort": per_post(t)}
    for threads, column in ((None, "ort"), (1, "ort_1")):
        runner = Runner.load(bundle, "cpu", "model", threads=threads)
        runner.features(pixels[:batch_size])  # the first run allocates
        t = time.perf_counter()
        regions = [runner.features(pixels[b]) for b in batches]
        ms.setdefault("extractor", {})[column] = per_post(t)
        all_feats, all_boxes = (np.concatenate(r) for r in zip(*regions, strict=True))
        feats, boxes = [all_feats[g] for g in groups], [all_boxes[g] for g in groups]
        for variant in variants:
            if variant != "model":
                runner = Runner.load(bundle, "cpu", variant, threads=threads)
                if runner.variant.endswith("extractor int8"):  # the int8 variant's own extractor
                    runner.features(pixels[:batch_size])
                    t = time.perf_counter()
                    for b in batches:
                        runner.features(pixels[b])
                    ms.setdefault("extractor (int8)", {})[column] = per_post(t)
            runner.probabilities(texts[0], feats[0], boxes[0])
            t = time.perf_counter()
            probs = [runner.probabilities(x, f, bx) for x, f, bx in zip(texts, feats, boxes, strict=True)]
            ms.setdefault(f"LXMERT + head ({'fp32' if variant == 'model' else variant})", {})[column] = per_post(t)
        del runner
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        writer = open_writer(Path(tmp) / "out.jsonl", "jsonl")
        in_order = np.empty_like(np.concatenate(probs))
        in_order[np.concatenate(groups)] = np.concatenate(probs)
        for post, scores in zip(posts, in_order, strict=True):
            order = np.argsort(-scores, kind="stable")[:TOP_K]
            writer.write(
                {
                    "id": post.id,
                    "status": "ok",
                    "hashtags": [{"tag": bundle.vocab[j], "score": round(float(scores[j]), 4)} for j in order],
                }
            )
        writer.close()
        ms["top-k + write"] = {"ort": per_post(t)}
    return ms


# ----------------------------------------------------------------------------------------------- training


def train_throughput(posts_dir: Path, work: Path, size: str, batch_size: int) -> dict:
    """train() for one epoch with a cold feature cache, then again with the same (warm) cache."""
    from hashtagger.training.train import TrainConfig, train

    cache = work / "feature-cache"
    result = {"size": size}
    for name in ("cold", "warm"):
        cfg = TrainConfig(
            data=str(posts_dir),
            output=str(work / "runs"),
            run_name=name,
            base_model=size,
            epochs=1,
            batch_size=batch_size,
            cache_dir=str(cache),
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        t = time.perf_counter()
        run = train(cfg, QUIET)
        seconds = time.perf_counter() - t
        ckpt = load_checkpoint(run / "last")
        train_posts = len(ckpt.split["train"])  # one image per generated post: digests = posts
        result[name] = {
            "seconds": seconds,
            "train_posts": train_posts,
            "wall_posts_per_s": train_posts / seconds,
            "loop_posts_per_s": ckpt.meta.history[-1]["posts_per_s"],
        }
        console.print(
            f"train {name}: {seconds:.1f} s for {train_posts} training posts (loop "
            f"{result[name]['loop_posts_per_s']:.1f} posts/s)"
        )
    return result


# ----------------------------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ",.2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def startup_table(startup: dict[str, list[dict]]) -> None:
    table = Table(
        title="Time to the first record, `tag` in a fresh process, warm disk (s, median over rounds)",
        title_justify="left",
    )
    for col in (
        "row",
        "graphs",
        "spawn to first record",
        "imports",
        "bundle read + check",
        "sessions",
        "tag() to first record",
        "rounds (spawn to first record)",
        "load",
    ):
        table.add_column(col, justify="left" if col in ("row", "graphs") else "right")
    for key, runs in startup.items():
        if not runs:
            continue

        def median(name: str, runs=runs) -> str:
            return f"{statistics.median(r[name] for r in runs):.2f}"

        table.add_row(
            key,
            runs[0]["variant"],
            f"[bold]{median('total_s')}",
            median("import_s"),
            median("bundle_s"),
            median("sessions_s"),
            median("first_record_s"),
            " ".join(f"{r['total_s']:.2f}" for r in runs),
            " ".join(f"{r['load']:.2f}" for r in runs),
        )
    console.print(table)


@dataclass
class Figures:
    """What main measured, for the report."""

    systems: list
    agreements: dict
    flops: dict
    peak: dict
    profile: dict
    naive_ms: dict
    tokens: list
    training: dict | None
    machine: dict
    startup: dict


def report(args, f: Figures) -> dict:
    rows = _systems_table(args, f.systems, f.agreements, f.flops, f.peak)
    headline = _ratios(f.systems, f.agreements, f.startup)
    _flops_table(f.flops, f.tokens, f.peak)
    if f.profile:  # CPU runs only
        _profile_table(f.systems, f.profile, f.naive_ms)
    if f.training:
        _training_table(f.training)
    machine = f.machine
    load = os.getloadavg()
    console.print(
        f"machine: {machine['cpu']}, {machine['cores']} cores; torch threads {torch.get_num_threads()} (default "
        f"{machine['torch_threads']['default']}); "
        f"ONNX Runtime {ort.__version__}, intra-op threads: its default (one per core); "
        f"load average at start {machine['load_start'][0]:.2f} {machine['load_start'][1]:.2f} "
        f"{machine['load_start'][2]:.2f}, "
        f"at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    return {
        "args": vars(args),
        "systems": rows,
        "headline": headline,
        "agreement": f.agreements,
        "flops": f.flops,
        "gemm_peak_gflop_per_s": f.peak,
        "profile_ms_per_post": {"tag": f.profile, "naive": f.naive_ms},
        "tokens": {"median": statistics.median(f.tokens), "mean": statistics.mean(f.tokens)},
        "training": f.training,
        "startup_fresh_process": f.startup,
        "process_peak_rss_mib": process_peak_mib(),
        "machine": dict(machine, load_end=list(load)),
    }


def _systems_table(args, systems, agreements, flops, peak) -> list[dict]:
    naive = next(s for s in systems if s.key == "b")
    table = Table(
        title=f"hashtagger tag throughput, --size {args.size}, {args.posts} posts, median of {args.rounds} rounds",
        title_justify="left",
    )
    for col, justify in (
        ("", "left"),
        ("system", "left"),
        ("posts/s", "right"),
        ("rounds", "right"),
        ("× b", "right"),
        ("same top-5 as b", "right"),
        ("peak RSS MiB", "right"),
        ("GFLOP/post", "right"),
        ("GFLOP/s", "right"),
        ("% GEMM peak", "right"),
    ):
        table.add_column(col, justify=justify)
    rows = []
    for s in systems:
        if s.run is None and not s.runs:
            table.add_row(s.key, f"{s.label}\n[yellow]skipped: {s.skipped.splitlines()[0][:100]}", "-", *[""] * 7)
            rows.append({"key": s.key, "label": s.label, "skipped": s.skipped})
            continue
        pps = s.posts_per_s
        gflop = flops[s.flops_key] / 1e9
        gflops = gflop * pps
        peak_ref = peak.get(s.peak_key)
        agree = agreements.get(s.key)
        mem = [r.memory.peak_mib for r in s.runs if r.memory and r.memory.peak_mib]
        added = [r.memory.added_mib for r in s.runs if r.memory and r.memory.added_mib is not None]
        ok = agree is None or not s.fp32 or agree["same_top5_set"] >= 0.99
        table.add_row(
            s.key,
            s.label,
            f"{pps:,.2f}",
            " ".join(f"{r.posts_per_s:.2f}" for r in s.runs),
            f"{pps / naive.posts_per_s:.2f}" if naive.posts_per_s else "-",
            "(reference)"
            if s.key == "b"
            else (f"{'' if ok else '[red]'}{agree['same_top5_set']:.1%}" if agree else "-"),
            f"{max(mem):,.0f}" if mem else "-",
            f"{gflop:.3g}",
            f"{gflops:.3g}",
            f"{100 * gflops / peak_ref:.0f}%" if peak_ref else f"- (no {s.peak_key} peak)",
        )
        rows.append(
            {
                "key": s.key,
                "label": s.label,
                "posts_per_s": pps,
                "rounds": [r.posts_per_s for r in s.runs],
                "startup_s": [r.startup_s for r in s.runs],
                "load": [r.load for r in s.runs],
                "vs_b": pps / naive.posts_per_s if naive.posts_per_s else None,
                "agreement_with_b": agree,
                "phase_peak_rss_mib": max(mem) if mem else None,
                "phase_added_rss_mib": max(added) if added else None,
                "gflop_per_post": gflop,
                "gflop_per_s": gflops,
                "gemm_peak_gflop_per_s": peak_ref,
            }
        )
    console.print(table)

    return rows


def _ratios(systems, agreements, startup) -> dict:
    naive = next(s for s in systems if s.key == "b")
    headline = {}
    ratios = []
    for s in systems:
        if s.key != "b" and s.posts_per_s and naive.posts_per_s:
            headline[f"{s.key}/b"] = s.posts_per_s / naive.posts_per_s
            ratios.append(
                f"[bold]{s.key}/b = {headline[f'{s.key}/b']:.2f}[/bold]" + (" (target >= 3)" if s.key == "a" else "")
            )
    console.print("   ".join(ratios) or "no ratio: (a) or (b) did not run")
    if startup:
        startup_table(startup)
    if "c" in agreements:
        console.print(
            f"c (int8) vs b: same top-5 set on {agreements['c']['same_top5_set']:.1%}. Not indicative with random "
            "weights: a random "
            "LXMERT's pooled output varies little between posts, less than int8 rounding; `hashtagger export --int8` "
            "reports int8 "
            "agreement on a trained model's validation posts."
        )
    if "a" in agreements:
        ag = agreements["a"]
        console.print(
            f"a vs b: same top-5 set on {ag['same_top5_set']:.1%}, same order on {ag['same_top5_order']:.1%} of "
            f"{ag['posts']} posts "
            f"({'ok' if ag['same_top5_set'] >= 0.99 else 'BELOW 99%'}); distinct top-5 lists among b's posts: "
            f"{agreements['distinct_b']}"
        )
    added = [
        f"{s.key} +{max(r.memory.added_mib for r in s.runs):,.0f}"
        for s in systems
        if s.runs and all(r.memory and r.memory.added_mib is not None for r in s.runs)
    ]
    starts = [r.memory.start_mib for s in systems for r in s.runs if r.memory and r.memory.start_mib]
    baseline = min(starts, default=None)
    console.print(
        f"peak resident memory, whole process (ru_maxrss): {process_peak_mib():,.0f} MiB; per system: its own VmHWM "
        f"(process baseline included: {fmt(baseline, ',.0f')} MiB"
        + (f"; peak above the RSS at its start, MiB: {', '.join(added)})" if added else ")")
    )

    return headline


def _flops_table(flops, tokens, peak) -> None:
    ftable = Table(title="FLOPs per post (matmul + conv, torch.utils.flop_counter)", title_justify="left")
    ftable.add_column("part")
    ftable.add_column("GFLOP", justify="right")
    ftable.add_row("extractor (1 image)", f"{flops['extractor'] / 1e9:.2f}")
    ftable.add_row(
        f"LXMERT + head, tag: batches grouped by length, mean width {flops['mean_width_tag']:.1f} tokens",
        f"{flops['lxmert_tag'] / 1e9:.2f}",
    )
    ftable.add_row(
        f"LXMERT + head, tag in input order: mean width {flops['mean_width_tag_input_order']:.1f} tokens",
        f"{flops['lxmert_tag_input_order'] / 1e9:.2f}",
    )
    ftable.add_row(f"LXMERT + head, naive: {NAIVE_LENGTH} tokens", f"{flops['lxmert_naive'] / 1e9:.2f}")
    ftable.add_row("[bold]per post, tag / naive", f"[bold]{flops['tag'] / 1e9:.2f} / {flops['naive'] / 1e9:.2f}")
    console.print(ftable)
    console.print(
        f"caption tokens per post: median {statistics.median(tokens):.0f}, mean {statistics.mean(tokens):.1f}, max "
        f"{max(tokens)}; "
        f"GEMM peak: "
        + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peak.items())
        + " (torch.matmul 2048² fp32, best of 5; % of peak uses cpu_fp32, the better of 1 thread and one per core)"
    )


def _profile_table(systems, profile, naive_ms) -> None:
    naive = next(s for s in systems if s.key == "b")
    a = next(s for s in systems if s.key == "a")
    ptable = Table(
        title="Where a post's time goes (ms/post, each stage timed alone on the same posts, CPU)",
        title_justify="left",
    )
    ptable.add_column("stage")
    ptable.add_column("tag pipeline (a/c), ORT default threads", justify="right")
    ptable.add_column("same, ORT 1 intra-op thread", justify="right")
    ptable.add_column(f"naive loop (b), torch {torch.get_num_threads()} thread(s)", justify="right")
    naive_stages = {
        "decode + resize (1 thread)": "decode + resize",
        "clean + tokenise": "clean + tokenise",
        "extractor": "extractor",
        "LXMERT + head (fp32)": "LXMERT + head",
        "top-k + write": "top-k + write",
    }
    for stage, value in profile.items():
        ptable.add_row(
            stage,
            f"{value['ort']:,.1f}",
            fmt(value.get("ort_1"), ",.1f"),
            fmt(naive_ms.get(naive_stages.get(stage, "")), ",.1f"),
        )

    def total(column: str) -> float | None:
        parts = [v.get(column, v["ort"]) for k, v in profile.items() if "int8" not in k]
        return sum(parts)

    ptable.add_row(
        "[bold]sum of stages (fp32)",
        f"[bold]{total('ort'):,.1f}",
        f"[bold]{total('ort_1'):,.1f}",
        f"[bold]{sum(naive_ms.values()):,.1f}",
    )
    if a.posts_per_s:
        ptable.add_row(
            "measured end to end (median of rounds)",
            f"{1000 / a.posts_per_s:,.1f}",
            "",
            fmt(1000 / naive.posts_per_s if naive.posts_per_s else None, ",.1f"),
        )
    console.print(ptable)
    console.print(
        "the pipeline decodes in worker threads while ONNX Runtime runs, so its end-to-end time can be below "
        "the sum of its stages"
    )
    naive_total, extractor_ms = sum(naive_ms.values()), profile["extractor"]["ort"]
    if naive_total and extractor_ms:
        console.print(
            f"bound: b takes {naive_total:,.0f} ms/post; a's extractor alone takes {extractor_ms:,.0f} ms/post, so "
            "even with LXMERT, "
            f"decoding and writing free a/b <= {naive_total / extractor_ms:.1f} (with 1 intra-op thread: "
            f"{naive_total / profile['extractor'].get('ort_1', extractor_ms):.1f})"
        )


def _training_table(training) -> None:
    ttable = Table(title=f"hashtagger train throughput, --train-size {training['size']}, 1 epoch", title_justify="left")
    for col in ("feature cache", "train() wall s", "training posts", "posts/s (wall)", "posts/s (training loop)"):
        ttable.add_column(col, justify="right" if col != "feature cache" else "left")
    for name in ("cold", "warm"):
        t = training[name]
        ttable.add_row(
            name,
            f"{t['seconds']:.1f}",
            str(t["train_posts"]),
            f"{t['wall_posts_per_s']:.2f}",
            f"{t['loop_posts_per_s']:.2f}",
        )
    console.print(ttable)
    console.print(
        "wall: the whole train() call (prepare, region features for every image when cold, epoch, validation, "
        "test, checkpoints) / training posts; loop: the epoch's own rate"
    )


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=sorted(PRESETS), default="base", help="model preset (random weights)")
    p.add_argument(
        "--captions",
        choices=("tweets", "long"),
        default="tweets",
        help="caption lengths: tweets (as in MediaEval 2016: median 8 words) or long (20-30 words)",
    )
    p.add_argument("--image-size", type=int, default=None, help="extractor input side (default: the preset's)")
    p.add_argument("--posts", type=int, default=None, help="posts to tag (default: 64 for base, 128 otherwise)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measured rounds; the median is reported")
    p.add_argument("--batch-size", type=int, default=32, help="tag's --batch-size")
    p.add_argument("--workers", type=int, default=2, help="tag's image-decoding threads")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="cpu: CPU rows only; cuda: CUDA rows (+ the naive loop); auto: every row this machine can run",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads for the naive loop and training (default: torch's, one per core)",
    )
    p.add_argument("--skip-train", action="store_true", help="do not measure training throughput")
    p.add_argument(
        "--train-size",
        choices=sorted(PRESETS),
        default=None,
        help="preset for the training measurement (default: mini, tiny for --size tiny)",
    )
    p.add_argument("--train-batch-size", type=int, default=18, help="training batch size (the paper's 18)")
    p.add_argument(
        "--busy",
        action="store_true",
        help="measure the rounds beside one competing process that keeps a core busy (a shared machine)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep posts, checkpoint and bundle here (default: a temporary folder, removed)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.posts = args.posts or (64 if args.size == "base" else 128)
    args.train_size = args.train_size or ("tiny" if args.size == "tiny" else "mini")
    return args


def machine_info() -> dict:
    """The machine and the versions, with the load average at the start."""
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_start": list(os.getloadavg()),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError, StopIteration):
        machine["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return machine


def agreements_with_b(systems) -> dict:
    """Each system's top-5 agreement with the naive loop (b) on the last round's outputs."""
    naive = next(s for s in systems if s.key == "b")
    agreements: dict = {}
    if naive.runs:
        reference = naive.runs[-1].output
        agreements["distinct_b"] = len({tuple(v) for v in read_top(reference).values()})
        for s in systems:
            if s.runs and s.key != "b":
                agreements[s.key] = agreement(reference, s.runs[-1].output)
    return agreements


def main(argv=None) -> dict:
    args = parse_args(argv)
    machine = machine_info()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hashtagger-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # The naive loop gets what a user's loop gets: torch's own default (one per core), unless told otherwise.
        machine["torch_threads"] = {
            "default": torch.get_num_threads(),
            "used": args.torch_threads or torch.get_num_threads(),
        }
        torch.set_num_threads(machine["torch_threads"]["used"])
        cuda_ok, cuda_why = (False, "--device cpu") if args.device == "cpu" else cuda_status()
        if args.device != "cpu" and not cuda_ok:
            console.print(f"[yellow]CUDA absent: {cuda_why}. The CUDA / TensorRT rows are skipped.")
        console.print(f"generating {args.posts} posts (640x480 JPEG, {args.captions} captions) in {work}")
        posts_dir = make_posts(work / "posts", args.posts, args.seed, args.captions)
        warmup_dir = work / "warmup"
        warmup_dir.mkdir(exist_ok=True)
        for p in sorted(posts_dir.iterdir())[: 2 * min(8, args.posts)]:  # 8 posts: image + caption
            shutil.copy(p, warmup_dir / p.name)
        t = time.perf_counter()
        int8 = args.device != "cuda"  # int8 is for the CPU rows; a GPU run has no time to calibrate it
        for attempt in range(3):
            ckpt = build_checkpoint(work / "checkpoint", args.size, posts_dir, args.seed + attempt, args.image_size)
            built = load_checkpoint(ckpt)
            gain, side = built.meta.notes["head_gain"], built.extractor_spec.image.size
            console.print(
                f"checkpoint at --size {args.size} (images {side}x{side}) with random weights: "
                f"{time.perf_counter() - t:.1f} s (head centred, gain {gain:.0f})"
            )
            t = time.perf_counter()
            # The centred head multiplies rounding noise by its gain (a trained head has no such gain), and random
            # weights leave near-ties among the top 5: tolerance 1e-3, and other weights if a tie still flips.
            options = ExportOptions(output=str(work / "bundle"), int8=int8, fp16=cuda_ok, parity_posts=16)
            options.tolerance = 1e-3
            try:
                bundle = export(ckpt, options, console)
                break
            except ParityError as e:
                if attempt == 2:
                    raise
                console.print(f"[yellow]{e}; retrying with other random weights (seed {args.seed + attempt + 1})")
        console.print(
            f"exported (fp32{' + int8' if int8 else ''}{' + fp16' if cuda_ok else ''}): {time.perf_counter() - t:.1f} s"
        )

        bundle_info = read_bundle(bundle)
        tokens, widths = batch_widths(posts_dir, bundle_info, args.batch_size)
        console.print("counting FLOPs and measuring the GEMM peak")
        flops = count_flops(ckpt, widths)
        peak = gemm_peak()

        systems = make_systems(args, ckpt, bundle, work, cuda_ok, cuda_why)
        out_dir = work / "outputs"
        out_dir.mkdir(exist_ok=True)
        with busy_process(args.busy):
            measure(systems, posts_dir, warmup_dir, out_dir, args.rounds)

        agreements = agreements_with_b(systems)

        startup: dict[str, list[dict]] = {}
        profile: dict[str, dict[str, float]] = {}
        naive_ms: dict[str, float] = {}
        if args.device != "cuda":  # CPU measurements: a GPU run has no time for them
            console.print("time to the first record, each in a fresh process")
            startup = measure_startup(bundle, posts_dir, out_dir, args)
            console.print("profiling the stages on their own")
            variants = ["model"] + (["int8"] if "int8" in bundle_info.info.graphs else [])
            profile = profile_tag(bundle, posts_dir, args.batch_size, variants)
            naive_tagger = NaiveTagger(ckpt, "cpu")
            naive_tagger.run(posts_dir, work / "naive-profile.jsonl")
            naive_ms = {k: v * 1000 / args.posts for k, v in naive_tagger.timings.items()}
            del naive_tagger

        training = None
        if not args.skip_train:
            console.print(
                f"training throughput at --train-size {args.train_size} on the {args.posts} posts (1 epoch, cold "
                "then warm cache)"
            )
            training = train_throughput(posts_dir, work / "train", args.train_size, args.train_batch_size)

        figures = Figures(systems, agreements, flops, peak, profile, naive_ms, tokens, training, machine, startup)
        result = report(args, figures)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1, default=str))
            console.print(f"figures written to {args.json}")
        return result
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
