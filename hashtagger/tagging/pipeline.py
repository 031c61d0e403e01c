"""The tagging pipeline: posts in, one record per post out, in input order, no torch.

    posts -> windows growing from 1/8 of a batch to `length_window` batches, sorted by caption length and cut into
          batches of up to `batch_size` (a batch is padded to its longest caption: grouping similar lengths cuts
          LXMERT's work; the small first window lets the first records come out after a fraction of a batch)
          -> images decoded and resized in worker threads, a few batches ahead
          -> per batch: extractor once per distinct image, captions cleaned and encoded (padded to the
             longest caption of the batch), LXMERT + head -> top-k (and threshold) -> one record per post,
             written in input order

A bad post (unreadable image, no image) gets a record that says why and the run goes on. Each record:
{"id", "status" (for people), "reason" (a code for programs: TAGGED, or why it was skipped), "hashtags"}."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hashtagger.bundle import gpu
from hashtagger.bundle.format import Bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.images import DecodeBudget, ImageSettings, load_pixels, memory_image, preprocess
from hashtagger.data.posts import Post, escape_undecodable
from hashtagger.data.precomputed import precomputed_path, read_precomputed
from hashtagger.data.text import caption_prefix, clean_caption, encode
from hashtagger.errors import ImageError
from hashtagger.tagging import attribution
from hashtagger.tagging.options import TagOptions, resolve_threshold
from hashtagger.tagging.picking import Picker, hashtag_list, own_hashtags
from hashtagger.tagging.records import EMPTY_CAPTION, NO_CAPTION, NOTE_CODES, skip_record
from hashtagger.tagging.stages import run_ahead

CPU = "CPUExecutionProvider"


def tag_posts(
    posts: Iterable[Post],
    bundle: Bundle,
    runner: Runner,
    options: TagOptions,
    on_scored: Callable[[int], None] | None = None,
    in_memory: Mapping[Path, object] | None = None,
) -> Iterator[dict]:
    """One record per post, in input order: {"id", "status", "hashtags": [{"tag", "score"}, ...]}.

    Three stages overlap, joined by bounded queues (stages.run_ahead): images are decoded in `options.workers`
    threads a few batches ahead; one thread groups the posts, runs the region extractor on each batch's new
    images and tokenises its captions; the caller's thread runs LXMERT and writes the records. `on_scored(n)`:
    a batch of n posts is scored (its records come out when the posts before them are done: a progress bar
    that counts these moves batch by batch, not a grouping window at a time). `in_memory`: images given as
    objects (images.memory_image), by the image_key of the post naming them."""
    options = sized(options, runner)
    settings = image_settings(bundle, options)
    picker = make_picker(options, bundle, runner)
    workers = options.workers or 1
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    load = loader(options, settings, in_memory)
    caption = partial(_text, bundle=bundle)
    size = options.batch_size or 1

    def prepared() -> Iterator[Prepared]:
        memory = RegionMemory()  # used by this stage's thread only
        grouped = _grouped_batches(posts, size, options.length_window, caption)
        for (where, batch, captions), pixels in _decoded(grouped, pool, load, DECODE_AHEAD, memory):
            yield _prepare(where, batch, captions, pixels, load, bundle, runner, memory)

    done: dict[int, dict] = {}
    next_out = 0
    try:
        for batch in run_ahead(prepared(), depth=1, name="extract"):
            records = _score(batch, bundle, runner, picker, options.explain)
            if on_scored is not None:
                on_scored(len(records))
            done.update(zip(batch.where, records, strict=True))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# Batches whose images are decoded ahead of the one being extracted: enough to keep the decoding threads busy
# while the extractor runs; more would only hold decoded pixels (0.8 MB an image at 260x260) in memory.
DECODE_AHEAD = 2


def sized(options: TagOptions, runner: Runner) -> TagOptions:
    """`options` with the batch size and decoding threads that were left to us set for the runner's device."""
    on_gpu = runner.provider != CPU
    return replace(
        options,
        batch_size=gpu.batch_size(options.batch_size, on_gpu),
        workers=gpu.decode_workers(options.workers, on_gpu),
    )


# The first window is this fraction of a batch, and each next one WINDOW_GROWTH times the last, up to
# `length_window` batches: the first records come out after a small batch (start-up), later posts run in full
# batches grouped by length. Fourfold growth keeps most of the grouping on short inputs: on the benchmark's 64
# tweet-length captions (batches of 32) padded widths average 18.9 tokens, against 24.6 when doubling.
FIRST_WINDOW_SHARE = 8
WINDOW_GROWTH = 4


def _grouped_batches(
    posts: Iterable[Post], size: int, window: int, caption: Callable[[Post], Caption]
) -> Iterator[tuple[list[int], list[Post], list[Caption]]]:
    """(input positions, posts, captions) of each batch, each caption cleaned once by `caption`. Each window of
    posts is sorted by cleaned-caption length (a close proxy for its tokens) first, so that a batch holds captions
    of similar length; a window's records all come out once its last batch is done. Windows grow from
    1/FIRST_WINDOW_SHARE of a batch, WINDOW_GROWTH-fold, to `window` batches; a batch is `size` posts or the
    whole window."""
    size = max(1, size)
    span, largest = max(1, size // FIRST_WINDOW_SHARE), size * max(1, window)

    def cut(chunk: list[tuple[int, Post, Caption]], batch: int):
        if len(chunk) > batch:
            chunk.sort(key=lambda item: len(item[2][0]))
        for start in range(0, len(chunk), batch):
            part = chunk[start : start + batch]
            yield [i for i, _, _ in part], [post for _, post, _ in part], [text for _, _, text in part]

    chunk: list[tuple[int, Post, Caption]] = []
    for i, post in enumerate(posts):
        chunk.append((i, post, caption(post)))
        if len(chunk) == span:
            yield from cut(chunk, min(size, span))
            chunk, span = [], min(largest, WINDOW_GROWTH * span)
    yield from cut(chunk, min(size, span))


def batch_positions(posts: list[Post], bundle: Bundle, size: int, window: int) -> list[list[int]]:
    """The input positions of each batch, as `tag` forms them (grouped by caption length within windows)."""
    caption = partial(_text, bundle=bundle)
    return [where for where, _, _ in _grouped_batches(posts, size, window, caption)]


def image_key(post: Post) -> Path | None:
    """The resolved path: posts naming one image in different ways share one decode and one extractor row."""
    if post.image is None or post.unusable:
        return None
    try:
        return Path(post.image).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in a CSV cell: decoding will say why
        return Path(post.image).absolute()


# What loading a post's image gives: its pixels [3, S, S], precomputed (features, boxes), or why it cannot be used.
Loaded = np.ndarray | tuple[np.ndarray, np.ndarray] | ImageError


def loader(
    options: TagOptions, settings: ImageSettings, in_memory: Mapping[Path, object] | None = None
) -> Callable[[Path], Loaded]:
    """The function that loads an image for the model: decoded pixels, or the precomputed regions of --features-dir.
    `in_memory`: images held as objects, by key, decoded instead of a file."""
    if options.features_dir is not None:
        return partial(_read_regions, features_dir=Path(options.features_dir))
    decode = partial(_decode, settings=settings, budget=DecodeBudget(options.decode_bytes))
    return partial(decode, in_memory=in_memory) if in_memory is not None else decode


def image_settings(bundle: Bundle, options: TagOptions) -> ImageSettings:
    """The bundle's preprocessing, with --max-pixels where given."""
    return bundle.image if options.max_pixels is None else replace(bundle.image, max_pixels=options.max_pixels)


def _decode(
    path: Path,
    settings: ImageSettings,
    budget: DecodeBudget | None = None,
    in_memory: Mapping[Path, object] | None = None,
) -> np.ndarray | ImageError:
    """Pixels [3, S, S], or why the image cannot be used."""
    try:
        if in_memory is not None and path in in_memory:
            return preprocess(memory_image(in_memory[path], settings.max_pixels, settings.size), settings)
        return load_pixels(path, settings, budget)
    except ImageError as e:
        return e
    except Exception as e:  # a decoder bug on one odd file must not end the run
        return ImageError(f"image cannot be decoded: {type(e).__name__}: {e}", "image_undecodable")


def _read_regions(path: Path, features_dir: Path) -> tuple[np.ndarray, np.ndarray] | ImageError:
    """An image's precomputed (features, boxes), or why they cannot be used."""
    try:
        return read_precomputed(precomputed_path(features_dir, path))
    except ImageError as e:
        return e


def _decoded(batches: Iterable[Batch], pool: ThreadPoolExecutor, load: Callable, ahead: int, memory: RegionMemory):
    """(batch, {image key: pixels, precomputed regions, or reason}) in order, loading up to `ahead` batches
    beyond the one being run. An image is loaded once: not again for a later batch while that load is
    pending, and not at all while its region features are remembered (such keys are left out)."""
    pending: deque[tuple[Batch, dict[Path, Future]]] = deque()
    loading: dict[Path, Future] = {}  # loads of the pending batches, by image

    def ready(item):
        batch, futures = item
        for key, future in futures.items():
            if loading.get(key) is future:
                del loading[key]
        return batch, {key: future.result() for key, future in futures.items()}

    for batch in batches:
        futures = {}
        for key in dict.fromkeys(k for k in map(image_key, batch[1]) if k is not None):
            if key in loading:
                futures[key] = loading[key]
            elif memory.get(key) is None:
                futures[key] = loading[key] = pool.submit(load, key)
        pending.append((batch, futures))
        if len(pending) > ahead:
            yield ready(pending.popleft())
    while pending:
        yield ready(pending.popleft())


class Caption(NamedTuple):
    """A post's caption cleaned once, for sorting and encoding, and its record should its image be usable."""

    text: str
    status: str
    reason: str


def _text(post: Post, bundle: Bundle) -> Caption:
    notes = [post.note] if post.note else []
    caption = caption_prefix(post.caption or "", bundle.max_length) if (post.caption or "").strip() else ""
    text = clean_caption(caption, bundle.cleaning) if caption else ""
    if not text:
        notes.append(EMPTY_CAPTION if (post.caption or "").strip() else NO_CAPTION)
    if not notes:
        return Caption(text, "ok", "ok")
    return Caption(text, "ok: " + "; ".join(notes), NOTE_CODES.get(notes[0], "note"))


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


@dataclass
class Prepared:
    """A batch ready for LXMERT: its records (those of posts that cannot be tagged already final), and for the
    others (`good`, positions in the batch) their cleaned captions, encoded text and region features."""

    where: list[int]  # each post's input position
    records: list[dict[str, Any]]
    good: list[int] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    own: list[frozenset[str]] = field(default_factory=list)  # the hashtags each good post already carries
    text: dict[str, np.ndarray] = field(default_factory=dict)
    regions: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


# A batch as grouping gives it: (input positions, posts, cleaned captions).
Batch = tuple[list[int], list[Post], list[Caption]]


def _prepare(
    where: list[int],
    batch: list[Post],
    captions: list[Caption],
    pixels: dict,
    load: Callable,
    bundle: Bundle,
    runner: Runner,
    memory: RegionMemory,
) -> Prepared:
    """The extractor stage of one batch: skip records for unusable posts, region features for the others (the
    extractor runs once per image not in `memory`; `pixels` holds what was loaded for them), captions encoded."""
    records: list[dict[str, Any]] = [{"id": post.id, "status": "", "reason": "", "hashtags": []} for post in batch]
    ready = Prepared(where, records)
    keys = [image_key(post) for post in batch]
    for key in dict.fromkeys(k for k in keys if k is not None and k not in pixels):
        if memory.get(key) is None:  # remembered when its load was skipped, forgotten since: load it now
            pixels[key] = load(key)
    good_keys = _usable(batch, keys, pixels, ready)
    if not ready.good:
        return ready
    ready.captions = [captions[i] for i in ready.good]
    ready.own = [own_hashtags(batch[i]) for i in ready.good]
    try:
        ready.regions = _regions(good_keys, pixels, runner, memory)
        ready.text = encode(bundle.tokenizer, [c.text for c in ready.captions], bundle.max_length)
    except Exception as e:  # ONNX Runtime failed on this batch: say so in its records, go on with the next
        _fail(ready, e)
    return ready


def _usable(batch: list[Post], keys: list[Path | None], pixels: dict, ready: Prepared) -> list[Path]:
    """Skip records for the posts without a usable caption or image; the others' positions go in ready.good.
    Returns the image of each post in ready.good."""
    good_keys: list[Path] = []
    for i, maybe_key in enumerate(keys):
        if batch[i].unusable:
            skip_record(ready.records[i], ImageError(batch[i].unusable, "caption_unreadable"))
        elif maybe_key is None:
            skip_record(ready.records[i], ImageError("no image named", "no_image"))
        elif isinstance(pixels.get(maybe_key), ImageError):
            skip_record(ready.records[i], pixels[maybe_key])
        else:
            ready.good.append(i)
            good_keys.append(maybe_key)
    return good_keys


def _regions(
    keys: list[Path], pixels: dict, runner: Runner, memory: RegionMemory
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each image's region features: remembered, precomputed, or from the extractor (once per image)."""
    found: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
    new: list[Path] = []
    for key in dict.fromkeys(keys):
        remembered, loaded = memory.get(key), pixels.get(key)
        if remembered is not None:
            found[key] = remembered
        elif isinstance(loaded, tuple):  # precomputed: the regions themselves
            found[key] = loaded
        else:
            new.append(key)
    if new:
        feats, boxes = runner.features(np.stack([pixels[key] for key in new]))
        for key, f, b in zip(new, feats, boxes, strict=True):
            found[key] = (f, b)
            memory.put(key, f, b)
    return [found[key] for key in keys]


def _fail(ready: Prepared, error: Exception) -> None:
    """Every post of `ready` still to be tagged gets an inference_failed record."""
    text = str(error).strip()
    reason = escape_undecodable(text.splitlines()[0][:300] if text else type(error).__name__)
    for i in ready.good:
        skip_record(ready.records[i], ImageError(f"inference failed: {reason}", "inference_failed"))
    ready.good = []


def make_picker(options: TagOptions, bundle: Bundle, runner: Runner) -> Picker:
    """How each post's hashtags are chosen from the runner's score columns (picking.py)."""
    labels = runner.labels(bundle.vocab)
    return Picker(
        labels,
        options.top_k,
        resolve_threshold(options.threshold, bundle, len(labels)),
        options.keep_own,
        hashtag_list(options.exclude),
        hashtag_list(options.always),
    )


def _score(ready: Prepared, bundle: Bundle, runner: Runner, picker: Picker, explain: bool = False) -> list[dict]:
    """The LXMERT stage of one batch: its records, each post's hashtags as `picker` chooses them; `explain` adds
    each hashtag's attribution record."""
    if not ready.good:
        return ready.records
    regions = ready.regions
    try:
        probs = runner.probabilities(ready.text, np.stack([f for f, _ in regions]), np.stack([b for _, b in regions]))
        probs = runner.blend(probs, [c.text for c in ready.captions])
    except Exception as e:  # as in _prepare: this batch's posts are reported, the run goes on
        _fail(ready, e)
        return ready.records
    labels = picker.labels
    records = ready.records
    vocab = set(bundle.vocab) if runner.candidates is not None else None
    for i, caption, own, scores, (feats, boxes) in zip(
        ready.good, ready.captions, ready.own, probs, regions, strict=True
    ):
        order = picker.columns(scores, own)
        records[i]["status"], records[i]["reason"] = caption.status, caption.reason
        chosen = [{"tag": labels[j], "score": round(float(scores[j]), 4)} for j in order]
        if vocab is not None:  # with --candidates, say which hashtags the model never trained on
            for entry, j in zip(chosen, order, strict=True):
                entry["seen"] = bool(j < len(bundle.vocab))
        if explain and order:
            whys = attribution.explain(runner, bundle, caption.text, feats, boxes, order)
            for entry, why in zip(chosen, whys, strict=True):
                entry["explanation"] = why.record()
        records[i]["hashtags"] = picker.always_entries(vocab) + chosen
    return records


def tag_loaded_posts(
    posts: list[Post], loaded: dict[Path, Loaded], bundle: Bundle, runner: Runner, options: TagOptions
) -> list[dict]:
    """Records for `posts`, in order, whose images were loaded elsewhere: `loaded` maps each post's image_key to
    what `loader` gave for it. Batched as tag_posts batches, in the caller's thread."""
    options = sized(options, runner)
    picker = make_picker(options, bundle, runner)
    load = loader(options, image_settings(bundle, options))  # only for an image `loaded` lacks
    memory = RegionMemory()
    records: dict[int, dict] = {}
    caption = partial(_text, bundle=bundle)
    for where, batch, captions in _grouped_batches(posts, options.batch_size or 1, options.length_window, caption):
        pixels = {key: loaded[key] for key in map(image_key, batch) if key is not None and key in loaded}
        ready = _prepare(where, batch, captions, pixels, load, bundle, runner, memory)
        done = _score(ready, bundle, runner, picker, options.explain)
        records.update(zip(where, done, strict=True))
    return [records[i] for i in range(len(posts))]
