"""What tagging is given: `TagOptions` (named like `hashtagger tag`'s options) and the threshold's resolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashtagger.bundle.format import Bundle
from hashtagger.data.posts import CsvColumns
from hashtagger.errors import DataError


@dataclass
class TagOptions:
    model: str | Path | None = None  # the bundle folder; None: locate.find_model (env, ./exported, installed)
    top_k: int = 5
    threshold: float | str | None = None  # keep only top-k tags scoring >= this; "auto": the bundle's tuned ones
    batch_size: int | None = None  # posts per forward pass; None: 32 on the CPU, 256 on a GPU (gpu.batch_size)
    length_window: int = 4  # most batches' worth of posts grouped by caption length before batching; 1: input order
    device: str = "auto"  # auto | cpu | cuda | tensorrt
    workers: int | None = None  # image-decoding threads; None: 2 on the CPU, one per core (<= 16) on a GPU
    threads: int | None = None  # ONNX Runtime intra-op threads; None: its default (one per core)
    # default | auto | model | int8 | fp16: which graphs of the bundle (runtime.choose_graphs). default: fp32 on the
    # CPU (dynamic int8 scores depend on how posts are batched, so --resume and --engine ray would not give the
    # same scores), fp16 on CUDA.
    variant: str = "default"
    max_pixels: int | None = None  # decompression-bomb limit; None: the bundle's
    decode_bytes: int = 256 << 20  # decoded pixels held at once by all workers (one larger image runs alone)
    features_dir: str | Path | None = None  # <image stem>.npz region features, for a bundle trained on precomputed ones
    columns: CsvColumns = field(default_factory=CsvColumns)
    # File of hashtags to rank beside the vocabulary: by a names-head bundle, or a linear one's companion (Tagger).
    candidates: str | Path | None = None
    explain: bool = False  # each hashtag's top words and regions (attribution.py; a forward pass per word and region)
    # Hashtags (a list, or 'a,b' / '@file' as picking.hashtag_list reads them): the post's own are left out of the
    # suggestions unless keep_own; exclude: never suggested; always: first on every tagged post (picking.py).
    keep_own: bool = False
    exclude: str | Sequence[str] = ()
    always: str | Sequence[str] = ()


def check_options(options: TagOptions) -> None:
    """DataError for a count out of range (the CLI checks the same with typer's ranges; the API here)."""
    counts = {
        "top_k": options.top_k,
        "batch_size": options.batch_size,
        "workers": options.workers,
        "threads": options.threads,
        "length_window": options.length_window,
        "decode_bytes": options.decode_bytes,
    }
    for name, value in counts.items():
        if value is None and name not in ("top_k", "length_window", "decode_bytes"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{name} must be a whole number of at least 1, not {value!r}")


def resolve_threshold(value: float | str | None, bundle: Bundle, labels: int | None = None) -> np.ndarray | None:
    """Each label's cut-off (None: keep the whole top k). A number applies to every hashtag; "auto" is the
    bundle's tuned cut-offs (per hashtag where export tuned one, else its global threshold). `labels`: how many
    columns the model scores (the vocabulary, then any --candidates, which take the global or given number)."""
    labels = len(bundle.vocab) if labels is None else labels
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value.lower() == "auto":
            tuned = bundle.cutoffs()
            return np.concatenate([tuned, np.full(labels - len(tuned), bundle.threshold)])
        try:
            value = float(value)
        except ValueError:
            raise DataError(f"--threshold must be a number between 0 and 1 or 'auto', not '{value}'") from None
    if not 0.0 <= value <= 1.0:
        raise DataError(f"--threshold must be between 0 and 1, not {value}")
    return np.full(labels, value)
