"""What produced an output, recorded in the output itself: the model (bundle path and digest), the hashtagger
version, the options that shape the records, the graphs and provider that ran, and when (UTC). No torch.

Where each format keeps it (writers.py):
- JSON       {"provenance": {...}, "records": [...]}, in a file and on stdout alike, one record a line
- JSONL      a first line {"provenance": {...}}, which readers skip (it has no "id"; --resume appends after it)
- CSV        a sidecar `<output>.provenance.json` (a `#` comment line would be a row to pandas and `train`)
- Parquet    the schema's metadata, key `hashtagger.provenance`
- --engine ray: the folder's manifest.json (ray/shards.py)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hashtagger.bundle.format import Bundle
from hashtagger.errors import OutputError
from hashtagger.io.files import sha256_file
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.picking import hashtag_list
from hashtagger.version import __version__

KEY = "provenance"
PARQUET_KEY = b"hashtagger.provenance"
SIDECAR_SUFFIX = ".provenance.json"


def bundle_digest(model: str | Path) -> str:
    """A bundle's identity: the SHA-256 of its manifest, which holds the SHA-256 of every one of its files."""
    return sha256_file(Path(model) / "manifest.json")


def sidecar(output: Path) -> Path:
    """`out.csv` -> `out.csv.provenance.json`."""
    return output.with_name(output.name + SIDECAR_SUFFIX)


def json_head(provenance: dict | None) -> str:
    """A JSON output up to its first record: the same on stdout and in a file, so that both parse alike."""
    head = "" if provenance is None else f'"{KEY}": {json.dumps(provenance, ensure_ascii=False)},\n '
    return "{" + head + '"records": [\n'


JSON_TAIL = "\n]}\n"


def read_provenance(path: Path, fmt: str) -> dict | None:
    """The provenance an output records; None for one written before provenance was recorded (or streamed)."""
    found: object = None
    if fmt == "parquet":
        from hashtagger.data import parquet  # pyarrow only for a Parquet output

        raw = parquet.metadata(path).get(PARQUET_KEY)
        found = json.loads(raw) if raw else None
    elif fmt == "csv":
        found = json.loads(sidecar(path).read_text(encoding="utf-8")) if sidecar(path).is_file() else None
    else:
        with open(path, encoding="utf-8") as f:
            head = f.readline() if fmt == "jsonl" else f.read()
        try:
            whole = json.loads(head)
        except ValueError:
            return None
        found = whole.get(KEY) if isinstance(whole, dict) else None
    return found if isinstance(found, dict) else None


def check_resumable(path: Path, fmt: str, run: dict[str, Any]) -> None:
    """OutputError when the output `path` records another model or other options than `run`, the provenance of
    the run that would add to it: the old records and the new would not be one run's, under one provenance. An
    output that records none (written before provenance was) resumes as before."""
    try:
        old = read_provenance(path, fmt)
    except (OSError, ValueError):
        old = None
    if old is None:
        return
    if old.get("model_digest") != run["model_digest"]:
        digest = str(old.get("model_digest", "unknown"))[:12]
        raise OutputError(
            f"{path} holds records of another model ({old.get('model', 'unknown')}, bundle digest {digest}); "
            "resume it with that model, or choose another --output"
        )
    before, now = old.get("options"), run["options"]
    before = before if isinstance(before, dict) else {}
    differ = sorted(k for k in now if k in before and str(before[k]) != str(now[k]))
    if differ:
        changes = "; ".join(f"{k}: {before[k]!r} there, {now[k]!r} now" for k in differ)
        raise OutputError(f"{path} holds records made with other options ({changes}); resume with theirs")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def recorded_options(options: TagOptions) -> dict[str, Any]:
    """The options that change what the records say (not how fast they come)."""
    return {
        "top_k": options.top_k,
        "threshold": options.threshold,
        "variant": options.variant,
        "keep_own": options.keep_own,
        "exclude": list(hashtag_list(options.exclude)),
        "always": list(hashtag_list(options.always)),
        "candidates": str(options.candidates) if options.candidates is not None else None,
        "explain": options.explain,
        "features_dir": str(options.features_dir) if options.features_dir is not None else None,
    }


def provenance(bundle: Bundle, options: TagOptions, graphs: str = "", provider: str = "") -> dict[str, Any]:
    """The output's provenance record; `graphs` and `provider`: what ran (Runner.variant, Runner.provider)."""
    record: dict[str, Any] = {
        "hashtagger": __version__,
        "model": str(Path(bundle.path).resolve()),
        "model_digest": bundle_digest(bundle.path),
        "options": recorded_options(options),
    }
    if graphs:
        record["graphs"] = graphs
    if provider:
        record["provider"] = provider
    record["created"] = utc_now()
    return record
