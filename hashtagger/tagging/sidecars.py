"""Hashtags written next to each image: `<image stem>.tags`, the file a folder of posts is read with (posts.py:
`a.jpg` + `a.txt` caption + `a.tags` hashtags), so that what a person accepted trains the next model. No torch.

    write_sidecar(Path("posts/a.jpg"), ["sandy", "nyc"], "append")   # -> "written", "appended", ...

A sidecar holds one `#hashtag` a line. Policies, for an image that already has one:
- skip       leave it as it is (the default: nothing the user wrote is replaced unasked);
- overwrite  replace it with the new hashtags;
- append     keep its hashtags and add the new ones not in it yet (no hashtag twice).
The caption's `.txt` is never touched, and each write is atomic (a temporary file renamed over the sidecar).
Hashtags are normalised as the readers do (lower case, no '#'), so a file read back gives the same list. Two
images with one stem in one folder (`a.jpg`, `a.png`) share `a.tags`, as they do when the folder is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from hashtagger.data.posts import CsvColumns, load_posts, read_caption_file
from hashtagger.data.text import parse_tag_list
from hashtagger.errors import DataError, OutputError
from hashtagger.io.files import atomic_write

SUFFIX = ".tags"
POLICIES = ("skip", "overwrite", "append")
# What write_sidecar did: a new sidecar, the old one replaced or extended, left as it was (skip policy, or
# nothing new to add), or nothing to write (no hashtags).
OUTCOMES = ("written", "replaced", "appended", "unchanged", "skipped", "empty")


def sidecar_path(image: str | Path) -> Path:
    """`posts/a.jpg` -> `posts/a.tags`."""
    return Path(image).with_suffix(SUFFIX)


def read_sidecar(image: str | Path) -> list[str] | None:
    """The hashtags of an image's sidecar as the folder reader parses them; None when it has none."""
    try:
        text, _ = read_caption_file(sidecar_path(image))  # capped like a caption file, never read whole
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"cannot read {sidecar_path(image)}: {e.strerror or e}") from None
    return parse_tag_list(text)


def write_sidecar(image: str | Path, hashtags: Sequence[str], policy: str = "skip") -> str:
    """Write `hashtags` to the image's `.tags` file under `policy` (skip / overwrite / append); one of OUTCOMES."""
    if policy not in POLICIES:
        raise DataError(f"unknown sidecar policy '{policy}' (skip, overwrite or append)")
    new = parse_tag_list(" ".join(hashtags))
    if not new:
        return "empty"
    old = read_sidecar(image)
    if old is not None and policy == "skip":
        return "skipped"
    tags = list(dict.fromkeys([*old, *new])) if old is not None and policy == "append" else new
    if tags == old:
        return "unchanged"
    atomic_write(sidecar_path(image), "".join(f"#{t}\n" for t in tags).encode())
    if old is None:
        return "written"
    return "appended" if policy == "append" else "replaced"


def write_sidecars(items: Iterable[tuple[Path, Sequence[str]]], policy: str = "skip") -> Counter:
    """write_sidecar for each (image, hashtags); an image named twice gets both lists, in order, in one write.
    Counts each outcome."""
    merged: dict[Path, list[str]] = {}
    for image, tags in items:
        merged.setdefault(Path(image), []).extend(tags)
    return Counter(write_sidecar(image, tags, policy) for image, tags in merged.items())


def sidecars_from(source: str | Path, policy: str = "skip", columns: CsvColumns | None = None) -> Counter:
    """Each post's hashtags of a CSV / Parquet file (e.g. the review sheet's saved CSV) written beside its image.
    Posts that name no image, or one that is not a file, get no sidecar (counted as "no image", "image not found")."""
    posts = load_posts(source, columns or CsvColumns())
    found = [p for p in posts if p.image is not None and p.image.is_file()]
    counts = write_sidecars(((p.image, p.hashtags) for p in found if p.image is not None), policy)
    counts["no image"] += sum(p.image is None for p in posts)
    counts["image not found"] += len(posts) - len(found) - counts["no image"]
    return +counts
