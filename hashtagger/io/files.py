"""Files written so that a crash or a failure never leaves a half-written one in place, and files
identified by content. No torch.

atomic_open / atomic_write: a unique temporary file beside the target, flushed and fsynced, renamed over
it only when complete; write_claimed: the same for a claimed output (claims.claim_output), or through it when
it is special. atomic_folder: the same for a folder. sha256_file: a file's content digest.
user_cache: where hashtagger keeps caches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hashtagger.errors import OutputError
from hashtagger.io.claims import Claim, new_file_mode, umask


def user_cache(*parts: str) -> Path:
    """A folder of hashtagger's in the user's cache ($XDG_CACHE_HOME, else ~/.cache), not created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "hashtagger", *parts)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """A file object whose contents replace `path` when the block succeeds; on failure `path` is left
    as it was. The temporary name is unique, so concurrent writers never share one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode(path))  # mkstemp's 0600 would make the result private to its writer
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see atomic_open)."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_claimed(claim: Claim, data: bytes) -> None:
    """`data` into a claimed output written whole: atomically into a regular file, through into a special one
    (/dev/stdout, a FIFO: never replaced)."""
    assert claim.path is not None, "a whole file is written to a named output"
    if not claim.special:
        atomic_write(claim.path, data)
        return
    try:
        with open(claim.path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise OutputError(f"cannot write {claim.path}: {e.strerror or e}") from None


@contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield an empty folder beside `dest`; when the block succeeds its files are fsynced and it replaces
    `dest` (whatever is there: callers decide what may be replaced), when it fails it is deleted and `dest`
    is left as it was."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        raise OutputError(f"cannot write {dest}: {e.strerror or e}") from None
    try:
        work.chmod(0o777 & ~umask())  # mkdtemp's 0700 would make the result private to its writer
        yield work
        _fsync_files(work)
        if not (dest.exists() or dest.is_symlink()):
            work.rename(dest)
            return
        # The old one moves into a fresh folder of its own, so that no other name beside it is ever touched.
        trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        dest.rename(trash / dest.name)
        try:
            work.rename(dest)
        except BaseException:
            (trash / dest.name).rename(dest)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    except OSError as e:
        raise OutputError(f"cannot write {dest}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fsync_files(folder: Path) -> None:
    """Each file on disk, with the umask's mode: writers such as safetensors make theirs 0600."""
    mode = 0o666 & ~umask()
    for file in folder.rglob("*"):
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), mode)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks. Raises OSError when the file cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
