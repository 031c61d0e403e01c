"""`hashtagger tag`: recommend hashtags for a folder or CSV of posts with an exported bundle. No torch.

    posts -> windows of `length_window` batches, sorted by caption length and cut into batches of `batch_size`
          (a batch is padded to its longest caption: grouping similar lengths cuts LXMERT's work)
          -> images decoded and resized in worker threads, a few batches ahead
          -> per batch: extractor once per distinct image, captions cleaned and encoded (padded to the
             longest caption of the batch), LXMERT + head -> top-k (and threshold) -> one record per post,
             written in input order

A bad post (unreadable image, no image) gets a record that says why and the run goes on.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .bundle import Bundle, read_bundle
from .data import CsvColumns, Post, load_posts
from .display import PostsPerSecond, progress_bar
from .errors import BundleError, DataError, ImageError, OutputError
from .precomputed import precomputed_path, read_precomputed
from .runtime import Runner
from .text import clean_caption, encode
from .vision import ImageSettings, load_pixels
from .writers import done_ids, open_writer, output_format, remaining

CPU = "CPUExecutionProvider"
NO_CAPTION = "no caption, tagged from the image alone"
EMPTY_CAPTION = "no words left in the caption after cleaning, tagged from the image alone"


@dataclass
class TagOptions:
    model: str | Path = "exported"  # the bundle folder
    top_k: int = 5
    threshold: float | str | None = None  # keep only top-k tags scoring >= this; "auto": the bundle's tuned threshold
    batch_size: int = 32
    length_window: int = 4  # batches' worth of posts grouped by caption length before batching; 1: input order
    device: str = "auto"  # auto | cpu | cuda | tensorrt
    workers: int = 2  # image-decoding threads
    threads: int | None = None  # ONNX Runtime intra-op threads; None: its default (one per core)
    variant: str = "model"  # model | int8 | fp16: which LXMERT graph of the bundle
    max_pixels: int | None = None  # decompression-bomb limit; None: the bundle's
    features_dir: str | Path | None = None  # <image stem>.npz region features, for a bundle trained on precomputed ones
    columns: CsvColumns = field(default_factory=CsvColumns)


@dataclass
class TagSummary:
    tagged: int = 0  # records with status "ok..."
    skipped: Counter = field(default_factory=Counter)  # reason (without its details) -> posts
    notes: Counter = field(
        default_factory=Counter
    )  # tagged with a remark ("no caption", "caption is not valid UTF-8") -> posts
    seconds: float = 0.0
    posts_per_s: float = 0.0
    provider: str = ""
    resumed: int = 0  # posts found already done in the output (--resume)
    startup_s: float = 0.0  # from the call to the first record

    @property
    def processed(self) -> int:
        return self.tagged + sum(self.skipped.values())

    def count(self, record: dict) -> None:
        status = record["status"]
        if status == "ok" or status.startswith("ok:"):
            self.tagged += 1
            if status != "ok":
                self.notes[status[3:].split(";")[0].split(",")[0].strip()] += 1
        else:
            self.skipped[reason_key(status)] += 1


def reason_key(status: str) -> str:
    """'skipped: image data is corrupt: Truncated File Read' -> 'image data is corrupt' (for counting)."""
    reason = status.removeprefix("skipped:").strip()
    return reason.split(":")[0].split(" (")[0].strip()


def resolve_threshold(value: float | str | None, bundle: Bundle) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value.lower() == "auto":
            return float(bundle.threshold)
        try:
            value = float(value)
        except ValueError:
            raise DataError(f"--threshold must be a number between 0 and 1 or 'auto', not '{value}'") from None
    if not 0.0 <= value <= 1.0:
        raise DataError(f"--threshold must be between 0 and 1, not {value}")
    return float(value)


def tag_posts(posts: Iterable[Post], bundle: Bundle, runner: Runner, options: TagOptions) -> Iterator[dict]:
    """One record per post, in input order: {"id", "status", "hashtags": [{"tag", "score"}, ...]}."""
    settings = bundle.image if options.max_pixels is None else replace(bundle.image, max_pixels=options.max_pixels)
    threshold = resolve_threshold(options.threshold, bundle)
    pool = ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="decode")
    memory = RegionMemory()
    if options.features_dir is not None:
        load = partial(_read_regions, features_dir=Path(options.features_dir))
    else:
        load = partial(_decode, settings=settings)
    # Each batch's input positions and cleaned captions, in the order _decoded yields its batches.
    pending: deque[tuple[list[int], list[tuple[str, str]]]] = deque()

    def batches() -> Iterator[list[Post]]:
        caption = partial(_text, bundle=bundle)
        for where, batch, captions in _grouped_batches(posts, options.batch_size, options.length_window, caption):
            pending.append((where, captions))
            yield batch

    done: dict[int, dict] = {}
    next_out = 0
    try:
        for batch, pixels in _decoded(batches(), pool, load, max(2, options.workers), memory):
            where, captions = pending.popleft()
            records = _tag_batch(batch, captions, pixels, load, bundle, runner, options.top_k, threshold, memory)
            done.update(zip(where, records, strict=True))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _grouped_batches(
    posts: Iterable[Post], size: int, window: int, caption: Callable[[Post], tuple[str, str]]
) -> Iterator[tuple[list[int], list[Post], list[tuple[str, str]]]]:
    """(input positions, posts, captions) of each batch, each caption cleaned once by `caption`. Each `window`
    batches' worth of posts is sorted by cleaned-caption length (a close proxy for its tokens) first, so that
    a batch holds captions of similar length; a window's records all come out once its last batch is done."""
    size, span = max(1, size), max(1, size) * max(1, window)

    def cut(chunk: list[tuple[int, Post, tuple[str, str]]]):
        if window > 1:
            chunk.sort(key=lambda item: len(item[2][0]))
        for start in range(0, len(chunk), size):
            part = chunk[start : start + size]
            yield [i for i, _, _ in part], [post for _, post, _ in part], [text for _, _, text in part]

    chunk: list[tuple[int, Post, tuple[str, str]]] = []
    for i, post in enumerate(posts):
        chunk.append((i, post, caption(post)))
        if len(chunk) == span:
            yield from cut(chunk)
            chunk = []
    yield from cut(chunk)


def _image_key(post: Post) -> Path | None:
    """The resolved path: posts naming one image in different ways share one decode and one extractor row."""
    if post.image is None:
        return None
    try:
        return Path(post.image).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in a CSV cell: decoding will say why
        return Path(post.image).absolute()


def _decode(path: Path, settings: ImageSettings) -> np.ndarray | str:
    """Pixels [3, S, S], or the reason the image cannot be used."""
    try:
        return load_pixels(path, settings)
    except ImageError as e:
        return str(e)
    except Exception as e:  # a decoder bug on one odd file must not end the run
        return f"image cannot be decoded: {type(e).__name__}: {e}"


def _read_regions(path: Path, features_dir: Path) -> tuple[np.ndarray, np.ndarray] | str:
    """An image's precomputed (features, boxes), or the reason they cannot be used."""
    try:
        return read_precomputed(precomputed_path(features_dir, path))
    except ImageError as e:
        return str(e)


def _decoded(batches: Iterable[list[Post]], pool: ThreadPoolExecutor, load: Callable, ahead: int, memory: RegionMemory):
    """(batch, {image key: pixels, precomputed regions, or reason}) in order, loading up to `ahead` batches
    beyond the one being run. An image is loaded once: not again for a later batch while that load is
    pending, and not at all while its region features are remembered (such keys are left out)."""
    pending: deque[tuple[list[Post], dict[Path, Future]]] = deque()
    loading: dict[Path, Future] = {}  # loads of the pending batches, by image

    def ready(item):
        batch, futures = item
        for key, future in futures.items():
            if loading.get(key) is future:
                del loading[key]
        return batch, {key: future.result() for key, future in futures.items()}

    for batch in batches:
        futures = {}
        for key in dict.fromkeys(k for k in map(_image_key, batch) if k is not None):
            if key in loading:
                futures[key] = loading[key]
            elif memory.get(key) is None:
                futures[key] = loading[key] = pool.submit(load, key)
        pending.append((batch, futures))
        if len(pending) > ahead:
            yield ready(pending.popleft())
    while pending:
        yield ready(pending.popleft())


def _text(post: Post, bundle: Bundle) -> tuple[str, str]:
    """(model text, status should its image be usable): the caption cleaned once, for sorting and encoding."""
    notes = [post.note] if post.note else []
    if not (post.caption or "").strip():
        return "", "ok: " + "; ".join([*notes, NO_CAPTION])
    text = clean_caption(post.caption, bundle.cleaning)
    if not text:
        notes.append(EMPTY_CAPTION)
    return text, ("ok: " + "; ".join(notes)) if notes else "ok"


class RegionMemory:
    """Region features of the images seen last, so an image shared by many posts (re-posts, a news photo)
    goes through the extractor once per run, not once per batch. Bounded by bytes, least recently used out."""

    def __init__(self, budget_bytes: int = 256 << 20):
        self.budget = budget_bytes
        self.used = 0
        self.rows: OrderedDict[Path, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, key: Path) -> tuple[np.ndarray, np.ndarray] | None:
        if key in self.rows:
            self.rows.move_to_end(key)
            return self.rows[key]
        return None

    def put(self, key: Path, feats: np.ndarray, boxes: np.ndarray) -> None:
        self.rows[key] = (feats, boxes)
        self.used += feats.nbytes + boxes.nbytes
        while self.used > self.budget and len(self.rows) > 1:
            _, (f, b) = self.rows.popitem(last=False)
            self.used -= f.nbytes + b.nbytes


def _tag_batch(
    batch: list[Post],
    captions: list[tuple[str, str]],
    pixels: dict,
    load: Callable,
    bundle: Bundle,
    runner: Runner,
    top_k: int,
    threshold: float | None,
    memory: RegionMemory,
) -> list[dict]:
    """Records for one batch; `captions` holds each post's (cleaned text, status), `pixels` what was loaded for
    its images not remembered in `memory`."""
    records = [{"id": post.id, "status": "", "hashtags": []} for post in batch]
    keys = [_image_key(post) for post in batch]
    for key in dict.fromkeys(k for k in keys if k is not None and k not in pixels):
        if memory.get(key) is None:  # remembered when its load was skipped, forgotten since: load it now
            pixels[key] = load(key)
    good = []
    for i, key in enumerate(keys):
        if key is None:
            records[i]["status"] = "skipped: no image named"
        elif isinstance(pixels.get(key), str):
            records[i]["status"] = "skipped: " + pixels[key]
        else:
            good.append(i)
    if not good:
        return records
    texts = [captions[i] for i in good]
    try:
        # The extractor runs once per image, not per post: only for images not already in memory.
        found = {key: memory.get(key) for key in dict.fromkeys(keys[i] for i in good)}
        for key in found:
            if found[key] is None and isinstance(pixels.get(key), tuple):  # precomputed: the regions themselves
                found[key] = pixels[key]
        new = [key for key, regions in found.items() if regions is None]
        if new:
            feats, boxes = runner.features(np.stack([pixels[key] for key in new]))
            for key, f, b in zip(new, feats, boxes, strict=True):
                found[key] = (f, b)
                memory.put(key, f, b)
        regions = [found[keys[i]] for i in good]
        text = encode(bundle.tokenizer, [t for t, _ in texts], bundle.max_length)
        probs = runner.probabilities(text, np.stack([f for f, _ in regions]), np.stack([b for _, b in regions]))
    except Exception as e:  # ONNX Runtime failed on this batch: say so in its records, go on with the next
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        for i in good:
            records[i]["status"] = f"skipped: inference failed: {reason}"
        return records
    for (i, (_, status)), scores in zip(zip(good, texts, strict=True), probs, strict=True):
        order = np.argsort(-scores, kind="stable")[:top_k]
        records[i]["status"] = status
        records[i]["hashtags"] = [
            {"tag": bundle.vocab[j], "score": round(float(scores[j]), 4)}
            for j in order
            if threshold is None or scores[j] >= threshold
        ]
    return records


def open_runner(options: TagOptions) -> tuple[Bundle, Runner]:
    """The bundle and its ONNX Runtime sessions; BundleError / DeviceError when either cannot be used."""
    bundle = read_bundle(options.model)
    has_extractor = "extractor" in bundle.info.get("graphs", {})
    if not has_extractor and options.features_dir is None:
        raise BundleError(f"{bundle.path}: the model was trained on precomputed region features; pass --features-dir")
    if has_extractor and options.features_dir is not None:
        raise BundleError(
            f"{bundle.path}: the model computes its own region features; "
            "--features-dir is for precomputed-feature models"
        )
    return bundle, Runner.load(bundle, options.device, options.variant, options.threads)


def tag(
    input: str | Path,
    output: Path | None,
    fmt: str | None = None,
    options: TagOptions | None = None,
    resume: bool = False,
    console: Console | None = None,
) -> TagSummary:
    """Tag every post of `input` into `output` (None: stdout). Raises a HashtaggerError (DataError, BundleError,
    DeviceError, OutputError) for a run that cannot start; bad posts are reported in their records."""
    start = time.perf_counter()
    options = options or TagOptions()
    console = console or Console(stderr=True)
    output = Path(output) if output is not None else None
    fmt = output_format(output, fmt)
    if resume and output is None:
        raise OutputError("--resume needs --output (the file to continue)")
    posts = load_posts(input, options.columns)
    if not posts:
        raise DataError(f"no posts in {input} (images: jpg, jpeg, png, webp, bmp, gif; CSV: one row per post)")
    bundle, runner = open_runner(options)
    resolve_threshold(options.threshold, bundle)  # a bad value fails before anything is written
    console.print(
        f"tagging {len(posts)} posts with {bundle.path} on [bold]{runner.provider}[/bold]",
        highlight=False,
        soft_wrap=True,
    )
    if options.device == "auto" and runner.provider == CPU:
        console.print(
            f"[yellow]warning:[/yellow] --device auto fell back to the CPU: no usable GPU provider ({runner.fallback})",
            highlight=False,
            soft_wrap=True,
        )
    summary = TagSummary(provider=runner.provider)
    todo = posts
    if resume and output.exists():
        positions = remaining([p.id for p in posts], done_ids(output, fmt))
        todo = [posts[i] for i in positions]
        summary.resumed = len(posts) - len(todo)
        console.print(
            f"resuming {output}: {summary.resumed} posts already done, {len(todo)} to go",
            highlight=False,
            soft_wrap=True,
        )
    writer = open_writer(output, fmt, resume)
    run_start = time.perf_counter()
    try:
        with progress_bar(console, PostsPerSecond()) as progress:
            task = progress.add_task("tagging", total=len(todo))
            for record in tag_posts(todo, bundle, runner, options):
                if summary.processed == 0:
                    summary.startup_s = time.perf_counter() - start
                writer.write(record)
                summary.count(record)
                progress.advance(task)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    summary.seconds = time.perf_counter() - run_start
    summary.posts_per_s = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    console.print(summary_table(summary, output))
    return summary


def interrupted_message(output: Path | None, fmt: str | None) -> str:
    """What an interrupted run left behind, for the one-line message."""
    try:
        fmt = output_format(output, fmt)
    except OutputError:
        return "interrupted"
    if output is None:
        return "interrupted: the output on stdout is incomplete"
    if fmt == "jsonl":
        return f"interrupted: the records written so far are in {output}; rerun with --resume to add the rest"
    return f"interrupted: {output} was not written (JSON / CSV are written when complete; .jsonl keeps partial results)"


def summary_table(summary: TagSummary, output: Path | None = None) -> Table:
    table = Table(title="hashtagger tag", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("tagged", str(summary.tagged))
    for note, n in summary.notes.most_common():
        table.add_row(f"  of which {note}", str(n))
    table.add_row("skipped", str(sum(summary.skipped.values())))
    for reason, n in summary.skipped.most_common():
        table.add_row(f"  {reason}", str(n))
    if summary.resumed:
        table.add_row("already in the output", str(summary.resumed))
    table.add_row("posts/s", f"{summary.posts_per_s:,.1f}")
    table.add_row("start-up to first batch", f"{summary.startup_s:.2f} s")
    table.add_row("provider", summary.provider)
    table.add_row("output", str(output) if output else "stdout")
    return table
