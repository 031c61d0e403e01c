"""The output folder of `tag --engine ray`: one file per shard of the input, each written whole, and a manifest
that names the model and the run. No torch.

    out/
      manifest.json            the run's provenance (provenance.py: the model, its digest, the hashtagger version,
                               options, when it started), input, post and shard counts, format
      shard-00000.jsonl        the records of posts 0 .. shard_size - 1, in input order (or .parquet)
      .shard-00001.jsonl.*.tmp a shard being written: renamed to its name only when complete

A shard file exists only complete (temporary name, then rename), so a rerun into the same folder skips the
shards whose files exist, removes the temporary files a killed run left, and tags the rest: a preempted job
costs at most the shards in flight. A folder written with another model, input, shard size, format or
options is refused, naming the model, since mixing them would give records that disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hashtagger.errors import OutputError
from hashtagger.io.claims import Inputs, claim_output
from hashtagger.io.files import atomic_write
from hashtagger.tagging.writers import read_records, write_file

MANIFEST = "manifest.json"


def shard_name(index: int, fmt: str) -> str:
    return f"shard-{index:05d}.{fmt}"


class ShardFolder:
    """`pending`: the manifest of a new folder, written with its first shard, so that a run that never tagged a
    post (Ray did not start, the cluster was wrong) leaves nothing that would refuse the corrected rerun."""

    def __init__(self, path: Path, fmt: str, pending: dict | None = None):
        self.path, self.fmt, self.pending = path, fmt, pending

    def done(self, count: int) -> set[int]:
        """Indices (of `count` shards) whose file is complete."""
        return {i for i in range(count) if (self.path / shard_name(i, self.fmt)).is_file()}

    def write(self, index: int, records: list[dict]) -> None:
        if self.pending is not None:
            atomic_write(self.path / MANIFEST, (json.dumps(self.pending, indent=1) + "\n").encode())
            self.pending = None
        write_file(self.path / shard_name(index, self.fmt), records, self.fmt)

    def remove_leftovers(self) -> int:
        """Delete the temporary files of shards a killed run was writing; how many there were."""
        leftovers = list(self.path.glob(".shard-*.tmp"))
        for tmp in leftovers:
            tmp.unlink(missing_ok=True)
        return len(leftovers)

    def records(self) -> Iterator[dict]:
        """Every record of the folder's complete shards, in input order (for tests and small outputs)."""
        for file in sorted(self.path.glob(f"shard-*.{self.fmt}")):
            yield from read_records(file, self.fmt)


@contextmanager
def shard_folder(path: Path, manifest: dict, inputs: Inputs = ()) -> Iterator[ShardFolder]:
    """The output folder, locked for this run, with `manifest` checked against the one there (or written with
    the first shard). `manifest` holds "model", "model_digest" and "format" and whatever else makes two runs'
    records differ; `inputs`: what the run reads, never written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; --engine ray writes a folder of shards (e.g. {path.with_suffix('')}/)")
    with claim_output(path / MANIFEST, resume=True, inputs=inputs):  # makes the folder; one run at a time
        old = _read_manifest(path)
        if old is None:
            others = [p.name for p in path.iterdir() if not p.name.startswith(f".{MANIFEST}.")]
            if others:
                raise OutputError(
                    f"{path} holds other files ({', '.join(sorted(others)[:3])}...) and no {MANIFEST}; "
                    "tag into an empty or new folder"
                )
            yield ShardFolder(path, manifest["format"], pending=manifest)
            return
        _check_same_run(path, old, manifest)
        yield ShardFolder(path, manifest["format"])


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OutputError(f"{path / MANIFEST} cannot be read ({e}); tag into another folder") from None
    if not isinstance(manifest, dict):
        raise OutputError(f"{path / MANIFEST} is not a shard manifest; tag into another folder")
    return manifest


def _check_same_run(path: Path, old: dict, new: dict) -> None:
    if old.get("model_digest") != new["model_digest"]:
        digest = str(old.get("model_digest", "unknown"))[:12]
        raise OutputError(
            f"{path} holds shards of another model ({old.get('model', 'unknown')}, bundle digest {digest}); "
            "tag into another --output, or remove the folder to start again"
        )
    same_model = ("model", "model_digest", "created")  # "created": when the first run started
    differ = sorted(k for k in new.keys() | old.keys() if k not in same_model and old.get(k) != new.get(k))
    if differ:
        changes = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ)
        raise OutputError(f"{path} holds shards of another run ({changes}); tag into another --output")
