"""Parquet in (`tag posts.parquet`, the CSV's columns) and out (`-o out.parquet`, atomic, --resume), and the
[parquet] extra: plain `tag` never loads pyarrow, and a missing one is one line naming the extra."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hashtagger.data
from hashtagger.cli.main import app
from hashtagger.io import extras
from hashtagger.tagging.writers import read_records

pa = pytest.importorskip("pyarrow", reason="needs pyarrow (the [parquet] extra)")
pq = pytest.importorskip("pyarrow.parquet")


def cli(*args: str):
    result = CliRunner().invoke(app, ["tag", *map(str, args)], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr


def write_tables(posts: Path, folder: Path) -> tuple[Path, Path]:
    """The folder's posts as a CSV and as a Parquet file with the same rows (image paths relative to `folder`)."""
    rows = [
        {"post_id": f"p{i}", "image": f"images/{image.name}", "caption": image.with_suffix(".txt").read_text()}
        for i, image in enumerate(sorted(posts.glob("*.png")))
    ]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image in posts.glob("*.png"):
        shutil.copy(image, folder / "images" / image.name)
    with open(folder / "posts.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, ["post_id", "image", "caption"])
        out.writeheader()
        out.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), folder / "posts.parquet", row_group_size=7)
    return folder / "posts.csv", folder / "posts.parquet"


@pytest.fixture(scope="module")
def tables(posts_dir, tmp_path_factory) -> tuple[Path, Path]:
    some = tmp_path_factory.mktemp("some")
    for image in sorted(posts_dir.glob("*.png"))[:20]:
        shutil.copy(image, some / image.name)
        shutil.copy(image.with_suffix(".txt"), some / image.with_suffix(".txt").name)
    return write_tables(some, tmp_path_factory.mktemp("tables"))


def test_parquet_in_and_out_give_the_csv_records(tables, tiny_bundle, tmp_path):
    posts_csv, posts_parquet = tables
    code, _, err = cli(posts_csv, "--model", tiny_bundle, "--device", "cpu", "-o", tmp_path / "a.json")
    assert code == 0, err
    code, _, err = cli(posts_parquet, "--model", tiny_bundle, "--device", "cpu", "-o", tmp_path / "b.parquet")
    assert code == 0, err
    expected = read_records(tmp_path / "a.json", "json")
    assert [r["id"] for r in expected] == [f"p{i}" for i in range(20)]
    assert read_records(tmp_path / "b.parquet", "parquet") == expected
    assert not list(tmp_path.glob(".*.tmp"))  # written to a temporary name, renamed when complete


def test_parquet_output_resumes(tables, tiny_bundle, tmp_path):
    posts_csv, _ = tables
    first = tmp_path / "first.csv"
    first.write_text("".join(posts_csv.read_text().splitlines(keepends=True)[:9]))  # header + 8 posts
    (tmp_path / "images").symlink_to(posts_csv.parent / "images")
    out = tmp_path / "out.parquet"
    assert cli(first, "--model", tiny_bundle, "--device", "cpu", "-o", out)[0] == 0
    before = read_records(out, "parquet")
    code, _, err = cli(posts_csv, "--model", tiny_bundle, "--device", "cpu", "-o", out)
    assert code == 1 and "--resume" in err  # an existing output is never replaced unasked
    code, _, err = cli(posts_csv, "--model", tiny_bundle, "--device", "cpu", "-o", out, "--resume")
    assert code == 0, err
    assert "8 posts already done, 12 to go" in err
    after = read_records(out, "parquet")
    assert [r["id"] for r in after] == [f"p{i}" for i in range(20)]
    assert after[:8] == before


def test_parquet_is_not_streamed_to_stdout(tables, tiny_bundle):
    code, _, err = cli(tables[1], "--model", tiny_bundle, "--format", "parquet")
    assert code == 1 and "regular file" in err


def test_a_missing_pyarrow_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an import finds for a module that is not installed
    monkeypatch.delitem(sys.modules, "hashtagger.data.parquet", raising=False)  # imported again, without pyarrow
    monkeypatch.delattr(hashtagger.data, "parquet", raising=False)
    (tmp_path / "posts.parquet").write_bytes(b"PAR1")
    code, _, err = cli(tmp_path / "posts.parquet", "--model", tmp_path)
    assert code == 1
    assert err.strip() == (
        f"error: reading {tmp_path / 'posts.parquet'} needs the [parquet] extra (pyarrow not installed): "
        + extras.install_command("parquet")
    )


def test_plain_tag_never_loads_pyarrow_or_ray():
    code = "import sys, hashtagger.cli.main, hashtagger.tagging; print(sorted({'pyarrow', 'ray'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
