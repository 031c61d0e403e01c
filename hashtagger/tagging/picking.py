"""Which hashtags a post gets from its scores, no torch: the top k at or above the threshold, less the hashtags the
post already carries (unless --keep-own) and those of --exclude, after those of --always.

- Own hashtags: those written in the post's caption (case-insensitive) and in its `.tags` sidecar (a folder of
  posts) or its CSV / Parquet `hashtags` column. Suggesting them back tells the user nothing: on the MediaEval
  2016 tweets most posts that carry hashtags got one of their own in the top 3.
- --exclude: never suggested. --always: put first on every tagged post, as {"tag", "score": 1.0, "always": true}
  (1.0: the user's choice, not the model's probability; a number keeps CSV and Parquet columns numeric). They
  come on top of the top k, which is taken from the other hashtags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashtagger.data.posts import Post
from hashtagger.data.text import extract_hashtags, parse_tag_list
from hashtagger.errors import DataError

ALWAYS_SCORE = 1.0


def hashtag_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Hashtags as the options take them: 'a,b', '#a #b', '@file' (a file of them: one a line, or separated by
    commas or spaces) or a list; lower-cased, without '#', in order, each once."""
    if value is None:
        return ()
    if isinstance(value, str) and value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read the hashtags file {path}: {getattr(e, 'strerror', None) or e}") from None
    text = value if isinstance(value, str) else " ".join(value)
    return tuple(parse_tag_list(text))


def own_hashtags(post: Post) -> frozenset[str]:
    """The hashtags the post already carries: its caption's and its sidecar's (or hashtags column's)."""
    return frozenset(extract_hashtags(post.caption or "")) | frozenset(t.lower() for t in post.hashtags)


@dataclass
class Picker:
    labels: list[str]  # the hashtag of each score column
    top_k: int
    threshold: np.ndarray | None  # each column's cut-off; None: the whole top k
    keep_own: bool = False
    exclude: tuple[str, ...] = ()
    always: tuple[str, ...] = ()
    index: dict[str, int] = field(init=False)  # column of each hashtag
    banned: np.ndarray = field(init=False)  # columns never chosen: --exclude and --always

    def __post_init__(self) -> None:
        self.index = {tag: j for j, tag in enumerate(self.labels)}
        self.banned = np.zeros(len(self.labels), bool)
        self.banned[[self.index[t] for t in (*self.exclude, *self.always) if t in self.index]] = True

    def columns(self, scores: np.ndarray, own: Iterable[str] = ()) -> list[int]:
        """The chosen score columns, best first: the top k of the hashtags allowed, then those at or above the
        threshold (as without exclusions: the top k first, then the cut-off)."""
        banned = self.banned
        mine = [] if self.keep_own else [j for t in own if (j := self.index.get(t.lower())) is not None]
        if mine:
            banned = banned.copy()
            banned[mine] = True
        order = np.argsort(-scores, kind="stable")
        allowed = order[~banned[order]][: self.top_k]
        return [int(j) for j in allowed if self.threshold is None or scores[j] >= self.threshold[j]]

    def always_entries(self, vocab: set[str] | None = None) -> list[dict]:
        """--always's entries; `vocab` (with --candidates) adds whether each was seen in training."""
        entries: list[dict] = [{"tag": t, "score": ALWAYS_SCORE, "always": True} for t in self.always]
        if vocab is not None:
            for entry in entries:
                entry["seen"] = entry["tag"] in vocab
        return entries
