"""Claiming an output file before a run does any work: it can be created, nobody else is writing it, and
an existing one is only replaced or extended when the user asked for that. No torch.

- Checked up front (a run that can only fail at the end must fail at the start): not a directory, its
  folder exists or can be created and is writable (the lock file is created there, where the temporary
  file will be), an existing output is a file we may write.
- One writer at a time: an exclusive advisory lock (flock) on `.<name>.lock` beside the output, holding
  the writer's pid. A second run is refused with that pid. The lock file is removed on release.
- Non-regular paths (`/dev/stdout`, `/dev/null`, a FIFO) are written through, never replaced or locked.
- Never an input: an output that is (or links to) a file the run reads, or lies inside a folder it reads
  (`Reads`), is refused, whatever the flags.
- The right content for the name: `suffixes` lists the extensions the command writes (explain: .png).

Every command claims its outputs here, before its work: `claim_output` for a file (tag, explain, evaluate's
report and plot, the review sheet), `claim_folder` for a folder written whole (export's bundle, a training
run, tag --engine ray's shards); `check_folder` is claim_folder's checks without the lock.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashtagger.errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: msvcrt locks a byte range instead
    fcntl = None  # type: ignore[assignment]
    import msvcrt


@dataclass
class Claim:
    path: Path | None  # None: stdout
    special: bool = False  # not a regular file: written through, in place
    had_content: bool = False  # a non-empty output existed when the run started


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic swap (not thread-safe, hence the fallback only)
    os.umask(mask)
    return mask


def new_file_mode(existing: Path | None = None) -> int:
    """Permission bits for a file about to replace `existing`: its own, else what open() would give."""
    if existing is not None:
        try:
            return stat.S_IMODE(os.stat(existing).st_mode)
        except OSError:
            pass
    return 0o666 & ~umask()


def is_special(path: Path) -> bool:
    """A path that must be written through: an existing non-regular file, or anything under /dev or /proc."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir():
            return True
    except OSError:
        pass
    return str(path.absolute()).startswith(("/dev/", "/proc/"))


@dataclass(frozen=True)
class Reads:
    """Something a run reads: a file, or a folder. Inside a folder only names ending in one of `suffixes`
    are read (None: everything inside it is an input, as in a model bundle)."""

    path: Path
    suffixes: tuple[str, ...] | None = None


Inputs = Iterable[Path | Reads | None]


def check_not_input(path: Path, inputs: Inputs, flag: str = "--output") -> None:
    """OutputError when `path` is one of the run's inputs, or a name the run reads inside an input folder:
    no flag makes a run write over what it reads."""
    target = _resolved(path)
    for given in inputs:
        if given is None:
            continue
        reads = given if isinstance(given, Reads) else Reads(Path(given))
        source = _resolved(reads.path)
        if target == source or _same_file(path, reads.path):
            raise OutputError(f"{path} is this run's input ({reads.path}); choose another {flag}")
        read = reads.suffixes is None or target.suffix.lower() in reads.suffixes
        if read and os.path.isdir(source) and target.is_relative_to(source):
            raise OutputError(f"{path} is inside this run's input {reads.path}; choose another {flag}")


def check_suffix(path: Path, suffixes: tuple[str, ...], what: str) -> None:
    """OutputError unless `path` ends in one of `suffixes` (the content the command writes); special files pass."""
    if suffixes and path.suffix.lower() not in suffixes and not is_special(path):
        names = " or ".join(f"*{s}" for s in suffixes)
        raise OutputError(f"{path}: {what}; name it {names}")


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte (a CSV's cell): the name as given
        return Path(path).absolute()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def claim_output(
    path: Path | None,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = True,
    inputs: Inputs = (),
    suffixes: tuple[str, ...] = (),
    what: str = "",
) -> Iterator[Claim]:
    """Check `path` can be written, lock it for this run, and refuse to touch a non-empty one unless
    `resume` (extend it) or `overwrite` (replace it); `resumable`: whether the refusal offers --resume (an
    output written whole, such as a report or a page, cannot be extended). `inputs`: what the run reads,
    never written (check_not_input); `suffixes`: the extensions allowed for what it writes, `what` saying
    what that is ("explain draws a PNG"). The lock is released when the block ends."""
    if path is not None:
        check_not_input(path, inputs)
        check_suffix(path, suffixes, what or f"this output is written as {' / '.join(suffixes)}")
    if resume and overwrite:
        raise OutputError(
            "--resume and --overwrite exclude each other: --resume keeps the output, --overwrite replaces it"
        )
    if path is None:
        if resume:
            raise OutputError("--resume needs --output (the file to continue)")
        if sys.stdout is None:  # started with its stdout closed (`>&-`)
            raise OutputError("standard output is closed; pass --output FILE")
        yield Claim(None)
        return
    if is_special(path):
        if resume:
            raise OutputError(f"--resume needs a regular file; {path} is not one")
        yield Claim(path, special=True)
        return
    if path.is_dir():
        raise OutputError(f"{path} is a directory; name a file, e.g. {path / 'tags.jsonl'}")
    if path.is_symlink():
        path = path.resolve()  # write the file the link names; the link itself stays
    created = _make_parent(path)
    try:
        with _locked(path):
            yield _check_existing(path, resume, overwrite, resumable)
    finally:
        _remove_if_empty(created, path)


def _make_parent(path: Path) -> list[Path]:
    """Create the output's missing folders; the ones created, deepest first (removed again if unused)."""
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot create {path}: {parent} is not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder of {path}: {e.strerror or e}") from None
    return missing


def _remove_if_empty(created: list[Path], path: Path) -> None:
    """A run that wrote nothing leaves no empty folders it made behind."""
    if path.exists():
        return
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _check_existing(path: Path, resume: bool, overwrite: bool, resumable: bool = True) -> Claim:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Claim(path)
    if size and not (resume or overwrite):
        offer = "pass --resume to add only the posts not in it yet, or --overwrite" if resumable else "pass --overwrite"
        raise OutputError(f"{path} already exists ({size:,} bytes); {offer} to replace it")
    if not os.access(path, os.W_OK):
        raise OutputError(f"{path} is read-only; make it writable or choose another --output")
    return Claim(path, had_content=size > 0)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `.<name>.lock` beside `path` for the block.

    The lock file is unlinked by its holder while still locked; a run that opened it just before must
    then see that the name now points elsewhere (or nowhere) and start again, so two runs can never both
    believe they hold the lock."""
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {lock.parent} is not writable ({e.strerror or e})") from None
        try:
            _lock_fd(fd)
        except BlockingIOError:
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"{path} is being written by another run (pid {holder}); wait for it to end or choose another --output"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it after we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _lock_fd(fd: int) -> None:
    """Exclusive, non-blocking; BlockingIOError when another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EDEADLK):
            raise BlockingIOError(str(e)) from None
        raise


def check_folder(
    path: Path,
    overwrite: bool = False,
    ours: Callable[[Path], bool] | None = None,
    inputs: Inputs = (),
    flag: str = "--output",
    force: str | None = "--overwrite",
) -> None:
    """A folder output (written whole, or filled by the run) may be created or replaced: absent, an empty
    folder, one `ours` recognises (a bundle, a run), or anything with `overwrite`; never an input nor a folder
    holding one; its parent writable. `flag`: the option naming the folder, `force`: the one that allows
    replacing it (None: nothing does)."""
    inputs = list(inputs)
    check_not_input(path, inputs, flag)
    for given in inputs:
        source = given.path if isinstance(given, Reads) else given
        if source is not None and _resolved(Path(source)).is_relative_to(_resolved(path)):
            raise OutputError(f"{path} holds this run's input {source}; choose another {flag}")
    offer = f", or pass {force} to replace it" if force else ""
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_dir():
            if not overwrite:
                raise OutputError(f"{path} exists and is not a folder; choose another {flag}{offer}")
        elif not overwrite and not (ours is not None and ours(path)) and _has_entries(path):
            raise OutputError(
                f"{path} is a folder that is not empty and not one this command wrote; choose another {flag}"
                + (f"{offer} and everything in it" if force else "")
            )
    parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not writable")


@contextmanager
def claim_folder(path: Path, overwrite: bool = False, **checks: Any) -> Iterator[Path]:
    """check_folder (its `ours`, `inputs`, `flag`, `force`), then the folder locked for the block
    (`.<name>.lock` beside it): one writer at a time."""
    path = Path(path)
    check_folder(path, overwrite, **checks)
    created = _make_parent(path)
    try:
        with _locked(path):
            yield path
    finally:
        _remove_if_empty(created, path)


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as listing:
            return next(listing, None) is not None
    except OSError as e:
        raise OutputError(f"cannot read {folder}: {e.strerror or e}") from None
