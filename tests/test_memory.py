"""What a process may use (io/memory.py): the tightest cgroup limit above it, v1 or v2, where a container or a
job scheduler sets one; and the object store a Ray started here gets from it (issue 31: Ray sized its store from
the machine's memory and ignored a job's limit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashtagger.io.memory import cgroup_limit, memory_limit, physical_memory

GIB = 1 << 30
NO_LIMIT_V1 = "9223372036854771712"


def group(root: Path, path: str, name: str, value: str) -> None:
    folder = root / path
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(value + "\n")


def proc(tmp_path: Path, *lines: str) -> Path:
    file = tmp_path / "cgroup"
    file.write_text("\n".join(lines) + "\n")
    return file


def test_v1_the_tightest_of_the_group_and_the_groups_above(tmp_path):
    root = tmp_path / "fs"
    group(root, "memory", "memory.limit_in_bytes", NO_LIMIT_V1)
    group(root, "memory/slurm/job_7", "memory.limit_in_bytes", str(4 * GIB))
    group(root, "memory/slurm/job_7/step_0", "memory.limit_in_bytes", NO_LIMIT_V1)
    lines = ("5:cpu:/slurm/job_7/step_0", "4:memory:/slurm/job_7/step_0", "0::/")
    assert cgroup_limit(proc(tmp_path, *lines), root) == 4 * GIB


def test_v2_memory_max_and_max_meaning_none(tmp_path):
    root = tmp_path / "fs"
    group(root, "", "memory.max", "max")
    group(root, "kubepods/pod1", "memory.max", str(2 * GIB))
    group(root, "kubepods/pod1/c1", "memory.max", "max")
    assert cgroup_limit(proc(tmp_path, "0::/kubepods/pod1/c1"), root) == 2 * GIB
    assert cgroup_limit(proc(tmp_path, "0::/"), root) is None


def test_no_cgroup_file_or_no_memory_controller_is_no_limit(tmp_path):
    assert cgroup_limit(tmp_path / "missing", tmp_path) is None
    assert cgroup_limit(proc(tmp_path, "3:cpu,cpuacct:/x"), tmp_path) is None


def test_memory_limit_is_never_above_the_machine():
    assert 0 < memory_limit() <= physical_memory()


@pytest.mark.parametrize(
    ("limit", "store"), [(4 * GIB, int(0.2 * 4 * GIB)), (256 << 20, 128 << 20), (512 * GIB, 8 * GIB)]
)
def test_a_local_rays_store_is_a_share_of_the_limit(limit, store):
    from hashtagger.tagging.ray.engine import store_bytes

    assert store_bytes(limit) == store
