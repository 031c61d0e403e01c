"""Parquet files of posts and of records (pyarrow, the [parquet] extra). Imported only when a Parquet file is
read or written, so that the core install and plain `tag` never load pyarrow. No torch.

Records become one row each: id, status, reason (strings) and hashtags, a list of {tag, score} (plus `seen`
when --candidates marked them, `always` for --always' hashtags); reading them back gives the same dicts the JSON
writers take.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from hashtagger.errors import DataError, OutputError
from hashtagger.io.extras import require

require("parquet", "reading or writing Parquet")
import pyarrow as pa  # noqa: E402  (after the check: a missing pyarrow is the one-line extra error)
import pyarrow.parquet as pq  # noqa: E402


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path} is not a readable Parquet file: {e}") from None


def column_names(path: Path) -> list[str]:
    """The file's columns, from its footer."""
    return list(_open(path).schema_arrow.names)


def row_count(path: Path) -> int:
    """Rows in the file, from its footer (no data read)."""
    return _open(path).metadata.num_rows


def check_text_columns(path: Path, columns: list[str]) -> None:
    """DataError naming the column when one of `columns` does not hold text (an id stored as a number, a
    hashtags list): read as strings they would turn into paths and captions no one wrote."""
    schema = _open(path).schema_arrow
    for name in columns:
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise DataError(f"{path}: column '{name}' holds {kind}, not text; store it as strings")


def read_rows(path: Path, columns: list[str], start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """Rows [start, stop) as dicts of strings (None for a null): only the row groups that hold them are read."""
    file = _open(path)
    stop = file.metadata.num_rows if stop is None else stop
    groups: list[int] = []  # the row groups overlapping [start, stop)
    first = offset = 0  # the first one's first row; the row group's first row
    for g in range(file.metadata.num_row_groups):
        rows = file.metadata.row_group(g).num_rows
        if offset + rows > start and offset < stop:
            if not groups:
                first = offset
            groups.append(g)
        offset += rows
    if not groups:
        return []
    table = file.read_row_groups(groups, columns=columns).slice(start - first, stop - start)
    return [{k: None if v is None else str(v) for k, v in row.items()} for row in table.to_pylist()]


def _schema(records: list[dict]) -> pa.Schema:
    tag = [pa.field("tag", pa.string()), pa.field("score", pa.float64())]
    for flag in ("seen", "always"):  # --candidates' and --always' marks, where there are any
        if any(flag in h for r in records for h in r["hashtags"]):
            tag.append(pa.field(flag, pa.bool_()))
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("status", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("hashtags", pa.list_(pa.struct(tag))),
        ]
    )


def write_records(records: list[dict], f: IO[bytes], metadata: dict[bytes, bytes] | None = None) -> None:
    """The records as one Parquet table into an open binary file; `metadata`: the schema's (the provenance)."""
    schema = _schema(records)
    pq.write_table(pa.Table.from_pylist(records, schema=schema.with_metadata(metadata) if metadata else schema), f)


def metadata(path: Path) -> dict[bytes, bytes]:
    """The schema metadata of a Parquet file, from its footer."""
    return dict(_open(path).schema_arrow.metadata or {})


def read_records(path: Path) -> list[dict]:
    """The records of a Parquet output, as the JSON writers would hold them."""
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"cannot resume from {path}: not a readable Parquet output ({e})") from None
    if rows and not {"id", "status", "reason", "hashtags"} <= rows[0].keys():
        raise OutputError(f"cannot resume from {path}: not a table of tag records (columns: {', '.join(rows[0])})")
    for row in rows:
        row["hashtags"] = [{k: v for k, v in h.items() if v is not None} for h in row["hashtags"] or []]
    return rows
