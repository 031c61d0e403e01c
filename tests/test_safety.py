"""Nothing lost, ever (issue 13): each test here is a destructive case seen on main, and fails on the
code that had it. Outputs, locks, exports, file names, limits and bundles."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import helpers_images as imgs
import numpy as np
import pytest
from conftest import interrupt_tagging_after, make_posts, unprivileged
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import hashtagger.tagging.pipeline as pipeline
import hashtagger.tagging.run as tag_run
from hashtagger.bundle.format import write_manifest
from hashtagger.cli.main import app
from hashtagger.data.images import DecodeBudget, load_image, load_pixels
from hashtagger.data.posts import escape_undecodable, load_posts, read_caption_bytes
from hashtagger.data.text import CHARS_PER_TOKEN
from hashtagger.errors import DataError, OutputError
from hashtagger.export.build import ExportOptions, export
from hashtagger.io.claims import claim_output, lock_path
from hashtagger.io.files import atomic_folder
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import tag_posts
from hashtagger.tagging.provenance import sidecar
from hashtagger.tagging.run import tag, usable_cores
from hashtagger.tagging.tagger import open_runner
from hashtagger.tagging.writers import neutralise, read_records


def run(*args: str):
    result = CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr, result.exception


def quiet() -> Console:
    return Console(file=io.StringIO(), width=300)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture()
def posts(tmp_path) -> Path:
    """Six good posts."""
    root = tmp_path / "posts"
    for i in range(6):
        imgs.good(root / f"p{i}.png", imgs.RED if i % 2 else imgs.BLUE, seed=i)
        (root / f"p{i}.txt").write_text(f"my cat number {i} #redcat")
    return root


@pytest.fixture()
def bad_posts(tmp_path) -> Path:
    """Posts none of which can be tagged."""
    root = tmp_path / "bad"
    imgs.zero_byte(root / "a.jpg")
    imgs.not_an_image(root / "b.png")
    return root


def no_work(monkeypatch):
    """Fail the test if the run gets as far as loading posts."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run started working before checking its output")

    monkeypatch.setattr(tag_run, "load_posts", refuse)


# 1. export --output


def test_export_refuses_a_folder_that_is_not_a_bundle(tiny_run, tmp_path):
    precious = tmp_path / "photos"
    (precious / "holiday").mkdir(parents=True)
    (precious / "holiday" / "a.jpg").write_bytes(b"not a bundle")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    for target in (precious, a_file):
        code, _, stderr, _ = run("export", tiny_run / "best", "--output", target)
        assert code == 1 and len(errors(stderr)) == 1 and "--force" in stderr, stderr
    assert (precious / "holiday" / "a.jpg").read_bytes() == b"not a bundle"
    assert a_file.read_text() == "keep me"


def test_export_replaces_a_bundle_an_empty_folder_or_with_force_anything(tiny_run, tiny_bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    (old / "stale.txt").write_text("from an older export")
    (tmp_path / ".old.old").mkdir()  # a user's folder with the name the old code used for its swap
    (tmp_path / ".old.old" / "mine.txt").write_text("mine")
    export(tiny_run / "best", ExportOptions(output=str(old)), quiet())
    assert not (old / "stale.txt").exists() and (old / "bundle.json").is_file()
    assert (tmp_path / ".old.old" / "mine.txt").read_text() == "mine"

    not_a_bundle = tmp_path / "junk"
    not_a_bundle.mkdir()
    (not_a_bundle / "x").write_text("x")
    with atomic_folder(not_a_bundle) as work:  # what export --force does once it has built the bundle
        (work / "bundle.json").write_text("{}")
    assert sorted(p.name for p in not_a_bundle.iterdir()) == ["bundle.json"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with atomic_folder(a_file) as work:
        (work / "bundle.json").write_text("{}")
    assert a_file.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".old.old", "a-file", "junk", "old"]  # nothing left over


# 2. outputs checked before any work


def test_unwritable_outputs_fail_before_any_work(posts, tiny_bundle, tmp_path, world, monkeypatch):
    no_work(monkeypatch)
    (tmp_path / "a-file").write_text("x")
    for output in (tmp_path / "dir.json", tmp_path / "a-file" / "out.json"):
        (tmp_path / "dir.json").mkdir(exist_ok=True)
        with pytest.raises(OutputError):
            tag(posts, output, None, TagOptions(model=tiny_bundle), console=quiet())
    code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle, "-o", tmp_path / "dir.json")
    assert code == 1 and errors(stderr) == [
        f"error: {tmp_path / 'dir.json'} is a directory; name a file, e.g. {tmp_path / 'dir.json' / 'tags.jsonl'}"
    ]
    locked = world / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    with unprivileged(), pytest.raises(OutputError, match="not writable"):
        tag(posts, locked / "out.csv", None, TagOptions(model=tiny_bundle), console=quiet())
    assert list(locked.iterdir()) == []


def test_missing_folders_are_made_and_special_files_written_through(posts, tiny_bundle, tmp_path):
    out = tmp_path / "new" / "deeper" / "out.json"
    summary = tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    assert summary.tagged == 6 and len(read_records(out, "json")) == 6

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    tag(posts, fifo, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # written into, not replaced by a file
    assert len(list(csv.reader(io.StringIO(received[0])))) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "pipe.csv", "posts"]  # no lock, no temporary file
    tag(posts, Path("/dev/null"), "json", TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# 3. never truncate without being asked


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_an_existing_output_needs_resume_or_overwrite(posts, tiny_bundle, tmp_path, monkeypatch, fmt):
    out = tmp_path / f"out.{fmt}"
    tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    before = out.read_bytes()
    code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle, "-o", out)
    assert code == 1 and len(errors(stderr)) == 1 and "--resume" in stderr and "--overwrite" in stderr
    assert out.read_bytes() == before

    interrupt_tagging_after(monkeypatch, 0)  # the run is stopped before it has tagged anything
    with pytest.raises(KeyboardInterrupt):
        tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet(), overwrite=True)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("posts", sidecar(out).name)] == [out.name]
    monkeypatch.undo()
    code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle, "-o", out, "--overwrite")
    assert code == 0, stderr
    assert len(read_records(out, fmt)) == 6
    code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle, "-o", out, "--overwrite", "--resume")
    assert code == 1 and "exclude each other" in stderr


# 4. one writer at a time


def test_a_second_writer_is_refused_with_the_holders_pid(posts, tiny_bundle, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    with claim_output(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle, "-o", out)
        assert code == 1 and errors(stderr) == [
            f"error: {out} is being written by another run (pid {os.getpid()}); wait for it to end or "
            "choose another --output"
        ]
        assert not out.exists()
    tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    assert len(read_records(out, "jsonl")) == 6 and not lock_path(out).exists()


def test_the_lock_survives_its_file_being_replaced_between_open_and_lock(tmp_path):
    """The holder unlinks the lock file on release: a run that opened the old file must not think it holds
    the lock while a third run locks the new one."""
    out = tmp_path / "out.jsonl"
    first = claim_output(out)
    first.__enter__()
    stale = os.open(lock_path(out), os.O_RDWR)  # a racing run opened the file, then lost the CPU
    first.__exit__(None, None, None)
    # a third run locks the new file; the racing one must not think it holds the lock too
    with claim_output(out), pytest.raises(OutputError, match="being written"), claim_output(out):
        pass
    os.close(stale)


# 5. a run that tags nothing keeps the old file


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_run_that_tags_nothing_keeps_the_old_output(posts, bad_posts, tiny_bundle, tmp_path, fmt, flag):
    out = tmp_path / f"out.{fmt}"
    tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
    before = out.read_bytes()
    code, _, stderr, _ = run("tag", bad_posts, "--model", tiny_bundle, "-o", out, flag)
    assert code == 1 and len(errors(stderr)) == 1 and "none of the 2 posts could be tagged" in stderr
    assert out.read_bytes() == before
    provenance = [sidecar(out).name] if fmt == "csv" else []  # the first run's, beside its CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad", "posts", out.name, *provenance])


# 6. file names that are not UTF-8, captions that cannot be read


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_file_names_that_are_not_utf8_get_escaped_ids(tiny_bundle, tmp_path, fmt):
    root = tmp_path / "posts"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9 \xff")
    imgs.good(root / f"{name}.png")
    (root / f"{name}.txt").write_text("my cat #redcat")
    imgs.good(root / "plain.png")
    out = tmp_path / f"out.{fmt}"
    code, _, stderr, _ = run("tag", root, "--model", tiny_bundle, "-o", out)
    assert code == 0, stderr
    records = read_records(out, fmt)
    assert [r["id"] for r in records] == ["caf\\xe9 \\xff.png", "plain.png"]
    assert records[0]["status"] == "ok"
    code, _, stderr, _ = run("tag", root, "--model", tiny_bundle, "-o", out, "--resume")  # the ids match again
    assert code == 0 and "2 posts already done, 0 to go" in stderr


def test_an_unreadable_caption_is_that_posts_status(posts, tiny_bundle, world):
    root = world / "posts"
    shutil.copytree(posts, root)
    for p in [root, *root.iterdir()]:
        p.chmod(0o777 if p.is_dir() else 0o644)
    (root / "p1.txt").chmod(0o000)
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    with unprivileged():
        loaded = load_posts(root)
    records = list(tag_posts(loaded, bundle, runner, TagOptions()))
    assert [r["status"] for r in records] == ["ok", "skipped: caption file unreadable: Permission denied"] + ["ok"] * 4


def test_utf16_captions_and_upper_case_caption_files_are_read(tmp_path):
    imgs.good(tmp_path / "A.jpg")
    (tmp_path / "A.TXT").write_bytes("café au lait #coffee".encode("utf-16"))  # with its byte-order mark
    imgs.good(tmp_path / "b.png")
    (tmp_path / "b.txt").write_bytes("grüße aus köln".encode("utf-16-be").join([b"\xfe\xff", b""]))
    imgs.good(tmp_path / "c.png")
    (tmp_path / "c.Txt").write_text("upper")
    (tmp_path / "c.txt").write_text("lower wins")
    posts = {p.id: p for p in load_posts(tmp_path)}
    assert posts["A.jpg"].caption == "café au lait #coffee" and posts["A.jpg"].hashtags == ["coffee"]
    assert posts["b.png"].caption == "grüße aus köln" and not posts["b.png"].note
    assert posts["c.png"].caption == "lower wins"
    assert read_caption_bytes(b"\xff\xfe\x00\xd8")[1] == "caption is not valid UTF-16; undecodable bytes replaced"


# 8. bounded decoding


def test_large_images_decode_at_a_reduced_size_with_bounded_bytes_in_flight(tmp_path, monkeypatch):
    jpeg = imgs.big_jpeg(tmp_path / "big.jpg", side=2400)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1500, 1800, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    held = []
    real_hold = DecodeBudget.hold

    def spy(self, nbytes):
        held.append(nbytes)
        return real_hold(self, nbytes)

    monkeypatch.setattr(DecodeBudget, "hold", spy)
    budget = DecodeBudget()
    im = load_image(jpeg, size=224, budget=budget)
    assert held == [600 * 600 * 8]  # JPEG draft: decoded at 1/4 scale, never at 2400 x 2400
    assert min(im.size) >= 448
    for path in (jpeg, tmp_path / "big.png"):  # the reduced decode gives (nearly) the pixels of the full one
        full = np.asarray(load_image(path).resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
        small = np.asarray(load_image(path, size=224).resize((224, 224), Image.Resampling.BILINEAR), np.float32)
        assert np.abs(full - small).mean() < 2.0

    # however many workers decode, the bytes held at once stay within the budget (or one image alone)
    monkeypatch.setattr(DecodeBudget, "hold", real_hold)
    for i in range(6):
        Image.new("RGB", (1200, 1000), (i * 40, 0, 0)).save(tmp_path / f"w{i}.png")
    budget = DecodeBudget(limit_bytes=1200 * 1000 * 8 * 2)
    settings = pipeline.ImageSettings(size=64)
    threads = [threading.Thread(target=load_pixels, args=(tmp_path / f"w{i}.png", settings, budget)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.used == 0 and budget.peak == 1200 * 1000 * 8 * 2
    alone = DecodeBudget(limit_bytes=10)
    load_pixels(tmp_path / "w0.png", settings, alone)  # larger than the whole budget: runs, alone
    assert alone.peak == 1200 * 1000 * 8


def test_decode_budget_waits_for_room():
    budget = DecodeBudget(limit_bytes=100)
    order = []

    def take(name, n, pause):
        with budget.hold(n):
            order.append(f"{name}+")
            time.sleep(pause)
            order.append(f"{name}-")

    first = threading.Thread(target=take, args=("a", 80, 0.2))
    first.start()
    time.sleep(0.05)
    take("b", 50, 0)
    first.join()
    assert order == ["a+", "a-", "b+", "b-"] and budget.peak == 80


# 9. huge captions


def test_a_huge_caption_is_cut_before_cleaning(posts, tiny_bundle, monkeypatch):
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    loaded = load_posts(posts)[:2]
    loaded[0].caption = "my lovely cat " * 400_000  # 5.6 MB
    loaded[1].caption, loaded[1].image = loaded[0].caption[: bundle.max_length * 4], loaded[0].image
    seen = []
    real_clean = pipeline.clean_caption
    monkeypatch.setattr(
        pipeline, "clean_caption", lambda text, options: seen.append(len(text)) or real_clean(text, options)
    )
    records = list(tag_posts(loaded, bundle, runner, TagOptions()))
    assert max(seen) <= bundle.max_length * CHARS_PER_TOKEN
    assert records[0]["status"] == records[1]["status"] == "ok"
    assert [t["tag"] for t in records[0]["hashtags"]] == [t["tag"] for t in records[1]["hashtags"]]


# 10. threads


def test_threads_above_the_cores_are_capped_with_a_warning(posts, tiny_bundle, monkeypatch):
    used = []
    real_load = pipeline.Runner.load.__func__

    def spy(cls, bundle, device="auto", variant="default", threads=None, batch_size=None):
        used.append(threads)
        return real_load(cls, bundle, device, variant, threads, batch_size)

    monkeypatch.setattr(pipeline.Runner, "load", classmethod(spy))
    log = io.StringIO()
    tag(
        posts,
        Path(os.devnull),
        "jsonl",
        TagOptions(model=tiny_bundle, device="cpu", threads=1000),
        console=Console(file=log, width=300),
    )
    assert used == [usable_cores()]
    assert f"warning: --threads 1000 is more than the {usable_cores()} cores" in log.getvalue()


# 13, 14. bundles


def test_a_hand_edited_bundle_fails_in_one_line_naming_the_file(posts, tiny_bundle, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(tiny_bundle, edited)
    hashtags = json.loads((edited / "hashtags.json").read_text())
    (edited / "hashtags.json").write_text(json.dumps(dict(hashtags, vocab=hashtags["vocab"][:-1])))
    write_manifest(edited)  # re-hashed: the manifest no longer catches the edit
    code, _, stderr, exc = run("tag", posts, "--model", edited)
    assert code == 1 and not isinstance(exc, (IndexError, KeyError)), exc
    assert errors(stderr) == [
        f"error: {edited / 'hashtags.json'}: {len(hashtags['vocab']) - 1} hashtags, but the model scores "
        f"{len(hashtags['vocab'])}; the vocabulary does not belong to this model"
    ]
    (edited / "hashtags.json").write_text(json.dumps(hashtags))
    info = json.loads((edited / "bundle.json").read_text())
    for broken in ({k: v for k, v in info.items() if k != "image"}, dict(info, text={"max_length": 16})):
        (edited / "bundle.json").write_text(json.dumps(broken))
        write_manifest(edited)
        code, _, stderr, exc = run("tag", posts, "--model", edited)
        assert code == 1 and len(errors(stderr)) == 1 and f"{edited / 'bundle.json'}: " in stderr, (stderr, exc)


def test_model_given_as_the_onnx_file_says_to_pass_the_folder(posts, tiny_bundle):
    code, _, stderr, _ = run("tag", posts, "--model", tiny_bundle / "model.onnx")
    assert code == 1 and errors(stderr) == [
        f"error: {tiny_bundle / 'model.onnx'} is a file; --model takes the bundle's folder (the one holding "
        f"bundle.json), e.g. {tiny_bundle}"
    ]


# 15. permission denied


def test_a_permission_denied_image_is_unreadable_not_corrupt(world):
    image = imgs.good(world / "secret.png")
    image.chmod(0o000)
    with unprivileged():
        result = pipeline._decode(image, pipeline.ImageSettings(size=32))
    assert str(result) == "image file unreadable: Permission denied" and result.code == "image_unreadable"


# 16. CSV formula injection


def test_csv_cells_never_run_as_formulas_and_read_back_unchanged(tiny_bundle, tmp_path):
    imgs.good(tmp_path / "a.png")
    ids = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "'quoted", "plain"]  # the reader strips tabs
    with open(tmp_path / "posts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id", "image", "caption"), *[(i, "a.png", "my cat") for i in ids]])
    out = tmp_path / "out.csv"
    code, _, stderr, _ = run("tag", tmp_path / "posts.csv", "--model", tiny_bundle, "-o", out)
    assert code == 0, stderr
    with open(out, newline="", encoding="utf-8") as f:
        cells = [row[0] for row in csv.reader(f)][1:]
    assert cells == ["'" + i for i in ids[:-1]] + ["plain"]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert [r["id"] for r in read_records(out, "csv")] == ids
    assert [neutralise(c) for c in ("\tx", "\rx", "#tag", "")] == ["'\tx", "'\rx", "#tag", ""]
    code, _, stderr, _ = run("tag", tmp_path / "posts.csv", "--model", tiny_bundle, "-o", out, "--resume")
    assert code == 0 and f"{len(ids)} posts already done, 0 to go" in stderr


# Also: modes


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_outputs_keep_the_umask_and_an_existing_files_mode(posts, tiny_bundle, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    old = os.umask(0o027)
    try:
        tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet())
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        out.chmod(0o600)
        tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet(), overwrite=True)
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# 7 is checked by tests/test_train.py (the resume test compares best/ too). 11, 12: options and model sources


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--batch-size", "0"],
        ["--max-length", "-1"],
        ["--extractor", "foo"],
        ["--lr", "-1e-4"],
        ["--new-lr", "-1"],
        ["--warmup", "1.5"],
        ["--vocab-size", "0"],
        ["--image-size", "0"],
        ["--device", "tpu"],
    ],
)
def test_bad_training_options_are_refused_before_any_work(tmp_path, args):
    code, _, stderr, exc = run("train", tmp_path / "posts", "--output", tmp_path / "runs", *args)
    assert code == 2 and f"Invalid value for '{args[0]}'" in stderr and isinstance(exc, SystemExit), stderr
    assert not (tmp_path / "runs").exists()


def test_the_library_checks_the_same_options(tmp_path):
    from hashtagger.training.train import TrainConfig, train

    for bad in (dict(epochs=0), dict(batch_size=0), dict(max_length=-1), dict(extractor="foo"), dict(warmup=2.0)):
        with pytest.raises(DataError):
            train(TrainConfig(data=str(tmp_path), output=str(tmp_path / "runs"), base_model="tiny", **bad), quiet())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--tag-device", "--variant", "--split"])
def test_bad_choices_of_tag_and_evaluate_are_refused(posts, option):
    command, flag = {
        "--tag-device": ("tag", "--device"),
        "--variant": ("tag", "--variant"),
        "--split": ("evaluate", "--split"),
    }[option]
    code, _, stderr, _ = run(command, posts, flag, "foo")
    if option == "--split":  # evaluate's own check: one line, naming the splits
        assert code == 1 and stderr.strip() == "error: unknown split 'foo': use val, test or all"
    else:
        assert code == 2 and f"Invalid value for '{flag}'" in stderr


def test_an_unknown_preset_is_named_and_an_unreachable_hub_fails_at_once(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hashtagger.training.train import TrainConfig, train

    data = make_posts(tmp_path / "posts", n=12)
    for name in ("huge", "tiny-ish"):
        with pytest.raises(DataError, match=f"--base-model '{name}': unknown preset \\(presets: tiny, mini, base\\)"):
            train(TrainConfig(data=str(data), output=str(tmp_path / "runs"), base_model=name), quiet())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    log = io.StringIO()
    with pytest.raises(DataError, match="cannot load 'microsoft/resnet-50'"):
        train(TrainConfig(data=str(data), output=str(tmp_path / "runs")), Console(file=log, width=300))
    assert constants.HF_HUB_OFFLINE  # the hub library's own offline mode: no retries, the cache only
    assert "the Hugging Face hub is not used (127.0.0.1:9 cannot be reached" in log.getvalue()


# Property: random bytes, file names and CSV cells through `tag`

# Each example runs the whole command: a few, no shrinking (a failure is reported as found), a fixed seed.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
FORMAT = st.sampled_from(["json", "jsonl", "csv"])
NAMES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"), min_size=1, max_size=10),
    st.binary(min_size=1, max_size=10).filter(lambda b: b"/" not in b and b"\x00" not in b).map(os.fsdecode),
).filter(lambda name: name not in (".", ".."))
IMAGE_BYTES = st.one_of(st.binary(max_size=64), st.just("good"), st.integers(1, 200).map(lambda n: ("cut", n)))
CELLS = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


def good_png() -> bytes:
    buf = io.BytesIO()
    imgs.noisy(size=(24, 24)).save(buf, "PNG")
    return buf.getvalue()


GOOD_PNG = good_png()


def image_bytes(kind) -> bytes:
    if kind == "good":
        return GOOD_PNG
    if isinstance(kind, tuple):
        return GOOD_PNG[: kind[1]]
    return kind


def check_run(tiny_bundle: Path, source: Path, out: Path, fmt: str, previous: bytes | None, overwrite: bool):
    """Run the real command; whatever the input: exit 0 or 1, never a traceback, one line on failure, one
    record per post, and an existing output intact or completely replaced."""
    if previous is not None:
        out.write_bytes(previous)
    args = ["tag", source, "--model", tiny_bundle, "--device", "cpu", "-o", out] + (
        ["--overwrite"] if overwrite else []
    )
    code, stdout, stderr, exc = run(*args)
    assert code in (0, 1) and (exc is None or isinstance(exc, SystemExit)), (code, exc, stderr)
    assert "Traceback" not in stderr + stdout
    if code == 1:
        assert len(errors(stderr)) == 1, stderr
    if previous is not None and (code == 1 or not overwrite):
        assert out.read_bytes() == previous  # refused, or nothing tagged: intact
        return None
    if not out.exists():
        assert code == 1 and "none of the" not in stderr  # the run could not start (e.g. no posts)
        return None
    return read_records(out, fmt)


@settings(max_examples=12, deadline=None, derandomize=True, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(
    posts=st.lists(
        st.tuples(NAMES, IMAGE_BYTES, st.none() | st.binary(max_size=40)), max_size=4, unique_by=lambda p: p[0]
    ),
    fmt=FORMAT,
    previous=st.none() | st.binary(min_size=1, max_size=30),
    overwrite=st.booleans(),
)
def test_random_files_and_names_never_break_tag(tiny_bundle, posts, fmt, previous, overwrite):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "posts"
        root.mkdir()
        for name, kind, caption in posts:
            (root / f"{name}.png").write_bytes(image_bytes(kind))
            if caption is not None:
                (root / f"{name}.txt").write_bytes(caption)
        records = check_run(tiny_bundle, root, Path(tmp) / f"out.{fmt}", fmt, previous, overwrite)
        if records is not None:
            expected = sorted(escape_undecodable(f"{name}.png") for name, _, _ in posts)
            assert sorted(r["id"] for r in records) == expected


@settings(max_examples=12, deadline=None, derandomize=True, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(CELLS, st.one_of(CELLS, st.just("good.png")), CELLS), max_size=4),
    fmt=FORMAT,
    previous=st.none() | st.binary(min_size=1, max_size=30),
    overwrite=st.booleans(),
)
def test_random_csv_cells_never_break_tag(tiny_bundle, rows, fmt, previous, overwrite):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "good.png").write_bytes(GOOD_PNG)
        with open(Path(tmp) / "posts.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("id", "image", "caption"), *rows])
        records = check_run(tiny_bundle, Path(tmp) / "posts.csv", Path(tmp) / f"out.{fmt}", fmt, previous, overwrite)
        if records is not None:
            assert [r["id"] for r in records] == [p.id for p in load_posts(Path(tmp) / "posts.csv")]
            assert len(records) == len(rows)
