"""`hashtagger tag`: the CLI end to end (in a subprocess, without torch), providers, formats, batching,
exit status, and nothing lost (atomic JSON / CSV, JSONL killed midway and resumed)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import helpers_images as imgs
import numpy as np
import onnxruntime as ort
import pytest
from conftest import cli_without_torch, interrupt_tagging_after
from rich.console import Console
from typer.testing import CliRunner

import hashtagger.tagging.pipeline as pipeline
import hashtagger.tagging.run as run
from hashtagger.bundle import gpu
from hashtagger.bundle.format import read_bundle, write_manifest
from hashtagger.bundle.runtime import DeviceError, Runner, choose_graphs
from hashtagger.cli.main import app
from hashtagger.data.posts import load_posts
from hashtagger.errors import DataError
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import tag_posts
from hashtagger.tagging.provenance import sidecar
from hashtagger.tagging.run import tag
from hashtagger.tagging.tagger import open_runner
from hashtagger.tagging.writers import done_ids, open_writer, read_records, remaining

ENV = dict(os.environ, COLUMNS="300")  # rich wraps at 80 columns when stderr is not a terminal


def cli(*args: str):
    result = CliRunner().invoke(app, ["tag", *map(str, args)], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def posts(posts_dir, tmp_path_factory) -> Path:
    """24 of the training posts, half of them in a subfolder (the folder is searched recursively)."""
    root = tmp_path_factory.mktemp("tagposts")
    for i, image in enumerate(sorted(posts_dir.glob("*.png"))[:24]):
        target = root / ("nested" if i % 2 else "") / image.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(image, target)
        shutil.copy(image.with_suffix(".txt"), target.with_suffix(".txt"))
    return root


def cuda_usable(bundle: Path) -> bool:
    try:
        open_runner(TagOptions(model=bundle, device="cuda"))
        return True
    except DeviceError:
        return False


def test_cli_end_to_end_without_torch(posts, tiny_bundle):
    """The real CLI in a fresh interpreter: JSON on stdout, progress and summary on stderr, torch never imported."""
    start = time.perf_counter()
    proc = cli_without_torch("tag", str(posts), "--model", str(tiny_bundle), "--batch-size", "5")
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    assert time.perf_counter() - start < 30  # start-up is quick: no torch, no hub, two small sessions
    output = json.loads(proc.stdout)  # {"provenance", "records"}, as a JSON file holds them
    assert output["provenance"]["options"]["top_k"] == 5 and output["provenance"]["hashtagger"]
    records = output["records"]
    expected_ids = sorted(p.relative_to(posts).as_posix() for p in posts.rglob("*.png"))
    assert [r["id"] for r in records] == expected_ids
    vocab = set(json.loads((tiny_bundle / "hashtags.json").read_text())["vocab"])
    for r in records:
        assert r["status"] == "ok"
        assert 1 <= len(r["hashtags"]) <= 5 and {t["tag"] for t in r["hashtags"]} <= vocab
        scores = [t["score"] for t in r["hashtags"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    provider = Runner.load(read_bundle(tiny_bundle), "auto").provider
    assert f"on {provider}" in proc.stderr  # the provider that ran, from the session
    assert "posts/s" in proc.stderr and "tagged" in proc.stderr and "start-up to first record" in proc.stderr
    # The fallback warning only where an NVIDIA GPU is there but cannot be used (no GPU at all: nothing to say).
    fallback = "warning: --device auto fell back to the CPU" in proc.stderr
    assert fallback == (provider == "CPUExecutionProvider" and gpu.nvidia_present())
    assert "Traceback" not in proc.stderr


def test_device_cuda_without_cuda_fails_with_the_reason(posts, tiny_bundle, tmp_path):
    if cuda_usable(tiny_bundle):
        pytest.skip("CUDA is usable on this machine")
    code, _stdout, stderr = cli(posts, "--model", tiny_bundle, "--device", "cuda", "-o", tmp_path / "out.json")
    assert code != 0
    if "CUDAExecutionProvider" in ort.get_available_providers():  # the GPU build, on a machine without CUDA
        assert "error: --device cuda: CUDAExecutionProvider is not usable here (" in stderr
    else:  # the core's CPU build: the message names the extra that brings CUDA
        assert "error: --device cuda: this onnxruntime build has no CUDAExecutionProvider" in stderr
        assert "[gpu] extra" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "out.json").exists()
    code, _, stderr = cli(posts, "--model", tiny_bundle, "--device", "tpu")
    assert code == 2 and "Invalid value for '--device'" in stderr


def test_device_cpu_and_auto(posts, tiny_bundle):
    log = io.StringIO()
    summary = tag(
        posts,
        Path(os.devnull),
        "jsonl",
        TagOptions(model=tiny_bundle, device="cpu"),
        console=Console(file=log, width=300),
    )
    assert summary.provider == "CPUExecutionProvider" and summary.tagged == 24 and summary.posts_per_s > 0
    assert "warning" not in log.getvalue()  # asked for the CPU: nothing to warn about
    log = io.StringIO()
    summary = tag(
        posts,
        Path(os.devnull),
        "jsonl",
        TagOptions(model=tiny_bundle, device="auto"),
        console=Console(file=log, width=300),
    )
    if summary.provider == "CPUExecutionProvider" and gpu.nvidia_present():
        assert "warning: --device auto fell back to the CPU: no usable GPU provider" in log.getvalue()
    elif summary.provider == "CPUExecutionProvider":
        assert "warning" not in log.getvalue()  # no NVIDIA GPU here: the CPU is the normal case
    else:
        assert summary.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def test_formats_follow_the_extension_unless_told(posts, tiny_bundle, tmp_path):
    code, _, stderr = cli(posts, "--model", tiny_bundle, "--device", "cpu", "--top-k", "2", "-o", tmp_path / "out.csv")
    assert code == 0, stderr
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "status", "reason", "hashtags", "scores"] and len(rows) == 25
    for _, status, reason, tags, scores in rows[1:]:
        assert status == reason == "ok" and len(tags.split()) == len(scores.split()) == 2
        assert all(t.startswith("#") for t in tags.split()) and all(0 <= float(s) <= 1 for s in scores.split())

    code, _, stderr = cli(
        posts, "--model", tiny_bundle, "--device", "cpu", "--format", "jsonl", "-o", tmp_path / "out.txt"
    )
    assert code == 0, stderr
    lines = (tmp_path / "out.txt").read_text().splitlines()  # the provenance line, then a record per post
    assert len(lines) == 25 and "model_digest" in json.loads(lines[0])["provenance"]
    assert json.loads(lines[1])["status"] == "ok"

    code, _, stderr = cli(posts, "--model", tiny_bundle, "-o", tmp_path / "out.txt")
    assert code != 0 and "pass --format" in stderr
    code, _, stderr = cli(posts, "--model", tiny_bundle, "--format", "xml")
    assert code != 0 and "unknown format 'xml'" in stderr


def test_threshold_keeps_top_k_above_it(posts, tiny_bundle):
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    post_list = load_posts(posts)
    free = list(tag_posts(post_list, bundle, runner, TagOptions(top_k=3)))
    cut = 0.3
    kept = list(tag_posts(post_list, bundle, runner, TagOptions(top_k=3, threshold=cut)))
    for a, b in zip(free, kept, strict=True):
        assert b["hashtags"] == [t for t in a["hashtags"] if t["score"] >= cut]
    auto = list(tag_posts(post_list, bundle, runner, TagOptions(top_k=3, threshold="auto")))
    cutoffs = dict(zip(bundle.vocab, bundle.cutoffs(), strict=True))  # per hashtag where tuned, else global
    assert all(t["score"] >= cutoffs[t["tag"]] for r in auto for t in r["hashtags"])
    with pytest.raises(DataError, match="between 0 and 1"):
        list(tag_posts(post_list, bundle, runner, TagOptions(threshold=1.5)))


def test_batching_and_dynamic_padding_do_not_change_scores(posts, tiny_bundle, tmp_path):
    """Captions of different lengths padded per batch, one post per batch or many: the same scores."""
    post_list = load_posts(posts)
    for i, post in enumerate(post_list):
        post.caption = " ".join(["look at my lovely cat"] * (i % 6 + 1))
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu", variant="model"))  # batch-invariant: fp32
    one = list(tag_posts(post_list, bundle, runner, TagOptions(batch_size=1, top_k=4)))
    many = list(tag_posts(post_list, bundle, runner, TagOptions(batch_size=7, top_k=4, workers=3)))
    assert [r["id"] for r in one] == [r["id"] for r in many] == [p.id for p in post_list]
    for a, b in zip(one, many, strict=True):
        sa = {t["tag"]: t["score"] for t in a["hashtags"]}
        sb = {t["tag"]: t["score"] for t in b["hashtags"]}
        assert sa.keys() == sb.keys()
        assert np.allclose([sa[k] for k in sa], [sb[k] for k in sa], atol=2e-4)


def test_posts_grouped_by_caption_length_pad_less_and_come_out_in_input_order(posts, tiny_bundle):
    post_list = load_posts(posts) * 4  # windows of 1, 4, 16, 24, 24, 24 posts, then the rest
    for i, post in enumerate(post_list):  # short and long captions alternate: input-order batches pad a lot
        post.caption = " ".join(["look at my lovely cat"] * (12 if i % 2 else 1))
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu", variant="model"))  # batch-invariant: fp32
    probabilities = runner.probabilities
    padded: list[int] = []

    def spy(text, feats, boxes):
        padded.append(text["input_ids"].size)
        return probabilities(text, feats, boxes)

    runner.probabilities = spy
    plain = list(tag_posts(post_list, bundle, runner, TagOptions(batch_size=4, length_window=1, top_k=4)))
    plain_tokens, padded[:] = sum(padded), []
    grouped = list(tag_posts(post_list, bundle, runner, TagOptions(batch_size=4, length_window=6, top_k=4)))
    assert [r["id"] for r in plain] == [r["id"] for r in grouped] == [p.id for p in post_list]
    # the small first windows mix short and long captions; from 16 posts on, batches hold one length
    assert sum(padded) < 0.7 * plain_tokens
    for a, b in zip(plain, grouped, strict=True):
        assert [h["tag"] for h in a["hashtags"]] == [h["tag"] for h in b["hashtags"]]
        assert np.allclose([h["score"] for h in a["hashtags"]], [h["score"] for h in b["hashtags"]], atol=2e-4)


def test_the_first_record_does_not_wait_for_a_whole_grouping_window(posts, tiny_bundle):
    """The first window is a fraction of a batch: the first post's record comes out once that has run, even
    though its caption is the longest (sorted into the last batch of a full window of 4)."""
    post_list = load_posts(posts)
    post_list[0].caption = " ".join(["look at my lovely cat"] * 12)
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    probabilities = runner.probabilities
    ran: list[int] = []

    def spy(text, feats, boxes):
        ran.append(len(feats))
        return probabilities(text, feats, boxes)

    runner.probabilities = spy
    records = tag_posts(post_list, bundle, runner, TagOptions(batch_size=16, length_window=4))
    first = next(records)
    assert first["id"] == post_list[0].id and ran == [2]  # 16 / FIRST_WINDOW_SHARE
    assert [first["id"], *(r["id"] for r in records)] == [p.id for p in post_list]


def test_extractor_runs_once_per_distinct_image(tiny_bundle, tmp_path, monkeypatch):
    imgs.good(tmp_path / "a.png")
    imgs.good(tmp_path / "b.png", imgs.BLUE)
    rows = [("a.png", "my cat"), ("b.png", "dog"), ("a.png", "another cat"), ("./a.png", "my cat"), ("b.png", "")]
    with open(tmp_path / "posts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu", variant="model"))  # batch-invariant: fp32
    seen = []
    features = runner.features

    def spy(pixels):
        seen.append(len(pixels))
        return features(pixels)

    runner.features = spy
    # batches of 40 start with a window of 5 posts (FIRST_WINDOW_SHARE): all five in the first batch
    records = list(tag_posts(load_posts(tmp_path / "posts.csv"), bundle, runner, TagOptions(batch_size=40)))
    assert seen == [2]  # five posts, two images (./a.png is a.png)
    assert [r["id"] for r in records] == [r[0] for r in rows]
    assert records[0]["hashtags"] == records[3]["hashtags"]  # same image, same caption: same tags
    assert all(r["status"].startswith("ok") for r in records)

    seen.clear()  # across batches too: an image shared by posts in different batches is decoded and encoded once
    decoded = []
    real_decode = pipeline._decode

    def counting_decode(path, settings, budget=None):
        decoded.append(path.name)
        return real_decode(path, settings, budget)

    monkeypatch.setattr(pipeline, "_decode", counting_decode)
    one_by_one = list(tag_posts(load_posts(tmp_path / "posts.csv"), bundle, runner, TagOptions(batch_size=1)))
    assert seen == [1, 1]
    assert sorted(decoded) == ["a.png", "b.png"]
    for a, b in zip(one_by_one, records, strict=True):
        assert [h["tag"] for h in a["hashtags"]] == [h["tag"] for h in b["hashtags"]]
        assert np.allclose([h["score"] for h in a["hashtags"]], [h["score"] for h in b["hashtags"]], atol=2e-4)


def test_exit_status_and_one_line_errors(posts, tiny_bundle, tmp_path):
    bad = tmp_path / "bad"
    imgs.zero_byte(bad / "a.jpg")
    imgs.not_an_image(bad / "b.png")
    code, _, stderr = cli(bad, "--model", tiny_bundle, "-o", tmp_path / "bad.json")
    assert code != 0 and "none of the 2 posts could be tagged: image_empty (1), not_an_image (1)" in stderr
    assert [r["status"] for r in json.loads((tmp_path / "bad.json").read_text())["records"]] == [
        "skipped: image file is empty",
        "skipped: not an image (unrecognised format)",
    ]  # the records that say why are still written

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    info = json.loads((broken / "bundle.json").read_text())
    (broken / "bundle.json").write_text(json.dumps(dict(info, format_version=99)))
    code, _, stderr = cli(posts, "--model", broken)
    assert code != 0 and "format version 99 is not supported" in stderr and "Traceback" not in stderr

    (broken / "bundle.json").write_text(json.dumps(info))
    (broken / "model.onnx").write_bytes(b"garbage")
    code, _, stderr = cli(posts, "--model", broken)
    assert code != 0 and "SHA-256 does not match" in stderr

    for args, message in [
        ((tmp_path / "nowhere",), "does not exist"),
        ((posts, "--model", tmp_path / "nomodel"), "does not exist"),
        ((tmp_path / "bad", "--model", tiny_bundle, "--resume"), "--resume needs --output"),
        ((posts, "--model", tiny_bundle, "--threshold", "high"), "--threshold must be a number"),
    ]:
        code, stdout, stderr = cli(*args)
        assert code != 0 and message in stderr and "Traceback" not in stderr, (args, stderr)
        assert stdout == ""
    (tmp_path / "none").mkdir()
    code, _, stderr = cli(tmp_path / "none", "--model", tiny_bundle)
    assert code != 0 and "no posts in" in stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_json_and_csv_are_replaced_only_when_complete(posts, tiny_bundle, tmp_path, monkeypatch, fmt):
    out = tmp_path / f"out.{fmt}"
    out.write_text("previous complete output\n")
    interrupt_tagging_after(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        tag(
            posts, out, None, TagOptions(model=tiny_bundle, device="cpu", batch_size=4), console=quiet(), overwrite=True
        )
    assert out.read_text() == "previous complete output\n"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary or lock file left behind
    monkeypatch.undo()
    tag(posts, out, None, TagOptions(model=tiny_bundle, device="cpu"), console=quiet(), overwrite=True)
    assert len(read_records(out, fmt)) == 24
    beside = [out.name] + ([sidecar(out).name] if fmt == "csv" else [])  # a CSV's provenance goes beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(beside)


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl"])
def test_resume_adds_the_rest_once(posts, tiny_bundle, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    options = TagOptions(model=tiny_bundle, device="cpu", batch_size=4)
    tag(posts, out, None, options, console=quiet())
    full = read_records(out, fmt)
    # keep the first 9 records, as a run stopped there would have
    writer = open_writer(out, fmt)
    for record in full[:9]:
        writer.write(record)
    writer.close()
    log = io.StringIO()
    summary = tag(posts, out, None, options, resume=True, console=Console(file=log, width=300))
    assert summary.resumed == 9 and summary.processed == 15
    assert "9 posts already done, 15 to go" in log.getvalue()
    again = read_records(out, fmt)
    assert [r["id"] for r in again] == [r["id"] for r in full]
    assert [r["status"] for r in again] == [r["status"] for r in full]
    # resuming a complete output tags nothing and exits 0
    code, _, stderr = cli(posts, "--model", tiny_bundle, "-o", out, "--resume")
    assert code == 0, stderr
    assert len(read_records(out, fmt)) == 24


def test_resume_counts_repeated_ids():
    """Ids repeat when CSV rows share an image: an id done n times skips its first n posts."""
    ids = ["a.png", "b.png", "a.png", "a.png", "c.png", "b.png"]
    assert remaining(ids, Counter()) == [0, 1, 2, 3, 4, 5]
    assert remaining(ids, Counter({"a.png": 2, "b.png": 1})) == [3, 4, 5]
    assert remaining(ids, Counter(ids)) == []


def test_resume_drops_a_line_cut_short(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(
        '{"id": "a", "status": "ok", "hashtags": []}\n{"id": "b", "status": "ok", "hashtags": []}\n{"id": "c", "sta'
    )
    assert done_ids(out, "jsonl") == Counter({"a": 1, "b": 1})
    writer = open_writer(out, "jsonl", resume=True)
    writer.write({"id": "c", "status": "ok", "hashtags": []})
    writer.close()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]


def test_killed_jsonl_run_resumes_with_every_post_once(tiny_bundle, tmp_path):
    """Kill -9 a real run midway: JSONL keeps what was written, --resume adds the rest, each post exactly once."""
    imgs.big_jpeg(tmp_path / "big.jpg")  # slow to decode: the run lasts long enough to be killed midway
    rows = [(f"small{i}.png", f"my cat number {i}") for i in range(8)] + [
        ("big.jpg", f"big dog {i}") for i in range(16)
    ]
    for i in range(8):
        imgs.good(tmp_path / f"small{i}.png", seed=i)
    with open(tmp_path / "posts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "hashtagger.cli.main",
        "tag",
        str(tmp_path / "posts.csv"),
        "--model",
        str(tiny_bundle),
        "--batch-size",
        "1",
        "--workers",
        "1",
        "--device",
        "cpu",
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 11:  # the provenance line and 10 records
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    written = out.read_bytes().count(b"\n") - 1  # less the provenance line
    assert 10 <= written < len(rows)

    resumed = subprocess.run(
        [*command[:-2], "--workers", "2", "-o", str(out), "--resume"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{written} posts already done" in resumed.stderr
    records = read_records(out, "jsonl")
    assert [r["id"] for r in records] == [image for image, _ in rows]  # every post exactly once, in input order
    assert all(r["status"] == "ok" for r in records)


def test_an_image_forgotten_before_its_batch_is_loaded_again(tiny_bundle, tmp_path, monkeypatch):
    """The load of a remembered image is skipped; if the memory drops it before use, it is loaded then."""
    for name, colour in (("a.png", imgs.RED), ("b.png", imgs.BLUE), ("c.png", imgs.RED)):
        imgs.good(tmp_path / name, colour)
    rows = [("a.png", "cat"), ("b.png", "dog"), ("c.png", "cat"), ("a.png", "cat")]
    with open(tmp_path / "posts.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    options = TagOptions(batch_size=1, workers=1)
    expected = list(tag_posts(load_posts(tmp_path / "posts.csv"), bundle, runner, options))
    real_memory = pipeline.RegionMemory
    monkeypatch.setattr(pipeline, "RegionMemory", lambda: real_memory(budget_bytes=1))  # keeps one image only
    forgetful = list(tag_posts(load_posts(tmp_path / "posts.csv"), bundle, runner, options))
    assert [r["status"] for r in forgetful] == ["ok"] * 4
    assert [[h["tag"] for h in r["hashtags"]] for r in forgetful] == [
        [h["tag"] for h in r["hashtags"]] for r in expected
    ]


def test_variant_auto_takes_the_int8_graphs_on_the_cpu_only_when_their_recorded_agreement_passes(
    posts, tiny_bundle, tmp_path, monkeypatch
):
    edited = tmp_path / "edited"
    shutil.copytree(tiny_bundle, edited)
    info = json.loads((edited / "bundle.json").read_text())

    def auto_with(shift: dict[str, float], overlap: dict[str, float] | None = None) -> str:
        """The graphs `--variant auto` runs once each int8 variant's F1@2 is fp32's plus `shift[variant]` and its
        top-5 overlap with fp32 `overlap[variant]` (default 1)."""
        for key, delta in shift.items():
            record = info["export"]["variants"][key]
            record["f1@2"] = record["f1@2_reference"] + delta
        for key, record in info["export"]["variants"].items():
            record["top5_overlap"] = (overlap or {}).get(key, 1.0)
        (edited / "bundle.json").write_text(json.dumps(info))
        write_manifest(edited)
        return Runner.load(read_bundle(edited), "cpu", "auto").variant

    assert auto_with({"int8_both": -0.004, "int8": 0.0, "extractor_int8": 0.0}) == "model int8, extractor int8"
    assert auto_with({"int8_both": -0.02}) == "model fp32, extractor int8"  # the next fastest that agrees
    assert auto_with({}, {"extractor_int8": 0.94}) == "model int8, extractor fp32"  # F1@2 as fp32's, top 5 too far
    assert auto_with({"extractor_int8": 0.03}) == "model int8, extractor fp32"  # a difference either way counts
    assert auto_with({"int8": -0.006}) == "model fp32, extractor fp32"
    del info["export"]["variants"]["int8_both"]["f1@2"]  # not measured: not taken
    assert auto_with({"int8": 0.0}) == "model int8, extractor fp32"
    # on CUDA auto is the default: fp16; TensorRT builds its fp16 engines from the fp32 graph
    assert choose_graphs(read_bundle(edited), "auto", "cuda") == ("fp16", "extractor")
    assert choose_graphs(read_bundle(edited), "default", "tensorrt") == ("model", "extractor")
    assert choose_graphs(read_bundle(edited), "default", "cpu") == ("model", "extractor")
    assert choose_graphs(read_bundle(edited), "int8", "cpu") == ("int8", "extractor_int8")
    log = io.StringIO()
    options = TagOptions(model=edited, device="cpu", variant="auto")
    summary = tag(posts, tmp_path / "out.jsonl", "jsonl", options, console=Console(file=log, width=300))
    assert summary.variant == "model int8, extractor fp32" and "model int8, extractor fp32" in log.getvalue()
    assert summary.faster is None  # auto ran: nothing to suggest
    # fp32 by default: int8 scores move with the batching, which --resume and --engine ray would expose; a long
    # run says what auto would run (HINT_POSTS lowered to these few posts)
    monkeypatch.setattr(run, "HINT_POSTS", summary.processed)
    log = io.StringIO()
    fp32 = tag(
        posts,
        tmp_path / "fp32.jsonl",
        "jsonl",
        TagOptions(model=edited, device="cpu"),
        console=Console(file=log, width=300),
    )
    assert fp32.variant == "model fp32, extractor fp32"
    assert (
        "faster on a CPU: --variant auto runs this model's int8 graphs (model int8, extractor fp32)" in log.getvalue()
    )
    monkeypatch.setattr(run, "HINT_POSTS", summary.processed + 1)
    short = tag(posts, tmp_path / "short.jsonl", "jsonl", TagOptions(model=edited, device="cpu"), console=quiet())
    assert short.faster is None
    for record in info["export"]["variants"].values():  # fp32 that gets nothing right agrees with anything
        record["f1@2_reference"] = record["f1@2"] = 0.0
    (edited / "bundle.json").write_text(json.dumps(info))
    write_manifest(edited)
    assert Runner.load(read_bundle(edited), "cpu", "auto").variant == "model fp32, extractor fp32"
    monkeypatch.setattr(run, "HINT_POSTS", 1)  # no int8 graph agrees: no hint, however long the run
    again = tag(posts, tmp_path / "none.jsonl", "jsonl", TagOptions(model=edited, device="cpu"), console=quiet())
    assert again.faster is None
