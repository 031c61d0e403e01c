"""The library's entry point, no torch: `Tagger`, an exported bundle opened once for any number of posts, whose
`tag` and `tag_many` give `Record`s (records.py) of `Tag`s. The pipeline behind it is in pipeline.py, the `tag` run
into a file in run.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from hashtagger.bundle import scope
from hashtagger.bundle.format import Bundle, for_candidates, read_bundle
from hashtagger.bundle.locate import ModelChoice, find_model
from hashtagger.bundle.runtime import Runner
from hashtagger.data.posts import Post, load_posts
from hashtagger.data.tagnames import read_candidates
from hashtagger.errors import BundleError, DataError, HashtaggerError, ImageError
from hashtagger.tagging.options import TagOptions, check_options, resolve_threshold
from hashtagger.tagging.picking import hashtag_list
from hashtagger.tagging.pipeline import Loaded, image_key, tag_loaded_posts, tag_posts
from hashtagger.tagging.provenance import provenance
from hashtagger.tagging.records import Record
from hashtagger.tagging.sidecars import read_sidecar


def open_runner(options: TagOptions) -> tuple[Bundle, Runner]:
    """The bundle and its ONNX Runtime sessions; BundleError / DeviceError when either cannot be used. With
    candidates, the bundle that ranks them: a linear-head bundle's names-head companion where it holds one."""
    bundle = read_bundle(find_model(options.model).path)
    if options.candidates is not None:
        bundle = for_candidates(bundle)
    has_extractor = "extractor" in bundle.info.graphs
    if not has_extractor and options.features_dir is None:
        raise BundleError(f"{bundle.path}: the model was trained on precomputed region features; pass --features-dir")
    if has_extractor and options.features_dir is not None:
        raise BundleError(
            f"{bundle.path}: the model computes its own region features; "
            "--features-dir is for precomputed-feature models"
        )
    return bundle, Runner.load(bundle, options.device, options.variant, options.threads, options.batch_size)


class Tagger:
    """An exported bundle opened once for any number of posts: its ONNX Runtime sessions on the device asked
    for (auto: CUDA when it really works, else the CPU). No torch.

        tagger = Tagger.open("exported", device="auto", top_k=5)
        tagger.tag("photo.jpg", "Huge waves hitting the shore tonight").tags   # [Tag("hurricane", 0.61), ...]
        tagger.tag(pil_image_or_bytes_or_array, "the caption")                 # an image in memory
        for record in tagger.tag_many("posts/"): ...                           # the records `hashtagger tag` writes

    With `candidates=FILE` (one hashtag a line) those hashtags are ranked beside the vocabulary: by the bundle's
    names head, or, for a linear-head bundle, by the names-head companion it holds (`companion` says which).
    """

    def __init__(self, options: TagOptions):
        check_options(options)
        self.source: ModelChoice = find_model(options.model)  # which bundle, and where it was found
        self.options = options = replace(options, model=self.source.path)
        # Read first: a bad candidates file fails before any graph is opened.
        candidates = read_candidates(Path(options.candidates)) if options.candidates is not None else None
        self.bundle, runner = open_runner(options)
        self._runner: Runner | None = runner
        self.known: list[str] = []  # candidates already in the vocabulary (scored as before)
        if candidates is not None:
            self.known = runner.add_candidates(self.bundle, candidates)
        resolve_threshold(options.threshold, self.bundle)  # a bad value fails here, not at the first post
        for listed in (options.exclude, options.always):
            hashtag_list(listed)  # and an unreadable @file

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise HashtaggerError("this Tagger is closed; open a new one")
        return self._runner

    def close(self) -> None:
        """Release the ONNX Runtime sessions and their memory now, not when the object is collected."""
        self._runner = None

    def __enter__(self) -> Tagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def companion(self) -> Path | None:
        """The names-head companion bundle that scores the candidates, or None (no candidates, or the opened
        bundle's own names head scores them)."""
        return self.bundle.path if self.bundle.path != self.source.path else None

    @property
    def candidates_note(self) -> str | None:
        """The summary's line for a run whose candidates the companion scored."""
        where = self.companion
        return None if where is None else f"candidates scored by the names-head companion model ({where})"

    @classmethod
    def open(cls, model: str | Path | None = None, device: str = "auto", **options: Any) -> Tagger:
        """`model`: a bundle folder; None: $HASHTAGGER_MODEL, ./exported or the installed default (locate.py).
        `options`: any other TagOptions field (top_k, threshold, batch_size, workers, threads, variant, ...)."""
        return cls(TagOptions(model=model, device=device, **options))

    @property
    def scope(self) -> str:
        """What the model knows, in one line: "model: default (250 hashtags of ...); train on your own posts ..."."""
        return scope.describe(self.bundle, self.source.is_default)

    @property
    def provider(self) -> str:
        """The ONNX Runtime provider that runs the model, e.g. CPUExecutionProvider."""
        return self.runner.provider

    def tag_many(
        self,
        posts: str | Path | Iterable[Post | tuple[Any, str | None]],
        on_scored: Callable[[int], None] | None = None,
    ) -> Iterator[Record]:
        """One Record per post, in input order: {"id", "status", "reason", "hashtags": [{"tag", "score"}]}.
        `posts`: a folder, CSV, Parquet file or image, or Posts, or (image, caption) pairs, read as they are
        needed; an image is a path, or in memory: a PIL image, encoded bytes or a uint8 array (id "<image N>").
        `on_scored(n)`: called as each batch of n posts is scored, for a progress bar."""
        if isinstance(posts, (str, Path)):
            posts = load_posts(posts, self.options.columns)
        in_memory: dict[Path, object] = {}  # filled as posts are read, before their images are loaded
        as_post = partial(_as_post, in_memory=in_memory)
        records = tag_posts(map(as_post, posts), self.bundle, self.runner, self.options, on_scored, in_memory)
        return (Record(r) for r in records)

    def provenance(self) -> dict[str, Any]:
        """What produced this Tagger's records (provenance.py): model digest, version, options, graphs, time."""
        return provenance(self.bundle, self.options, self.runner.variant, self.runner.provider)

    def tag_loaded(self, posts: list[Post], loaded: dict[Path, Loaded]) -> list[dict]:
        """Records for `posts`, in order, whose images were loaded elsewhere (tag --engine ray's decoding tasks):
        `loaded` maps each post's image_key to what `loader` gave for it. Batched as tag_many batches."""
        return tag_loaded_posts(posts, loaded, self.bundle, self.runner, self.options)

    def tag(self, image: Any, caption: str | None = None) -> Record:
        """One post's Record, as tag_many gives it (`.tags`: its hashtags, best first). `image`: a path, a PIL
        image, encoded bytes or a uint8 array. ImageError (with its `code`) when the image cannot be used."""
        (record,) = self.tag_many([(image, caption)])
        if not record.tagged:
            raise ImageError(record.status.removeprefix("skipped: "), record.reason)
        return record


def _as_post(item: Post | tuple[Any, str | None], in_memory: dict[Path, object]) -> Post:
    """A Post for each input; an image held in memory gets a key no file can have (/dev/null is no folder) and
    is put in `in_memory` under it."""
    if isinstance(item, Post):
        return item
    try:
        image, caption = item
    except (TypeError, ValueError):
        raise DataError(f"a post is a Post or an (image path, caption) pair, not {item!r:.80}") from None
    if not (caption is None or isinstance(caption, str)):
        raise DataError(f"a post is (image, caption text or None), not a {type(caption).__name__} caption")
    if isinstance(image, (str, Path)):
        try:
            own = read_sidecar(image) or []  # its .tags: hashtags the post carries
        except HashtaggerError:  # unreadable: the image itself will say what is wrong, in its record
            own = []
        return Post(str(image), Path(image), caption, own)
    # In memory (a PIL image, bytes, an array: images.memory_image says which it takes, in the post's record).
    post = Post(f"<image {len(in_memory)}>", Path(f"/dev/null/image-{len(in_memory)}"), caption)
    in_memory[image_key(post) or Path()] = image
    return post
