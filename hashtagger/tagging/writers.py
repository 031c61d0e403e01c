"""Writers for `tag`'s records: JSON ({"provenance", "records": [...]}, one record a line, in a file and on stdout
alike), JSONL (a provenance line, then one record a line), CSV (the provenance in a sidecar) and Parquet (in its
schema metadata) - provenance.py says what the provenance holds; the format registry that --resume reads outputs
back through (readers.py parses them).

Nothing already written is lost (outputs.claim_output decides up front what a run may touch):
- JSON, CSV and Parquet files are written to a temporary file in the output's folder and renamed over the output only
  when complete (os.replace is atomic), so an existing output is never left half-written.
- JSONL is appended and flushed record by record: a killed run keeps every record it finished, and a line
  cut short by the kill is dropped when the run is resumed. Replacing an existing JSONL (--overwrite)
  writes a temporary file that takes the output's place at the run's first tagged post.
- A run that tags nothing leaves an existing output as it was (`discard`).
- Non-regular outputs (/dev/stdout, a FIFO) are streamed into, never replaced.
- CSV cells that a spreadsheet would run as a formula (starting with = + - @, tab or carriage return) get a
  leading apostrophe, as OWASP recommends; so does a cell that starts with an apostrophe, so that reading
  an output back (--resume) can remove exactly one.

Resume and repeated ids: ids repeat when many CSV rows share an image. `done_ids` therefore counts each id;
an id found n times in the output skips the first n input posts with that id (records are written in input
order, so those are exactly the posts already done).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hashtagger.errors import OutputError
from hashtagger.io.claims import Claim, new_file_mode
from hashtagger.io.files import atomic_open, atomic_write
from hashtagger.tagging.provenance import JSON_TAIL, KEY, PARQUET_KEY, json_head, sidecar
from hashtagger.tagging.readers import CSV_COLUMNS, parse_csv, parse_json, parse_jsonl, read_parquet, text_records

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def output_format(output: Path | None, fmt: str | None) -> str:
    """--format wins; else the output file's extension; else (stdout) JSON."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise OutputError(f"unknown format '{fmt}' ({format_names()})")
        return fmt
    if output is None:
        return "json"
    if output.suffix.lower() not in EXTENSIONS:
        raise OutputError(f"cannot tell the format of {output} from its extension; pass --format {format_names()}")
    return EXTENSIONS[output.suffix.lower()]


def neutralise(cell: str) -> str:
    """A cell a spreadsheet will show as text, never run as a formula (OWASP CSV injection)."""
    return "'" + cell if cell.startswith((*FORMULA_STARTS, "'")) else cell


def csv_row(record: dict) -> list[str]:
    tags = record.get("hashtags") or []
    return [
        neutralise(record["id"]),
        neutralise(record["status"]),
        record.get("reason", ""),
        neutralise(" ".join("#" + t["tag"] for t in tags)),
        " ".join(f"{t['score']:.4f}" for t in tags),
    ]


def _json_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


class Writer:
    """write(record) for each record, then close(). abort(): the run failed, keep what can be resumed;
    discard(): the run produced nothing worth keeping, leave an existing output exactly as it was."""

    def write(self, record: dict) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """The run has tagged a post: from now on its output replaces the old one."""

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()

    def discard(self) -> None:
        self.abort()


class JsonlWriter(Writer):
    """Appends a line per record. Replacing an existing output writes `tmp` until commit() moves it over
    the output (the open file moves with it); a run that never commits leaves the old output."""

    def __init__(self, stream: IO[str], owned: bool, path: Path | None = None, tmp: Path | None = None):
        self.stream, self.owned, self.path, self.tmp = stream, owned, path, tmp
        self.start = stream.tell() if owned and stream.seekable() else 0

    @classmethod
    def open(cls, claim: Claim, resume: bool = False, provenance: dict | None = None) -> JsonlWriter:
        """The writer, its provenance line written first unless records are appended to an existing output."""
        writer = cls._open(claim, resume)
        if provenance is not None and not (resume and writer.start > 0):
            writer.write({KEY: provenance})
        return writer

    @classmethod
    def _open(cls, claim: Claim, resume: bool) -> JsonlWriter:
        path = claim.path
        if path is None:
            return cls(sys.stdout, owned=False)
        try:
            if claim.special:
                return cls(open(path, "a", encoding="utf-8", newline="\n"), owned=True)
            if claim.had_content and not resume:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                os.chmod(tmp, new_file_mode(path))
                return cls(os.fdopen(fd, "w", encoding="utf-8", newline="\n"), True, path, Path(tmp))
            if resume and path.exists():
                _drop_partial_line(path)
            return cls(open(path, "a" if resume else "w", encoding="utf-8", newline="\n"), owned=True, path=path)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None

    def write(self, record: dict) -> None:
        try:
            self.stream.write(_json_line(record) + "\n")  # one write per record, then flush: whole lines on disk
            self.stream.flush()
        except OSError as e:
            raise OutputError(f"cannot write {getattr(self.stream, 'name', 'the output')}: {e.strerror or e}") from None

    def commit(self) -> None:
        if self.tmp is not None:
            assert self.path is not None, "a temporary file is only made for a named output"
            try:
                os.fsync(self.stream.fileno())
                os.replace(self.tmp, self.path)
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
            self.tmp = None

    def close(self) -> None:
        self.commit()
        if self.owned:
            try:
                self.stream.close()
            except OSError as e:
                raise OutputError(f"cannot write {self.path or 'the output'}: {e.strerror or e}") from None

    def abort(self) -> None:
        """Interrupted: records already in the output stay (--resume continues); an uncommitted
        replacement is dropped and the old output kept."""
        if self.tmp is not None:
            _close_quietly(self.stream)
            self.tmp.unlink(missing_ok=True)
            self.tmp = None
        elif self.owned:
            _close_quietly(self.stream)

    def discard(self) -> None:
        if self.tmp is None and self.owned and self.path is not None:
            try:
                self.stream.flush()
                self.stream.truncate(self.start)  # what this run appended goes; what was there stays
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.abort()


class AtomicWriter(Writer):
    """Collects the records; close() writes old + new records to a temporary file and renames it over the output."""

    def __init__(self, path: Path, previous: list[dict], fmt: str, provenance: dict | None = None):
        self.path, self.records, self.fmt, self.provenance = path, list(previous), fmt, provenance

    def write(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        write_file(self.path, self.records, self.fmt, self.provenance)

    def abort(self) -> None:
        pass  # the output is only ever replaced by a complete file


def _dump_json(records: list[dict], f: IO[str], provenance: dict | None) -> None:
    f.write(json_head(provenance) + ",\n".join(map(_json_line, records)) + JSON_TAIL)


def _dump_jsonl(records: list[dict], f: IO[str], provenance: dict | None) -> None:
    if provenance is not None:
        f.write(_json_line({KEY: provenance}) + "\n")
    f.writelines(_json_line(r) + "\n" for r in records)


def _dump_csv(records: list[dict], f: IO[str], provenance: dict | None) -> None:
    out = csv.writer(f)
    out.writerow(CSV_COLUMNS)
    out.writerows(csv_row(r) for r in records)


# A whole file of records, with the provenance where the format keeps it (None: none).
FileWrite = Callable[[Path, list[dict], "dict | None"], None]


def _text_file(dump: Callable[[list[dict], IO[str], dict | None], None]) -> FileWrite:
    def write(path: Path, records: list[dict], provenance: dict | None) -> None:
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            dump(records, f, provenance)

    return write


def _write_csv(path: Path, records: list[dict], provenance: dict | None) -> None:
    """The CSV stays a plain table (a `#` comment line would be a row to pandas); its provenance goes beside it."""
    _text_file(_dump_csv)(path, records, None)
    if provenance is not None:
        atomic_write(sidecar(path), (json.dumps(provenance, ensure_ascii=False, indent=1) + "\n").encode())


def _write_parquet(path: Path, records: list[dict], provenance: dict | None) -> None:
    from hashtagger.data import parquet  # pyarrow only for a Parquet output

    with atomic_open(path, "wb") as binary:
        parquet.write_records(records, binary, {PARQUET_KEY: _json_line(provenance).encode()} if provenance else None)


def write_file(path: Path, records: list[dict], fmt: str, provenance: dict | None = None) -> None:
    """All of `records` as one file of format `fmt`, written to a temporary name and renamed over `path` when
    complete (a whole output, or one shard of a Ray run), with `provenance` where the format keeps it."""
    FORMATS[fmt].write(path, records, provenance)


class JsonStreamWriter(Writer):
    """JSON to stdout or a non-regular file, in a JSON file's layout: written as records come, valid once closed."""

    def __init__(self, stream: IO[str], provenance: dict | None = None):
        self.stream, self.count = stream, 0
        with _writing(stream):
            stream.write(json_head(provenance))
            stream.flush()

    def write(self, record: dict) -> None:
        with _writing(self.stream):
            self.stream.write(("" if self.count == 0 else ",\n") + _json_line(record))
            self.stream.flush()
        self.count += 1

    def close(self) -> None:
        with _writing(self.stream):
            self.stream.write(JSON_TAIL)
            self.stream.flush()
            _close_unless_std(self.stream)

    def abort(self) -> None:
        with suppress(OSError):  # left unterminated: a failed run's JSON must not parse as a complete one
            self.stream.flush()
            _close_unless_std(self.stream)


class CsvStreamWriter(Writer):
    """CSV to stdout or a non-regular file, row by row."""

    def __init__(self, stream: IO[str], provenance: dict | None = None):  # no sidecar beside a stream
        self.stream, self.out = stream, csv.writer(stream)
        with _writing(stream):
            self.out.writerow(CSV_COLUMNS)

    def write(self, record: dict) -> None:
        with _writing(self.stream):
            self.out.writerow(csv_row(record))
            self.stream.flush()

    def close(self) -> None:
        with _writing(self.stream):
            self.stream.flush()
            _close_unless_std(self.stream)

    def abort(self) -> None:
        with suppress(OSError):
            self.stream.flush()
            _close_unless_std(self.stream)


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _close_unless_std(stream: IO[str]) -> None:
    if stream not in (sys.stdout, sys.stderr):
        stream.close()


def _close_quietly(stream: IO[str]) -> None:
    """Close after a failure: a full disk fails the close's flush too, and the first error is the one to show."""
    with suppress(OSError):
        stream.close()


@contextmanager
def _writing(stream: IO[str]) -> Iterator[None]:
    """A stream's OSError (a full disk, a closed pipe) as the one-line OutputError."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write {getattr(stream, 'name', 'the output')}: {e.strerror or e}") from None


def open_writer(target: Claim | Path | None, fmt: str, resume: bool = False, provenance: dict | None = None) -> Writer:
    """The writer for a format; with resume, new records follow those already in the output. `target` is
    the run's claim on its output (a bare path: a new or replaceable file); `provenance` goes where the format
    keeps it (provenance.py; a CSV streamed to stdout has nowhere to put it)."""
    claim = target if isinstance(target, Claim) else Claim(target)
    return FORMATS[fmt].writer(FORMATS[fmt], claim, resume, provenance)


def _replace_when_complete(fmt: Format, claim: Claim, resume: bool, provenance: dict | None) -> Writer:
    """A regular file: collected and written whole. stdout, a FIFO or a device: streamed where the format can be."""
    if claim.path is None or claim.special:
        if fmt.stream is None:
            raise OutputError(f"{fmt.title} is written to a regular file, not streamed: pass -o out{fmt.extensions[0]}")
        # Owned by the writer, which closes it (a FIFO or a device: written through, never replaced).
        stream = sys.stdout if claim.path is None else open(claim.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        return fmt.stream(stream, provenance)
    previous = fmt.read(claim.path) if resume and _has_content(claim.path) else []
    return AtomicWriter(claim.path, previous, fmt.name, provenance)


def _append(fmt: Format, claim: Claim, resume: bool, provenance: dict | None) -> Writer:
    return JsonlWriter.open(claim, resume, provenance)


def read_records(path: Path, fmt: str) -> list[dict]:
    """The records of an existing output (none when it does not exist). JSONL: every complete line; JSON / CSV /
    Parquet: the whole (complete) file."""
    return FORMATS[fmt].read(path)


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


@dataclass(frozen=True)
class Format:
    """An output format of `tag`: everything the run, --resume, the Ray shards, review and the help need."""

    name: str  # --format's value
    title: str  # in messages
    extensions: tuple[str, ...]  # the first one is the format's own, the others are read as it too
    write: FileWrite  # a whole file, atomically (a complete output or one Ray shard), with its provenance
    read: Callable[[Path], list[dict]]  # an existing output's records ([] when absent), for --resume and review
    stream: Callable[[IO[str], dict | None], Writer] | None = None  # onto stdout or a pipe; None: regular files only
    writer: Callable[[Format, Claim, bool, dict | None], Writer] = _replace_when_complete  # opens a run's output
    appends: bool = False  # each record reaches the file when written: an interrupted run keeps them (--resume)
    nested: bool = True  # holds --explain's nested records
    shards: bool = False  # `tag --engine ray` may write its shards in it


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add an output format: --format, its extensions, --resume, the Ray shards and the help all read FORMATS."""
    FORMATS[fmt.name] = fmt
    return fmt


def format_names(names: Iterable[str] | None = None) -> str:
    """ "json, jsonl, csv or parquet", for help and messages."""
    names = list(FORMATS if names is None else names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def shard_formats() -> list[str]:
    """The formats `tag --engine ray` writes its shards in."""
    return [f.name for f in FORMATS.values() if f.shards]


register(Format("json", "JSON", (".json",), _text_file(_dump_json), text_records(parse_json), JsonStreamWriter))
register(
    Format(
        "jsonl",
        "JSONL",
        (".jsonl", ".ndjson"),
        _text_file(_dump_jsonl),
        text_records(parse_jsonl),
        writer=_append,
        appends=True,
        shards=True,
    )
)
register(Format("csv", "CSV", (".csv",), _write_csv, text_records(parse_csv), CsvStreamWriter, nested=False))
register(Format("parquet", "Parquet", (".parquet",), _write_parquet, read_parquet, nested=False, shards=True))
EXTENSIONS = {ext: f.name for f in FORMATS.values() for ext in f.extensions}
