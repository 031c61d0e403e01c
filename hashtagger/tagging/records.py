"""A tagged post's record and why a post was skipped: the reason codes, the notes of a post tagged with a
remark, and `TagSummary`, the counts of a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hashtagger.bundle import scope
from hashtagger.data.posts import CAPTION_NOT_UTF8, escape_undecodable
from hashtagger.errors import ImageError

NO_CAPTION = "no caption, tagged from the image alone"
EMPTY_CAPTION = "no words left in the caption after cleaning, tagged from the image alone"
# A record's `reason` when its post was tagged: "ok", or the code of its first note. Any other reason means
# the post was skipped: "no_image", "inference_failed", or an ImageError's code ("image_corrupt", ...).
NOTE_CODES = {NO_CAPTION: "no_caption", EMPTY_CAPTION: "caption_empty", CAPTION_NOT_UTF8: "caption_not_utf8"}
TAGGED = frozenset({"ok", "note", *NOTE_CODES.values()})


@dataclass
class TagSummary:
    tagged: int = 0  # records whose reason is in TAGGED
    skipped: Counter = field(default_factory=Counter)  # reason code -> posts
    notes: Counter = field(default_factory=Counter)  # tagged with a remark: its code ("no_caption", ...) -> posts
    seconds: float = 0.0
    posts_per_s: float = 0.0
    provider: str = ""
    variant: str = ""  # the graphs that ran, e.g. "model int8, extractor int8"
    resumed: int = 0  # posts found already done in the output (--resume)
    startup_s: float = 0.0  # from the call to the first record
    model: str = ""  # what the model knows, in one line (scope.describe)
    prior: list[str] = field(default_factory=list)  # the frequency prior's top 2 (scope.prior)
    prior_like: int = 0  # tagged posts whose top 2 was the prior's (scope.prior_like)
    candidates_by: str | None = None  # "candidates scored by the names-head companion model (...)" (Tagger)

    @property
    def processed(self) -> int:
        return self.tagged + sum(self.skipped.values())

    def count(self, record: dict) -> None:
        reason = record["reason"]
        if reason in TAGGED:
            self.tagged += 1
            self.prior_like += scope.prior_like([h["tag"] for h in record["hashtags"]], self.prior)
            if reason != "ok":
                self.notes[reason] += 1
        else:
            self.skipped[reason] += 1


def is_tagged(record: dict) -> bool:
    return record["reason"] in TAGGED


def skip_record(record: dict, error: ImageError) -> None:
    record["status"], record["reason"] = f"skipped: {escape_undecodable(str(error))}", error.code
