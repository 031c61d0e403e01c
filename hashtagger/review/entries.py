"""A `tag` run's output read back and joined with its posts: what the review sheet shows of each post. No torch.

A record holds the post's id, status, reason and hashtags; the image and the caption come from the posts the
run read (`--posts INPUT`, or the input a Ray output folder's manifest names), loaded by the same code `tag`
uses. Records are written in input order, so the n-th record with an id is the n-th post with it (ids repeat
when CSV rows share an image).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from hashtagger.data.posts import CsvColumns, Post, load_posts
from hashtagger.data.text import caption_prefix
from hashtagger.errors import DataError, OutputError
from hashtagger.tagging.ray.shards import MANIFEST, ShardFolder
from hashtagger.tagging.records import TAGGED
from hashtagger.tagging.writers import EXTENSIONS, FORMATS, output_format, read_records

# A caption longer than this many characters is cut (at a space) in the sheet, so that a post's bytes stay
# bounded; the model sees at most 128 tokens (about 2,000 characters), so the saved CSV trains the same.
MAX_CAPTION_CHARS = 4096
NOT_FOUND = "; post not found in the input"  # added to the status of a record whose post is not in the input


@dataclass
class Entry:
    """One post as the sheet shows it."""

    id: str
    image: Path | None  # None: the post names none, or it was not found in the posts
    caption: str
    status: str  # the record's words for people
    reason: str  # the record's code: "ok", a note's code, or why the post was skipped
    hashtags: list[tuple[str, float, bool | None]] = field(default_factory=list)  # tag, score, seen (None: unknown)

    @property
    def skipped(self) -> bool:
        return self.reason not in TAGGED


@dataclass
class RunOutput:
    records: list[dict]
    input: Path | None  # the posts the run read, where the output says (a Ray folder's manifest)


def read_output(path: str | Path) -> RunOutput:
    """A tag output file (JSON / JSONL / CSV / Parquet, by extension) or a Ray output folder of shards."""
    path = Path(path)
    if path.is_dir():
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path} is a folder without {MANIFEST}: not a `tag --engine ray` output") from None
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path / MANIFEST}: {e}") from None
        records = list(ShardFolder(path, manifest.get("format", "jsonl")).records())
        return RunOutput(records, Path(manifest["input"]) if manifest.get("input") else None)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    if path.suffix.lower() not in EXTENSIONS:
        own = ", ".join(f.extensions[0] for f in FORMATS.values())
        raise DataError(f"{path} is not a tag output: {own} or a --engine ray folder")
    try:
        return RunOutput(read_records(path, output_format(path, None)), None)
    except OutputError as e:
        raise DataError(str(e).replace("cannot resume from", "cannot read")) from None


def join(records: list[dict], posts: list[Post]) -> list[Entry]:
    """Each record with its post (by id, in order); a record whose post is missing keeps its id alone."""
    waiting: dict[str, deque[Post]] = defaultdict(deque)
    for each in posts:
        waiting[each.id].append(each)
    entries = []
    for record in records:
        queue = waiting.get(str(record.get("id", "")))
        post: Post | None = queue.popleft() if queue else None
        tags = [(str(t["tag"]), float(t["score"]), t.get("seen")) for t in record.get("hashtags") or []]
        caption = caption_prefix(post.caption or "", MAX_CAPTION_CHARS // 16) if post else ""
        entries.append(
            Entry(
                id=str(record.get("id", "")),
                image=post.image if post else None,
                caption=caption,
                status=str(record.get("status", "")) + ("" if post else NOT_FOUND),
                reason=str(record.get("reason", "")),
                hashtags=tags,
            )
        )
    return entries


def load_entries(output: str | Path, posts: str | Path | None = None, columns: CsvColumns | None = None) -> list[Entry]:
    """The entries of a run's output; `posts`: the run's input (default: the one a Ray folder names), read with
    `columns` (a CSV's or Parquet file's)."""
    run = read_output(output)
    source = Path(posts) if posts is not None else run.input
    if source is None:
        raise DataError(f"{output} does not say which posts it tagged; pass --posts, the folder or file given to tag")
    if not run.records:
        raise DataError(f"{output} holds no records")
    entries = join(run.records, load_posts(source, columns or CsvColumns()))
    if all(e.status.endswith(NOT_FOUND) for e in entries):
        raise DataError(f"none of the posts of {output} is in {source}; pass --posts, the INPUT given to tag")
    return entries
