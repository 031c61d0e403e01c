"""`hashtagger adapt`: learning from the hashtags a person accepted, without torch and in about a minute on a CPU.

The deep model stays as it is; the bundle's wide part (bundle/wide.py) is fitted again on the model's original
training split plus the accepted posts, so that what people accept moves the scores, and hashtags the model
never had (in accepted posts only) become new columns scored by the wide part alone. Refitting from the
original training posts, rather than updating on the accepted ones alone, is what keeps it from forgetting:
the old hashtags' F1@2 on the original validation split is measured before and after and reported.

Accepted posts are a folder or CSV as `train` reads them (image, caption, hashtags: the review sheet's CSV);
only their cleaned captions and hashtags are used. Each adapt starts again from the original training split:
give it every post accepted so far, not only the newest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hashtagger.bundle.format import read_bundle
from hashtagger.data.posts import CsvColumns, load_posts, posts_input, table_images
from hashtagger.data.prep import Example
from hashtagger.data.text import clean_caption
from hashtagger.errors import DataError
from hashtagger.evaluation.report import recorded_data
from hashtagger.evaluation.wide import WideFit, fit_wide


@dataclass
class Adapted:
    fit: WideFit
    accepted: int  # accepted posts with a caption and a hashtag, used
    new_tags: list[str]  # hashtags added beside the vocabulary
    seconds: float


def accepted_examples(path: str | Path, cleaning, columns: CsvColumns | None = None) -> list[Example]:
    """The accepted posts that can teach: a readable caption and at least one hashtag (all of them, in the
    vocabulary or not)."""
    posts = load_posts(path, columns or CsvColumns())
    examples = [
        Example(p, clean_caption(p.caption or "", cleaning), list(p.hashtags))
        for p in posts
        if p.hashtags and not p.unusable
    ]
    if not examples:
        raise DataError(f"{path}: no accepted post has a hashtag; nothing to learn from")
    return examples


def adapt(
    model: str | Path,
    accepted: str | Path | list[Example],
    output: str | Path,
    data: str | None = None,
    columns: CsvColumns | None = None,
    console: Console | None = None,
    force: bool = False,
) -> Adapted:
    """Write `output`: the bundle `model` with its wide part refitted on its training split (`data`: where the
    training data now lives) plus the accepted posts (a file or folder, or examples), their new hashtags added."""
    start = time.perf_counter()
    bundle = read_bundle(model)
    examples = accepted if isinstance(accepted, list) else accepted_examples(accepted, bundle.cleaning, columns)
    known = set(bundle.vocab)
    new_tags = list(dict.fromkeys(t for e in examples for t in e.labels if t not in known))
    # What it reads beside the bundle, never replaced by --force: the accepted posts, the training data.
    sources = [] if isinstance(accepted, list) else [accepted]
    sources += [s for s in [data or recorded_data(bundle.path)] if s is not None]
    inputs = [item for s in sources for item in (posts_input(s), *table_images(s, columns))]
    fit = fit_wide(bundle.path, output, data, examples, new_tags, console, force, inputs)
    return Adapted(fit, len(examples), new_tags, time.perf_counter() - start)
