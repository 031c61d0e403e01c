"""How much memory this process may use: the machine's, or less where a container or a job scheduler (Slurm,
Kubernetes, systemd) puts the process in a memory-limited cgroup. Ray sizes its object store from the machine's
memory alone, so a Ray started inside a 4 GB job on a 24 GB node would plan for 24 GB and be killed."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def physical_memory() -> int:
    """Bytes of RAM this machine has (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cgroup_limit(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> int | None:
    """The tightest memory limit of this process's cgroup and the groups above it, in bytes (cgroup v2's
    memory.max, v1's memory.limit_in_bytes), or None where there is none or it cannot be read. The groups above
    count: a job's limit is often set on the slice that holds the process's own group."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2 (mounted at the root, or beside v1 under unified/)
            places = [(root, "memory.max"), (root / "unified", "memory.max")]
        elif "memory" in controllers.split(","):
            places = [(root / "memory", "memory.limit_in_bytes")]
        else:
            continue
        for base, name in places:
            limits += _limits_up(base / path.lstrip("/"), base, name)
    return min(limits) if limits else None


def _limits_up(folder: Path, base: Path, name: str) -> list[int]:
    """The limits in `name` from `folder` up to `base`; "max" and v1's no-limit value (near 2**63) skipped."""
    found = []
    for group in [folder, *folder.parents]:
        try:
            text = (group / name).read_text().strip()
        except OSError:
            text = ""
        if text.isdigit() and int(text) < 1 << 60:
            found.append(int(text))
        if group == base:
            break
    return found


def memory_limit() -> int:
    """Bytes this process may use: the machine's memory, or its cgroup's limit where that is lower."""
    limits = [m for m in (physical_memory(), cgroup_limit()) if m]
    return min(limits) if limits else 0
