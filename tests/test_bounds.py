"""Every run bounded, every failure one line (issue 31): memory that follows a budget, not the input (decoded
pixels in explain, caption bytes), and each input that showed a traceback (a full disk, a JSON list for a
bundle file, a garbage background, a closed stdout, a double Ctrl-C), plus the smaller cases: a folder's one
bad entry, Parquet columns of the wrong type, the Tagger API's ranges and its close()."""

from __future__ import annotations

import codecs
import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import helpers_images as imgs
import numpy as np
import pytest
from conftest import record_calls, unprivileged
from PIL import Image
from typer.testing import CliRunner

import hashtagger.cli.train as cli_train
import hashtagger.data.images as images
import hashtagger.tagging.writers as writers
from hashtagger.bundle.format import write_manifest
from hashtagger.cli.main import app
from hashtagger.data.images import DecodeBudget
from hashtagger.data.posts import MAX_CAPTION_BYTES, load_posts, read_caption_file
from hashtagger.errors import DataError, HashtaggerError
from hashtagger.io.files import atomic_folder
from hashtagger.tagging.tagger import Tagger


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr, result.exception


def one_line_failure(code: int, stderr: str, exc, status: int = 1) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == status and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    return lines[0]


def posts(root: Path, n: int = 4) -> Path:
    for i in range(n):
        imgs.good(root / f"p{i}.png", seed=i)
        (root / f"p{i}.txt").write_text(f"my cat {i}")
    return root


def copy_bundle(bundle: Path, to: Path) -> Path:
    shutil.copytree(bundle, to)
    return to


# Budgets


def test_explain_decodes_a_large_image_at_a_reduced_size(tiny_bundle, tmp_path, monkeypatch):
    """Issue 31 case 8: explain decoded at full size (a 9400 x 9400 PNG took 6 GB); now as `tag` decodes."""
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(big)
    held = record_calls(monkeypatch, DecodeBudget, "hold")
    from PIL.Image import Image as PilImage

    reduced = record_calls(monkeypatch, PilImage, "reduce")
    code, _, stderr, _ = run("explain", big, "--caption", "a cat", "--model", tiny_bundle, "-o", tmp_path / "w.png")
    assert code == 0, stderr
    assert len(held) == 2  # the model's pixels and the picture's, each decoded under a budget
    assert len(reduced) == 2  # both reduced right after decoding, never drawn at full size


def test_a_large_decode_gives_its_memory_back(tmp_path, monkeypatch):
    """Issue 31 case 8: each decoding thread's malloc arena kept its largest image (16 workers: 4.3 GB against
    1.0 GB for one; benchmarks/decode_memory.py); a decode of TRIM_BYTES or more now returns it when done."""
    calls = []
    monkeypatch.setattr(images, "release_freed", lambda: calls.append(1))
    Image.new("RGB", (3000, 3000)).save(tmp_path / "big.png")
    Image.new("RGB", (300, 300)).save(tmp_path / "small.png")
    images.load_image(tmp_path / "small.png", size=224)
    assert calls == []
    images.load_image(tmp_path / "big.png", size=224)
    assert calls == [1] and images.decoded_bytes(3000, 3000) >= images.TRIM_BYTES


def test_a_caption_file_is_read_up_to_its_cap(tmp_path):
    """Issue 31 case 9: a 2 GB caption cost 4.3 GB (4.5 GB: MemoryError); now at most MAX_CAPTION_BYTES."""
    huge = tmp_path / "p.txt"
    with open(huge, "wb") as f:
        f.write("é".encode() * (MAX_CAPTION_BYTES // 2) + b"#tail")
        f.truncate(3 << 30)  # 3 GB, sparse: costs no disk
    text, note = read_caption_file(huge)
    assert len(text.encode()) <= MAX_CAPTION_BYTES and set(text) == {"é"}
    assert note.startswith("caption file longer than 1,048,576 bytes")
    imgs.good(tmp_path / "p.png")
    (post,) = load_posts(tmp_path)
    assert post.caption == text and post.note == note


# Tracebacks shown to a user


def test_a_full_disk_during_a_jsonl_run_is_one_line_and_keeps_the_records(tiny_bundle, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    real_open = open

    class FullDisk(io.TextIOWrapper):
        """A file on a disk that fills after the provenance line and two records: writes and the close's flush fail
        with ENOSPC."""

        lines = 0

        def write(self, text):
            FullDisk.lines += 1
            if FullDisk.lines > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)

        def close(self):
            if FullDisk.lines > 3:  # the close's flush fails too, once
                FullDisk.lines = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            super().close()

    def full_open(path, mode="r", **kwargs):
        if Path(path) == out:
            return FullDisk(real_open(path, mode.replace("a", "ab").replace("w", "wb")[:2]), **kwargs)
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(writers, "open", full_open, raising=False)
    code, _, stderr, exc = run("tag", posts(tmp_path / "posts"), "--model", tiny_bundle, "-o", out)
    line = one_line_failure(code, stderr, exc)
    assert line == f"error: cannot write {out}: No space left on device"
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()[1:]] == ["p0.png", "p1.png"]


@pytest.mark.parametrize("name", ["bundle.json", "manifest.json", "hashtags.json"])
def test_a_bundle_file_holding_a_json_list_is_one_line(tiny_bundle, tmp_path, name):
    bundle = copy_bundle(tiny_bundle, tmp_path / "model")
    (bundle / name).write_text("[1, 2]")
    if name != "manifest.json":
        write_manifest(bundle)
    code, _, stderr, exc = run("tag", posts(tmp_path / "posts"), "--model", bundle)
    assert "bundle" in one_line_failure(code, stderr, exc) or name in stderr


def test_a_garbage_background_is_one_line(tiny_bundle, tmp_path):
    bundle = copy_bundle(tiny_bundle, tmp_path / "model")
    background = json.loads((bundle / "bundle.json").read_text())["background"]
    (bundle / background).write_bytes(b"PK\x03\x04 not a zip at all")
    write_manifest(bundle)
    image = imgs.good(tmp_path / "a.png")
    code, _, stderr, exc = run("explain", image, "--caption", "a cat", "--model", bundle, "-o", tmp_path / "w.png")
    assert "not a background file" in one_line_failure(code, stderr, exc)
    assert not (tmp_path / "w.png").exists()


def test_a_jsonl_id_that_is_a_list_under_resume_is_one_line(tiny_bundle, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": ["p0.png"], "status": "ok", "hashtags": []}\n')
    code, _, stderr, exc = run("tag", posts(tmp_path / "posts"), "--model", tiny_bundle, "-o", out, "--resume")
    assert "not a tag record" in one_line_failure(code, stderr, exc)


def test_a_closed_stdout_is_one_line(tiny_bundle, tmp_path):
    folder = posts(tmp_path / "posts")
    command = f"exec {sys.executable} -m hashtagger.cli.main tag '{folder}' --model '{tiny_bundle}' >&-"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: standard output is closed; pass --output FILE"


def test_a_second_ctrl_c_in_train_is_one_line_and_ignores_a_third(tmp_path, monkeypatch):
    def stopped_at_once(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hashtagger.training.train.train", stopped_at_once)
    before = signal.getsignal(signal.SIGINT)
    try:
        code, _, stderr, exc = run("train", tmp_path, "--output", tmp_path / "runs")
        line = one_line_failure(code, stderr, exc, status=130)
        assert "second Ctrl-C" in line
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # torch's exit handlers run uninterrupted
    finally:
        signal.signal(signal.SIGINT, before)
    assert cli_train


# Smaller ones


def test_a_looping_symlink_or_an_unreadable_subfolder_skips_only_itself(world, capsys):
    root = posts(world / "posts")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    locked = posts(root / "locked", 1)
    for path in [world, *world.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o666)
    locked.chmod(0)
    codecs.lookup("utf-8-sig")  # imported while root: 'nobody' cannot read the interpreter's folder here
    with unprivileged():
        loaded = load_posts(root)
    (root / "loop.jpg").unlink()  # the fixture's clean-up follows links
    assert [p.id for p in loaded] == [f"p{i}.png" for i in range(4)]
    warnings = capsys.readouterr().err
    assert "loop.jpg" in warnings and "locked" in warnings and "its posts are skipped" in warnings


def test_parquet_columns_of_the_wrong_type_are_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"image": [1, 2], "caption": ["a", "b"]}), path)
    with pytest.raises(DataError, match="column 'image' holds int64, not text"):
        load_posts(path)


def test_the_tagger_api_checks_its_ranges_and_closes(tiny_bundle):
    for bad in (dict(top_k=-3), dict(top_k=0), dict(batch_size=0), dict(workers=0), dict(threads=0)):
        with pytest.raises(DataError, match="must be a whole number of at least 1"):
            Tagger.open(tiny_bundle, device="cpu", **bad)
    with Tagger.open(tiny_bundle, device="cpu") as tagger:
        image = imgs.good(Path(tiny_bundle).parent / "api.png")
        assert len(tagger.tag(image, "a cat").tags) == 5
        for caption in (3, ["a cat"], b"a cat"):
            with pytest.raises(DataError, match="caption text or None"):
                tagger.tag(image, caption)  # type: ignore[arg-type]
    with pytest.raises(HashtaggerError, match="closed"):
        tagger.tag(image, "a cat")


def test_checkpoint_files_get_the_umask_mode(tmp_path):
    """safetensors writes its files 0600: a checkpoint folder's files get the umask's mode as any output."""
    from safetensors.numpy import save_file

    old = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "best") as work:
            save_file({"w": np.zeros(2, np.float32)}, str(work / "model.safetensors"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "best" / "model.safetensors").stat().st_mode) == 0o644
