"""A tagged post's record and why a post was skipped: `Record` and `Tag`, the reason codes, the notes of a post
tagged with a remark, and `TagSummary`, the counts of a run."""

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


@dataclass(frozen=True)
class Tag:
    tag: str  # without '#'
    score: float  # the model's probability, rounded to 4 places (1.0 for an --always hashtag)
    always: bool = False  # put there by the `always` option, not chosen by the model
    seen: bool | None = None  # with --candidates: whether the model trained on it


class Record(dict):
    """One post's result, as `hashtagger tag` writes it and both Tagger.tag and Tagger.tag_many return it: the dict
    {"id", "status", "reason", "hashtags": [{"tag", "score", ...}]} (it goes to JSON as it is and equals the
    record read back), with attributes for code: record.tags (Tag objects), record.tagged, record.id, ..."""

    @property
    def id(self) -> str:
        return self["id"]

    @property
    def status(self) -> str:
        return self["status"]

    @property
    def reason(self) -> str:
        return self["reason"]

    @property
    def tagged(self) -> bool:
        return is_tagged(self)

    @property
    def tags(self) -> list[Tag]:
        """The hashtags, best first (any --always ones first)."""
        return [Tag(h["tag"], h["score"], h.get("always", False), h.get("seen")) for h in self.get("hashtags", [])]


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
    faster: str | None = None  # a long fp32 run on the CPU: the --variant auto that would have run int8 graphs
    sidecars: Counter = field(default_factory=Counter)  # tag --sidecars: what write_sidecar did -> posts

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
