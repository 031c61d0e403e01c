"""Posts: loading from a folder, a CSV or a Parquet file (the preparation and the split: prep.py).

No torch here: `tag` reads posts with the same code that training does.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashtagger.data.text import (
    extract_hashtags,
    parse_tag_list,
)
from hashtagger.errors import DataError, HashtaggerError
from hashtagger.io.claims import Reads

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
SPLITS = ("train", "val", "test")
POST_SUFFIXES = (*sorted(IMAGE_EXTENSIONS), ".txt", ".tags")  # what a folder of posts is read from


@dataclass
class Post:
    id: str  # as the user gave it: the path relative to the folder, or the CSV's id / image value
    image: Path | None  # resolved path; None when the post names no image
    caption: str | None  # None when the post has no caption
    hashtags: list[str] = field(default_factory=list)  # lower-cased, without '#'
    note: str = ""  # a non-fatal problem met while reading, e.g. a caption that is not UTF-8
    unusable: str = ""  # why the post cannot be used at all, e.g. its caption file cannot be read


@dataclass(frozen=True)
class CsvColumns:
    image: str = "image"
    caption: str = "caption"
    hashtags: str = "hashtags"
    id: str | None = None  # None: 'post_id' or 'id' when present, else the image value

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> CsvColumns:
        """The columns train's --image-column, --caption-column and --hashtags-column name (keys image_column,
        ...; defaults for those not given)."""
        return cls(**{name: flags[f"{name}_column"] for name in COLUMN_FLAGS if f"{name}_column" in flags})

    def flags(self) -> dict[str, str]:
        """The inverse of from_flags (the id column has no flag)."""
        return {f"{name}_column": getattr(self, name) for name in COLUMN_FLAGS}


COLUMN_FLAGS = ("image", "caption", "hashtags")


CAPTION_NOT_UTF8 = "caption is not valid UTF-8; undecodable bytes replaced"

# Byte-order marks and their encodings; UTF-32's come first because UTF-32-LE's starts with UTF-16-LE's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


def read_caption_bytes(raw: bytes, final: bool = True) -> tuple[str, str]:
    """Decode a caption: UTF-8, or UTF-16 / UTF-32 when a byte-order mark says so. Bad bytes are replaced,
    not fatal, and reported in the note. `final=False`: `raw` is a file's beginning, a character it cuts in two
    is left out."""
    encoding = next((name for bom, name in BOMS if raw.startswith(bom)), "utf-8-sig")
    try:
        return codecs.getincrementaldecoder(encoding)().decode(raw, final), ""
    except UnicodeDecodeError:
        label = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        note = CAPTION_NOT_UTF8 if label == "UTF-8" else f"caption is not valid {label}; undecodable bytes replaced"
        return codecs.getincrementaldecoder(encoding)("replace").decode(raw, final), note


# A caption or hashtags file is read up to this many bytes, never whole: far beyond any platform's caption (and
# the model reads only its first max_length tokens), while a 2 GB file costs a megabyte.
MAX_CAPTION_BYTES = 1 << 20


def read_caption_file(path: Path, limit: int = MAX_CAPTION_BYTES) -> tuple[str, str]:
    """(text, note) of a caption file: its first `limit` bytes decoded, the note saying when there was more.
    OSError when it cannot be read."""
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) <= limit:
        return read_caption_bytes(raw)
    text, note = read_caption_bytes(raw[:limit], final=False)
    return text, "; ".join(filter(None, [f"caption file longer than {limit:,} bytes; its first {limit:,} read", note]))


def escape_undecodable(text: str) -> str:
    r"""Text that any output can hold. A file name's bytes that are not UTF-8 (which Python keeps as lone
    surrogates) become \xNN escapes: the file b"caf\xe9.jpg" gets the id "caf\xe9.jpg"."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _read_side_file(path: Path | None, what: str) -> tuple[str | None, str, str]:
    """(text, note, why unusable) of the caption / hashtags file beside an image; no text when there is none."""
    if path is None:
        return None, "", ""
    try:
        return (*read_caption_file(path), "")
    except OSError as e:
        return None, "", f"{what} file unreadable: {e.strerror or e}"


def posts_input(source: str | Path) -> Path | Reads:
    """What reading posts from `source` reads, for an output's claim: a folder's images and caption files, or
    the CSV / Parquet file."""
    return Reads(Path(source), POST_SUFFIXES) if os.path.isdir(source) else Path(source)


def table_images(source: str | Path, columns: CsvColumns | None = None) -> list[Path]:
    """The images a CSV or Parquet file names, for an output's claim: read as much as the file itself. [] for a
    folder or an image (posts_input covers them) and for a table that cannot be read (its reader says why)."""
    if Path(source).suffix.lower() not in (".csv", ".parquet") or not Path(source).is_file():
        return []
    try:
        return [post.image for post in load_posts(source, columns or CsvColumns()) if post.image is not None]
    except HashtaggerError:  # e.g. not the columns named, or no pyarrow
        return []


def load_posts(source: str | Path, columns: CsvColumns = CsvColumns()) -> list[Post]:
    """Posts from a directory (image + same-stem .txt / .tags, recursive), a CSV or a Parquet file, or one image
    (with its same-stem .txt / .tags)."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist")
    try:
        if source.is_dir():
            return directory_posts(source, walk_directory(source))
        if source.suffix.lower() in IMAGE_EXTENSIONS:
            return [image_post(source)]
        if source.suffix.lower() == ".csv":
            return _load_csv(source, columns)
        if source.suffix.lower() == ".parquet":
            return _load_parquet(source, columns)
    except OSError as e:
        raise DataError(f"cannot read {e.filename or source}: {e.strerror or e}") from None
    except csv.Error as e:
        raise DataError(f"{source} is not a readable CSV: {e}") from None
    raise DataError(f"{source} is neither an image, a directory nor a .csv or .parquet file")


def image_post(image: str | Path, caption: str | None = None) -> Post:
    """One image as a post, read as a folder's post is: `caption`, else its same-stem .txt; its .tags, if any."""
    image = Path(image)
    if image.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{image} is not an image ({', '.join(sorted(IMAGE_EXTENSIONS))})")

    def beside(suffix: str) -> str | None:
        return next(
            (n for n in (image.stem + suffix, image.stem + suffix.upper()) if (image.parent / n).is_file()), None
        )

    tags = beside(".tags")
    (post,) = directory_posts(image.parent, [(image.name, beside(".txt") if caption is None else None, tags)])
    if caption is not None:
        post.caption = caption
        post.hashtags = post.hashtags if tags else extract_hashtags(caption)
    return post


# A folder's post: its image, and the caption and hashtags files beside it (None: absent), relative to the folder.
DirectoryEntry = tuple[str, str | None, str | None]


def walk_directory(root: Path) -> Iterator[DirectoryEntry]:
    """The folder's posts as file names only, in the order of their image paths (relative, '/'-separated),
    one directory's listing in memory at a time: what `tag` and the shards of `tag --engine ray` read.

    A depth-first walk gives that order when a subfolder sorts as its name + '/': every path under it starts
    so. Symlinked folders are not entered (as pathlib's rglob); an unreadable subfolder or a link that cannot be
    followed (a loop) is skipped with a warning, an unreadable `root` is an OSError."""

    def visit(folder: Path, prefix: str) -> Iterator[DirectoryEntry]:
        # Names only, split by os.path (pathlib interns every name it parses: a table that grows with the folder).
        files, keys = [], []
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    if entry.is_dir(follow_symlinks=False):
                        keys.append((entry.name + "/", True))
                    elif _is_file(entry):
                        files.append(os.path.splitext(entry.name))
        except OSError as e:
            if not prefix:
                raise  # the folder given itself: the run cannot start
            _skipped(f"{root / prefix}: {e.strerror or e}; its posts are skipped")
            return
        # Caption and tags files by stem: `a.txt` or `a.TXT` beside `a.jpg`, the lower-case one first.
        side: dict[tuple[str, str], str] = {}
        for stem, suffix in sorted(files, key=lambda n: (n[1] != n[1].lower(), n)):
            if suffix.lower() in (".txt", ".tags"):
                side.setdefault((stem, suffix.lower()), prefix + stem + suffix)
            elif suffix.lower() in IMAGE_EXTENSIONS:
                keys.append((stem + suffix, False))
        del files
        for key, is_folder in sorted(keys):
            if is_folder:
                yield from visit(folder / key[:-1], prefix + key)
            else:
                stem = os.path.splitext(key)[0]
                yield prefix + key, side.get((stem, ".txt")), side.get((stem, ".tags"))

    return visit(root, "")


def _is_file(entry: os.DirEntry) -> bool:
    """A regular file, or a link to one; a link that loops or cannot be followed is skipped, not fatal."""
    try:
        return entry.is_file()
    except OSError as e:
        _skipped(f"{entry.path}: {e.strerror or e}; skipped")
        return False


def _skipped(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def directory_posts(root: Path, entries: Iterable[DirectoryEntry]) -> list[Post]:
    """The posts of `walk_directory` entries, their caption and hashtags files read."""
    posts = []
    for image_name, caption_name, tags_name in entries:
        image = root / image_name
        caption, note, unusable = _read_side_file(root / caption_name if caption_name else None, "caption")
        tags_text, _, tags_unusable = _read_side_file(root / tags_name if tags_name else None, "hashtags")
        hashtags = parse_tag_list(tags_text) if tags_text is not None else extract_hashtags(caption or "")
        post_id = escape_undecodable(image_name)
        posts.append(Post(post_id, image, caption, hashtags, note, unusable or tags_unusable))
    return posts


@dataclass(frozen=True)
class RowFormat:
    """How the rows of a table of posts (CSV or Parquet) become posts: the columns its header has."""

    folder: Path  # image paths are relative to the table's folder
    columns: CsvColumns
    id_column: str | None
    has_hashtags: bool

    @classmethod
    def check(cls, path: Path, header: Sequence[str], columns: CsvColumns) -> RowFormat:
        """DataError naming the missing column when the header lacks one the posts need."""
        for needed in (columns.image, columns.caption):
            if needed not in header:
                raise DataError(f"{path} has no column '{needed}' (columns: {', '.join(header) or 'none'})")
        id_column = columns.id or next((c for c in ("post_id", "id") if c in header), None)
        if id_column and id_column not in header:
            raise DataError(f"{path} has no column '{id_column}' (columns: {', '.join(header)})")
        return cls(path.parent, columns, id_column, columns.hashtags in header)

    def needed(self) -> list[str]:
        """The columns read from each row."""
        wanted = [self.columns.image, self.columns.caption, self.id_column]
        return list(dict.fromkeys(c for c in [*wanted, self.columns.hashtags if self.has_hashtags else None] if c))

    def post(self, row: Mapping[str, str | None]) -> Post:
        image_value = (row.get(self.columns.image) or "").strip()
        caption = row.get(self.columns.caption)
        caption = caption if caption and caption.strip() else None
        tag_value = row.get(self.columns.hashtags) if self.has_hashtags else None
        hashtags = parse_tag_list(tag_value) if tag_value and tag_value.strip() else extract_hashtags(caption or "")
        post_id = (row.get(self.id_column) or "").strip() if self.id_column else image_value
        image = (self.folder / image_value) if image_value else None
        return Post(post_id or image_value, image, caption, hashtags)


def _load_csv(path: Path, columns: CsvColumns) -> list[Post]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    text, note = read_caption_bytes(raw)
    if note:
        print(f"warning: {path}: {note.removeprefix('caption ')}", file=sys.stderr)
    with long_csv_cells():
        reader = csv.DictReader(io.StringIO(text, newline=""))  # not splitlines: it also splits at \x1e, \u2028...
        rows = RowFormat.check(path, reader.fieldnames or [], columns)
        return [rows.post(row) for row in reader]


@contextmanager
def long_csv_cells() -> Iterator[None]:
    """A caption may be longer than the csv module's default 128 KiB cell limit: lifted while our reader
    runs, then put back (it is the whole process's setting)."""
    before = csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _load_parquet(path: Path, columns: CsvColumns) -> list[Post]:
    from hashtagger.data import parquet  # pyarrow only when a Parquet file is read

    rows = RowFormat.check(path, parquet.column_names(path), columns)
    parquet.check_text_columns(path, rows.needed())
    return [rows.post(row) for row in parquet.read_rows(path, rows.needed())]
