"""Prepared posts -> model batches, without torch: samples (cleaned text, label indices, image digest),
each post's split (looked up by image digest, as training stored it), and numpy batches of token ids and
region features. Training converts batches to tensors; evaluation feeds them to either backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from hashtagger.data.images import file_digest
from hashtagger.data.posts import CsvColumns, load_posts
from hashtagger.data.prep import Example, PrepOptions, prepare
from hashtagger.data.regions import FeatureStore
from hashtagger.data.text import encode
from hashtagger.errors import DataError, ImageError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "visual_feats", "visual_pos")
TEXT_INPUTS = MODEL_INPUTS[:3]


@dataclass
class Sample:
    text: str
    labels: list[int]
    digest: str


def make_batch(
    samples: list[Sample],
    tokenizer: Tokenizer,
    features: FeatureStore,
    num_labels: int,
    max_length: int,
    blank: str | Sequence[str | None] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays for one batch (MODEL_INPUTS and float32 `labels`); `blank` = "text" or "image" removes that
    stream from every post (the ablations), or, as a sequence, from each post as it says (modality dropout:
    training sees blanked posts exactly as the ablations make them)."""
    blanks = [blank] * len(samples) if blank is None or isinstance(blank, str) else list(blank)
    texts = ["" if b == "text" else s.text for s, b in zip(samples, blanks, strict=True)]
    batch = encode(tokenizer, texts, max_length)
    feats, boxes = zip(*(features.get(s.digest) for s in samples), strict=True)
    visual = np.stack(feats)
    visual[[b == "image" for b in blanks]] = 0.0
    batch["visual_feats"] = visual
    batch["visual_pos"] = np.stack(boxes)
    batch["labels"] = multi_hot(samples, num_labels)
    return batch


def multi_hot(samples: list[Sample], num_labels: int) -> np.ndarray:
    """[samples, num_labels] float32, 1 where a sample carries the hashtag."""
    labels = np.zeros((len(samples), num_labels), np.float32)
    for row, s in enumerate(samples):
        labels[row, s.labels] = 1.0
    return labels


def image_digests(examples: list[Example]) -> dict[Path, str | None]:
    """Each distinct image's content digest, hashed once; None where the file cannot be read."""
    digests: dict[Path, str | None] = {}
    for e in examples:
        if e.image not in digests:
            try:
                digests[e.image] = file_digest(e.image)
            except ImageError:
                digests[e.image] = None
    return digests


def samples_by_split(
    examples: list[Example], digests: list[str], split: dict[str, list[str]], vocab: list[str]
) -> dict[str, list[Sample]]:
    """The examples (with their image digests) as samples, in the split their image belongs to; labels outside
    `vocab` (hashtags held out of training) are left out."""
    where = {d: name for name, ds in split.items() for d in ds}
    label_index = {t: i for i, t in enumerate(vocab)}
    samples: dict[str, list[Sample]] = {name: [] for name in split}
    for e, d in zip(examples, digests, strict=True):
        if d in where:
            samples[where[d]].append(Sample(e.text, [label_index[t] for t in e.labels if t in label_index], d))
    return samples


class TrainedModel(Protocol):
    """What split_examples reads of a checkpoint or an exported bundle."""

    path: Path
    prep: PrepOptions
    vocab: list[str]

    @property
    def args(self) -> dict: ...  # the training run's settings: its data and columns

    @property
    def split(self) -> dict[str, list[str]] | None: ...  # read-only: a checkpoint's, never None, fits too


def split_examples(
    model: TrainedModel, which: str, data: str | None = None, columns: CsvColumns | None = None
) -> list[tuple[Example, str]]:
    """The model's `which` split (train / val / test) of `data` (default: the data it was trained on),
    prepared exactly as in training, with each post's image digest."""
    return examples_by_split(model, data, columns)[which]


def examples_by_split(
    model: TrainedModel, data: str | None = None, columns: CsvColumns | None = None
) -> dict[str, list[tuple[Example, str]]]:
    """Every split of `data` at once (split_examples for each, reading and hashing the posts once)."""
    args = model.args
    columns = columns or CsvColumns.from_flags(args)
    if not data:
        data = args.get("data")
        if not data:
            raise DataError(f"{model.path} does not record its training data; pass the data path")
        if not Path(data).exists():  # a path the user never typed: recorded on the machine that trained the model
            raise DataError(
                f"the model records its training data as {data}, which is not here: pass the posts it was trained "
                "on (hashtagger evaluate DATA ..., or --data DATA of export and adapt)"
            )
    prepared = prepare(load_posts(data, columns), model.prep, model.vocab)
    if model.split is None:
        raise DataError(f"{model.path} does not record its split (re-export it from its checkpoint)")
    where = {d: name for name, ds in model.split.items() for d in ds}
    digests = image_digests(prepared.examples)
    chosen: dict[str, list[tuple[Example, str]]] = {name: [] for name in model.split}
    for e in prepared.examples:
        d = digests[e.image]
        if d is not None and d in where:
            chosen[where[d]].append((e, d))
    return chosen
