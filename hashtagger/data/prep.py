"""The paper's data preparation (PrepOptions, prepare), the hashtag vocabulary and the split by image. No torch."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashtagger.data.posts import SPLITS, CsvColumns, Post
from hashtagger.data.text import (
    CleaningOptions,
    clean_caption,
    count_words,
    is_repost,
)
from hashtagger.errors import DataError


@dataclass(frozen=True)
class PrepOptions:
    """The paper's data preparation. Paper values in comments where our defaults differ."""

    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    vocab_size: int = 500
    stop_tags: tuple[str, ...] = ()  # the paper drops city names ("nyc", "newyork", ...) for its NY data
    min_tags: int = 1  # paper: 5; tweets carry 1-2 hashtags, 5 would empty the shared dataset
    min_words: int = 1  # paper: 5; short tweets are common, 5 would drop most of the shared dataset
    drop_reposts: bool = True
    drop_duplicate_texts: bool = True

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> PrepOptions:
        """The preparation `hashtagger train`'s flags ask for (keys named like them: keep_mentions for
        --keep-mentions; TrainConfig's fields): the one place where a --keep-X flag becomes a drop_X rule."""
        cleaning = CleaningOptions(**{rule: not flags[flag] for flag, rule in NEGATED_CLEANING.items()})
        return cls(
            cleaning=cleaning,
            vocab_size=flags["vocab_size"],
            stop_tags=tuple(t.strip() for t in flags["stop_tags"].split(",") if t.strip()),
            min_tags=flags["min_tags"],
            min_words=flags["min_words"],
            drop_reposts=not flags["keep_reposts"],
            drop_duplicate_texts=not flags["keep_reposts"],
        )


# train's flags that switch a cleaning rule, and the CleaningOptions field each one negates.
NEGATED_CLEANING = {
    "keep_mentions": "drop_mentions",
    "keep_urls": "drop_urls",
    "keep_non_alpha": "drop_non_alpha",
    "keep_trailing_hashtags": "drop_trailing_hashtags",
    "drop_inline_hashtags": "keep_inline_hashtag_words",
}


def upgrade_train_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A training run's saved settings (a checkpoint's `args`) named like train's flags. Runs saved before
    TrainConfig took its flags' names nest `prep` (PrepOptions, drop_* rules) and `columns` (CsvColumns):
    this is the one reader that maps them, so that such runs resume, evaluate and export as before. What no
    flag can say (CleaningOptions.lowercase, an id column) is left out: resuming checks the result against
    the checkpoint's own preparation."""
    if "prep" not in args and "columns" not in args:
        return dict(args)
    prep = args.get("prep") or {}
    cleaning = CleaningOptions(**prep.get("cleaning") or {})
    flat = {k: v for k, v in args.items() if k not in ("prep", "columns")}
    flat |= {flag: not getattr(cleaning, rule) for flag, rule in NEGATED_CLEANING.items()}
    flat |= {k: prep[k] for k in ("vocab_size", "min_tags", "min_words") if k in prep}
    flat |= {"stop_tags": ",".join(prep.get("stop_tags") or ()), "keep_reposts": not prep.get("drop_reposts", True)}
    return flat | CsvColumns(**args.get("columns") or {}).flags()


@dataclass
class Example:
    post: Post
    text: str  # the cleaned caption, as the tokenizer sees it
    labels: list[str]  # the post's hashtags that are in the vocabulary

    @property
    def image(self) -> Path:
        """The post's image: preparation keeps only posts that name one."""
        assert self.post.image is not None, "an Example is made only from a post with an image"
        return self.post.image


@dataclass
class Prepared:
    examples: list[Example]
    vocab: list[str]
    report: list[tuple[str, int]]  # (rule, posts it dropped); the first row is the number loaded


def build_vocab(hashtag_lists: list[list[str]], size: int, stop_tags: tuple[str, ...] = ()) -> list[str]:
    """The `size` most frequent hashtags, ties broken alphabetically so that the order is reproducible."""
    stop = {t.lower().lstrip("#") for t in stop_tags}
    counts = Counter(t for tags in hashtag_lists for t in tags if t not in stop)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def prepare(posts: list[Post], options: PrepOptions = PrepOptions(), vocab: list[str] | None = None) -> Prepared:
    """Apply the rules in the paper's order; `vocab` given (a trained model's) skips building one."""
    report: list[tuple[str, int]] = [("loaded", len(posts))]

    def keep(rule: str, items: list, predicate) -> list:
        kept = [x for x in items if predicate(x)]
        report.append((rule, len(items) - len(kept)))
        return kept

    items = keep("caption or tags file unreadable", posts, lambda p: not p.unusable)
    items = keep("no image named", items, lambda p: p.image is not None)
    if options.drop_reposts:
        items = keep("re-post (RT / MT)", items, lambda p: not is_repost(p.caption or ""))
    examples = [Example(p, clean_caption(p.caption or "", options.cleaning), p.hashtags) for p in items]
    if options.drop_duplicate_texts:
        seen: set[str] = set()

        def first_time(e: Example) -> bool:
            key = " ".join(e.text.lower().split())
            if not key:
                return True  # empty texts are not re-posts of each other
            new = key not in seen
            seen.add(key)
            return new

        examples = keep("duplicate text", examples, first_time)
    examples = keep(
        f"fewer than {options.min_words} words", examples, lambda e: count_words(e.text) >= options.min_words
    )
    if vocab is None:
        vocab = build_vocab([e.labels for e in examples], options.vocab_size, options.stop_tags)
    in_vocab = set(vocab)
    for e in examples:
        e.labels = [t for t in e.labels if t in in_vocab]
    examples = keep(
        f"fewer than {options.min_tags} hashtags in the vocabulary",
        examples,
        lambda e: len(e.labels) >= options.min_tags,
    )
    if not examples:
        raise DataError("no posts are left after data preparation: " + ", ".join(f"{r}: {n}" for r, n in report))
    return Prepared(examples, vocab, report)


def split_groups(
    group_of: list[str], seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[str]]:
    """Assign whole groups (one per image) to train/val/test so no image is in two splits.

    Groups are shuffled by `seed`; the test split takes the groups whose middle post falls in its share, so one
    big group cannot push the others out. Validation then takes groups from the rest, in the same order, up to
    its share of posts, passing over any group larger than a quarter of that share: model selection must see
    several images, and on re-shared data a single image can carry a tenth of all posts.
    """
    sizes = Counter(group_of)
    groups = sorted(sizes)
    random.Random(seed).shuffle(groups)
    total = len(group_of)
    test_from = (ratios[0] + ratios[1]) * total
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    filled = 0
    rest: list[str] = []
    for group in groups:
        (split["test"] if filled + sizes[group] / 2 > test_from else rest).append(group)
        filled += sizes[group]
    val_share = ratios[1] * total
    val_posts = 0
    for group in rest:
        fits = sizes[group] <= max(1.0, val_share / 4) and val_posts + sizes[group] / 2 <= val_share
        split["val" if fits else "train"].append(group)
        val_posts += sizes[group] if fits else 0
    # Few, very unequal groups can leave a split empty: give it the smallest group of the split with most groups.
    for name in SPLITS:
        donor = max(SPLITS, key=lambda n: len(split[n]))
        if not split[name] and len(split[donor]) > 1:
            smallest = min(split[donor], key=lambda g: sizes[g])
            split[donor].remove(smallest)
            split[name].append(smallest)
    return {name: sorted(keys) for name, keys in split.items()}
