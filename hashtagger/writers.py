"""Writers for `tag`'s records: JSON (array), JSONL (one record a line) and CSV; reading an output back for --resume.

Nothing already written is lost:
- JSON and CSV files are written to a temporary file in the output's folder and renamed over the output only
  when complete (os.replace is atomic), so an existing output is never left half-written.
- JSONL is appended and flushed record by record: a killed run keeps every record it finished, and a line
  cut short by the kill is dropped when the run is resumed.

Resume and repeated ids: ids repeat when many CSV rows share an image. `done_ids` therefore counts each id;
an id found n times in the output skips the first n input posts with that id (records are written in input
order, so those are exactly the posts already done).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from .errors import OutputError
from .files import atomic_open

FORMATS = ("json", "jsonl", "csv")
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
CSV_COLUMNS = ("id", "status", "reason", "hashtags", "scores")


def output_format(output: Path | None, fmt: str | None) -> str:
    """--format wins; else the output file's extension; else (stdout) JSON."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise OutputError(f"unknown format '{fmt}' (json, jsonl or csv)")
        return fmt
    if output is None:
        return "json"
    if output.suffix.lower() not in EXTENSIONS:
        raise OutputError(f"cannot tell the format of {output} from its extension; pass --format json, jsonl or csv")
    return EXTENSIONS[output.suffix.lower()]


def csv_row(record: dict) -> list[str]:
    tags = record.get("hashtags") or []
    return [
        record["id"],
        record["status"],
        record.get("reason", ""),
        " ".join("#" + t["tag"] for t in tags),
        " ".join(f"{t['score']:.4f}" for t in tags),
    ]


def _from_csv_row(row: dict) -> dict:
    tags = (row.get("hashtags") or "").split()
    scores = (row.get("scores") or "").split()
    return {
        "id": row.get("id", ""),
        "status": row.get("status", ""),
        "reason": row.get("reason", ""),
        "hashtags": [{"tag": t.lstrip("#"), "score": float(s)} for t, s in zip(tags, scores, strict=False)],
    }


def _json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


class Writer:
    """write(record) for each record, then close(); abort() leaves any existing output as it was."""

    def write(self, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()


class JsonlWriter(Writer):
    def __init__(self, stream: IO[str], owned: bool):
        self.stream, self.owned = stream, owned

    @classmethod
    def open(cls, path: Path | None, resume: bool = False) -> JsonlWriter:
        if path is None:
            return cls(sys.stdout, owned=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if resume and path.exists():
                _drop_partial_line(path)
            return cls(open(path, "a" if resume else "w", encoding="utf-8", newline="\n"), owned=True)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None

    def write(self, record: dict) -> None:
        try:
            self.stream.write(_json_line(record) + "\n")  # one write per record, then flush: whole lines on disk
            self.stream.flush()
        except OSError as e:
            raise OutputError(f"cannot write {getattr(self.stream, 'name', 'the output')}: {e.strerror or e}") from None

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class _AtomicWriter(Writer):
    """Collects the records; close() writes old + new records to a temporary file and renames it over the output."""

    def __init__(self, path: Path, previous: list[dict]):
        self.path, self.records = path, list(previous)

    def write(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        with atomic_open(self.path, "w", encoding="utf-8", newline="") as f:
            self.dump(self.records, f)

    def abort(self) -> None:
        pass  # the output is only ever replaced by a complete file

    @staticmethod
    def dump(records: list[dict], f: IO[str]) -> None:
        raise NotImplementedError


class JsonWriter(_AtomicWriter):
    @staticmethod
    def dump(records: list[dict], f: IO[str]) -> None:
        json.dump(records, f, ensure_ascii=False, indent=1)
        f.write("\n")


class CsvWriter(_AtomicWriter):
    @staticmethod
    def dump(records: list[dict], f: IO[str]) -> None:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        out.writerows(csv_row(r) for r in records)


class JsonStreamWriter(Writer):
    """JSON to stdout: the array is written as records come, and is valid once closed."""

    def __init__(self, stream: IO[str]):
        self.stream, self.count = stream, 0

    def write(self, record: dict) -> None:
        self.stream.write(("[\n " if self.count == 0 else ",\n ") + _json_line(record))
        self.stream.flush()
        self.count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()

    def abort(self) -> None:
        self.stream.flush()  # left unterminated: a failed run's JSON must not parse as a complete one


class CsvStreamWriter(Writer):
    """CSV to stdout, row by row."""

    def __init__(self, stream: IO[str]):
        self.stream, self.out = stream, csv.writer(stream)
        self.out.writerow(CSV_COLUMNS)

    def write(self, record: dict) -> None:
        self.out.writerow(csv_row(record))
        self.stream.flush()


def open_writer(path: Path | None, fmt: str, resume: bool = False) -> Writer:
    """The writer for a format; with resume, new records follow those already in the output."""
    if fmt == "jsonl":
        return JsonlWriter.open(path, resume)
    if path is None:
        return JsonStreamWriter(sys.stdout) if fmt == "json" else CsvStreamWriter(sys.stdout)
    previous = read_records(path, fmt) if resume and path.exists() else []
    return (JsonWriter if fmt == "json" else CsvWriter)(path, previous)


def read_records(path: Path, fmt: str) -> list[dict]:
    """The records of an existing output. JSONL: every complete line; JSON / CSV: the whole (complete) file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise OutputError(f"cannot resume from {path}: {e}") from None
    if fmt == "jsonl":
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed run: that post is tagged again
            if isinstance(record, dict) and "id" in record:
                records.append(record)
        return records
    if fmt == "json":
        try:
            records = json.loads(text)
        except ValueError as e:
            raise OutputError(f"cannot resume from {path}: not a complete JSON output ({e})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "id" in r for r in records):
            raise OutputError(f"cannot resume from {path}: not a list of tag records")
        return records
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return []
    if "id" not in reader.fieldnames:
        raise OutputError(f"cannot resume from {path}: no 'id' column (columns: {', '.join(reader.fieldnames)})")
    try:
        return [_from_csv_row(row) for row in reader]
    except ValueError as e:
        raise OutputError(f"cannot resume from {path}: bad scores ({e})") from None


def done_ids(path: Path, fmt: str) -> Counter:
    """How many times each id is already in the output (see the module docstring on repeated ids)."""
    return Counter(r["id"] for r in read_records(path, fmt))


def remaining(ids: Iterable[str], done: Counter) -> list[int]:
    """Input positions still to tag: an id done n times skips its first n occurrences."""
    left = Counter(done)
    todo = []
    for i, post_id in enumerate(ids):
        if left[post_id] > 0:
            left[post_id] -= 1
        else:
            todo.append(i)
    return todo


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a killed run left without its newline, so that appended records start on their own line."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
