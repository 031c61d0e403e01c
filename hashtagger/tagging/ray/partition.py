"""The input of `tag --engine ray` cut into shards of consecutive posts, without holding the posts themselves.

The driver reads only what finds the shards' edges: a Parquet file's footer (row count), a CSV's row offsets
(one pass over its bytes, keeping one offset per shard), or a folder's listing (file names, compressed). A shard
says where its posts are; `read_shard` (in a Ray task) reads them into Posts with the code the single-process
`tag` uses, so both give the same ids, captions and notes. No torch.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hashtagger.data.posts import (
    CsvColumns,
    DirectoryEntry,
    Post,
    RowFormat,
    directory_posts,
    long_csv_cells,
    walk_directory,
)
from hashtagger.errors import DataError


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # input position of its first post
    count: int
    # Where its posts are: a Parquet file's (first row, end row), a CSV's (first byte, end byte) of its rows, or a
    # folder's entries (image, caption and hashtags file names), pickled and compressed.
    where: tuple


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # folder | csv | parquet
    rows: RowFormat | None = None  # CSV and Parquet: the columns that make a post
    header: tuple[str, ...] = ()  # CSV: the header row


def partition(path: str | Path, columns: CsvColumns, size: int) -> tuple[Source, list[Shard]]:
    """The source and its shards of `size` posts (the last one shorter); DataError for an unusable input."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    size = max(1, size)
    try:
        if path.is_dir():
            return Source(path, "folder"), _folder_shards(walk_directory(path), size)
        if path.suffix.lower() == ".parquet":
            return _parquet_shards(path, columns, size)
        if path.suffix.lower() == ".csv":
            return _csv_shards(path, columns, size)
    except OSError as e:
        raise DataError(f"cannot read {e.filename or path}: {e.strerror or e}") from None
    except csv.Error as e:
        raise DataError(f"{path} is not a readable CSV: {e}") from None
    raise DataError(f"{path} is neither a directory nor a .csv or .parquet file")


def _folder_shards(entries: Iterator[DirectoryEntry], size: int) -> list[Shard]:
    """Shards cut while the folder is walked; each holds its file names compressed (a tenth of the bytes or
    less: neighbouring names share most of their characters), since the driver holds every shard at once."""
    shards: list[Shard] = []
    while part := list(itertools.islice(entries, size)):
        start = shards[-1].start + shards[-1].count if shards else 0
        shards.append(Shard(len(shards), start, len(part), (zlib.compress(pickle.dumps(part)),)))
    return shards


def _parquet_shards(path: Path, columns: CsvColumns, size: int) -> tuple[Source, list[Shard]]:
    from hashtagger.data import parquet

    rows = RowFormat.check(path, parquet.column_names(path), columns)
    total = parquet.row_count(path)
    shards = [Shard(i, s, min(size, total - s), (s, min(s + size, total))) for i, s in enumerate(range(0, total, size))]
    return Source(path, "parquet", rows), shards


def _csv_shards(path: Path, columns: CsvColumns, size: int) -> tuple[Source, list[Shard]]:
    """One pass over the CSV, noting the byte offset after every `size`-th row: a shard's task then reads
    only its own bytes. UTF-8 only (with or without a byte-order mark): offsets into UTF-16 are not lines."""
    with open(path, "rb") as f:
        if f.read(4).startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"{path}: --engine ray reads UTF-8 CSVs; convert this UTF-16 / UTF-32 file first")
        f.seek(0)
        offset = 0

        def lines() -> Iterator[str]:
            # csv.reader asks for a line only when a row needs it, so `offset` is the end of the last row read.
            nonlocal offset
            for line in f:
                offset += len(line)
                yield line.decode("utf-8-sig" if offset == len(line) else "utf-8", errors="replace")

        with long_csv_cells():
            reader = csv.reader(lines())
            header = next(reader, [])
            rows = RowFormat.check(path, header, columns)
            shards: list[Shard] = []
            begin, count, total = offset, 0, 0
            for row in reader:
                if not row:  # a blank line is no post (csv.DictReader skips it too)
                    continue
                count += 1
                if count == size:
                    shards.append(Shard(len(shards), total, count, (begin, offset)))
                    begin, total, count = offset, total + count, 0
        if count:
            shards.append(Shard(len(shards), total, count, (begin, offset)))
    return Source(path, "csv", rows, tuple(header)), shards


def read_shard(source: Source, shard: Shard) -> list[Post]:
    """The shard's posts, read as `load_posts` reads the whole input."""
    if source.kind == "folder":
        return directory_posts(source.path, pickle.loads(zlib.decompress(shard.where[0])))
    assert source.rows is not None, "a table's source has its row format"
    if source.kind == "parquet":
        from hashtagger.data import parquet

        first, end = shard.where
        table = parquet.read_rows(source.path, source.rows.needed(), first, end)
        return [source.rows.post(row) for row in table]
    first, end = shard.where
    with open(source.path, "rb") as f:
        f.seek(first)
        text = f.read(end - first).decode("utf-8", errors="replace")
    with long_csv_cells():
        reader = csv.DictReader(io.StringIO(text, newline=""), fieldnames=list(source.header))
        return [source.rows.post(row) for row in reader]
