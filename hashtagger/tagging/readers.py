"""Reading `tag`'s outputs back, for --resume, review and the Ray shards: each format's records as the writers
(writers.py, whose format registry names these) wrote them, outputs from before provenance was recorded
included. No torch."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from hashtagger.errors import OutputError
from hashtagger.tagging.provenance import KEY

CSV_COLUMNS = ("id", "status", "reason", "hashtags", "scores")


def restore(cell: str) -> str:
    """A CSV cell as it was before writers.neutralise guarded it."""
    return cell[1:] if cell.startswith("'") else cell


def from_csv_row(row: dict) -> dict:
    tags = restore(row.get("hashtags") or "").split()
    scores = (row.get("scores") or "").split()
    return {
        "id": restore(row.get("id") or ""),
        "status": restore(row.get("status") or ""),
        "reason": row.get("reason", ""),
        "hashtags": [{"tag": t.lstrip("#"), "score": float(s)} for t, s in zip(tags, scores, strict=False)],
    }


def text_records(parse: Callable[[str, Path], list[dict]]) -> Callable[[Path], list[dict]]:
    def read(path: Path) -> list[dict]:
        try:
            with open(path, encoding="utf-8", newline="") as f:  # newline="": a \r inside a CSV cell stays a \r
                text = f.read()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            raise OutputError(f"cannot resume from {path}: {e}") from None
        return parse(text, path)

    return read


def parse_jsonl(text: str, path: Path) -> list[dict]:
    """Every complete record line after the provenance line; a line cut short by a kill is passed over."""
    records = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON keeps \u2028, \x85 in strings
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run: that post is tagged again
        if number == 1 and isinstance(record, dict) and set(record) == {KEY}:
            continue  # the provenance (provenance.py)
        if not is_tag_record(record):
            raise OutputError(f"cannot resume from {path}: line {number} is not a tag record; not a tag output")
        records.append(record)
    return records


def parse_json(text: str, path: Path) -> list[dict]:
    """The records of {"provenance", "records"}, or of the bare array written before provenance was recorded."""
    try:
        whole = json.loads(text)
    except ValueError as e:
        raise OutputError(f"cannot resume from {path}: not a complete JSON output ({e})") from None
    records = whole.get("records") if isinstance(whole, dict) else whole
    if not isinstance(records, list) or not all(map(is_tag_record, records)):
        raise OutputError(f"cannot resume from {path}: not a list of tag records")
    return records


def parse_csv(text: str, path: Path) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return []
    missing = [c for c in CSV_COLUMNS if c not in reader.fieldnames]
    if missing:  # an input CSV with an `id` column is not an output to extend
        raise OutputError(
            f"cannot resume from {path}: not a tag output (no column {', '.join(missing)}; "
            f"columns: {', '.join(reader.fieldnames)})"
        )
    try:
        return [from_csv_row(row) for row in reader]
    except ValueError as e:
        raise OutputError(f"cannot resume from {path}: bad scores ({e})") from None


def is_tag_record(record: object) -> bool:
    """A record `tag` writes: an object with a string id and status (what --resume relies on)."""
    return isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("status"), str)


def read_parquet(path: Path) -> list[dict]:
    if not path.exists():
        return []
    from hashtagger.data import parquet

    return parquet.read_records(path)
