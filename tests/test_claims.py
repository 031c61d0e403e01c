"""Every write claimed (issue 31): no command writes its input, an existing file or folder the user did not name
with --overwrite (or --resume), the wrong content for a name, or into a folder it cannot write after the work.
Each test is a case that lost data or failed late before; the property tests at the end try any pre-existing
file at any path each writer may write."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import helpers_images as imgs
import pytest
from conftest import unprivileged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from test_safety import CELLS, GOOD_PNG, IMAGE_BYTES, NAMES, PHASES, image_bytes
from typer.testing import CliRunner

import hashtagger.cli.evaluate as cli_evaluate
import hashtagger.tagging.explain as explaining
from hashtagger.cli.main import app
from hashtagger.errors import DataError, OutputError
from hashtagger.evaluation.report import claim_outputs
from hashtagger.io.claims import Reads, check_folder, claim_folder, claim_output
from hashtagger.tagging.writers import read_records
from hashtagger.training.config import TrainConfig
from hashtagger.training.train import train


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, result.stderr, result.exception


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_line_failure(code: int, stderr: str, exc) -> None:
    assert code == 1 and len(errors(stderr)) == 1 and "Traceback" not in stderr, stderr
    assert exc is None or isinstance(exc, SystemExit), exc


def quiet() -> Console:
    return Console(file=io.StringIO(), width=300)


def input_csv(folder: Path) -> Path:
    imgs.good(folder / "a.png")
    path = folder / "posts.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("id", "image", "caption"), ("1", "a.png", "my cat"), ("2", "a.png", "a dog")])
    return path


def no_explaining(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("explain started working before checking its output")

    monkeypatch.setattr(explaining, "explain_post", refuse)


# 1. tag X.csv -o X.csv


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_tag_never_writes_its_input_csv(tiny_bundle, tmp_path, flag):
    posts = input_csv(tmp_path)
    before = posts.read_bytes()
    code, stderr, exc = run("tag", posts, "--model", tiny_bundle, "-o", posts, flag)
    one_line_failure(code, stderr, exc)
    assert "is this run's input" in stderr and posts.read_bytes() == before
    link = tmp_path / "link.csv"  # the same file under another name
    link.symlink_to(posts)
    code, stderr, exc = run("tag", posts, "--model", tiny_bundle, "-o", link, flag)
    one_line_failure(code, stderr, exc)
    assert posts.read_bytes() == before


def test_tag_never_writes_an_image_its_csv_names(tiny_bundle, tmp_path):
    """The images a CSV names are the run's input as much as the CSV (found by scripts/probe_inputs.py)."""
    posts = input_csv(tmp_path)
    image = tmp_path / "a.png"
    before = image.read_bytes()
    for name in (image, tmp_path / "." / "a.png"):
        code, stderr, exc = run("tag", posts, "--model", tiny_bundle, "-o", name, "--format", "csv", "--overwrite")
        one_line_failure(code, stderr, exc)
        assert "is this run's input" in stderr and image.read_bytes() == before


def test_an_input_csv_with_an_id_column_is_not_a_tag_output(tmp_path):
    posts = input_csv(tmp_path)
    with pytest.raises(OutputError, match="not a tag output"):
        read_records(posts, "csv")
    (tmp_path / "ids.jsonl").write_text('{"id": ["a", "b"], "status": "ok"}\n')
    with pytest.raises(OutputError, match="line 1 is not a tag record"):
        read_records(tmp_path / "ids.jsonl", "jsonl")


def test_tag_never_writes_a_caption_image_or_model_file(posts_dir, tiny_bundle, tmp_path):
    posts = tmp_path / "posts"
    shutil.copytree(posts_dir, posts)
    model = tmp_path / "model"
    shutil.copytree(tiny_bundle, model)
    for target in (posts / "post0000.txt", model / "bundle.json", model / "hashtags.json"):
        before = target.read_bytes()
        code, stderr, exc = run("tag", posts, "--model", model, "-o", target, "--format", "json", "--overwrite")
        one_line_failure(code, stderr, exc)
        assert target.read_bytes() == before
    # a new output beside the posts is fine
    assert check_output_allowed(posts / "tags.jsonl", [Reads(posts, (".png", ".txt"))])


def check_output_allowed(path: Path, inputs) -> bool:
    with claim_output(path, inputs=inputs):
        return True


# 2. train --run-name


@pytest.mark.parametrize("name", ["..", ".", "../../x", "/tmp/elsewhere", "a/b", ""])
def test_a_run_name_stays_inside_the_output(tmp_path, name):
    cfg = TrainConfig(data=str(tmp_path / "posts"), output=str(tmp_path / "runs"), base_model="tiny", run_name=name)
    with pytest.raises(DataError, match="plain folder name"):
        train(cfg, quiet())
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_new_run_never_replaces_a_folder_the_user_had(tmp_path):
    photos = tmp_path / "runs" / "holiday"
    (photos / "best").mkdir(parents=True)
    (photos / "best" / "beach.jpg").write_bytes(b"a photo")
    cfg = TrainConfig(
        data=str(tmp_path / "posts"), output=str(tmp_path / "runs"), base_model="tiny", run_name="holiday"
    )
    code, stderr, exc = run("train", tmp_path / "posts", "--output", tmp_path / "runs", "--run-name", "holiday")
    one_line_failure(code, stderr, exc)
    assert "not empty" in stderr and "--run-name" in stderr
    with pytest.raises(OutputError):
        train(cfg, quiet())
    assert (photos / "best" / "beach.jpg").read_bytes() == b"a photo"


# 3. explain


def test_explain_never_overwrites_without_the_flag_nor_ever_its_image(tiny_bundle, tmp_path, monkeypatch):
    image = imgs.good(tmp_path / "why.png")  # the image has the default output's name
    before = image.read_bytes()
    monkeypatch.chdir(tmp_path)
    for args in ([], ["-o", image], ["-o", image, "--overwrite"]):
        code, stderr, exc = run("explain", image, "--caption", "a cat", "--model", tiny_bundle, *args)
        one_line_failure(code, stderr, exc)
    assert image.read_bytes() == before
    old = tmp_path / "old.png"
    old.write_bytes(b"an older picture")
    code, stderr, exc = run("explain", image, "--caption", "a cat", "--model", tiny_bundle, "-o", old)
    one_line_failure(code, stderr, exc)
    assert "--overwrite" in stderr and old.read_bytes() == b"an older picture"
    code, stderr, _ = run("explain", image, "--caption", "a cat", "--model", tiny_bundle, "-o", old, "--overwrite")
    assert code == 0, stderr
    assert old.read_bytes().startswith(b"\x89PNG")


def test_explain_checks_its_output_before_any_work(tiny_bundle, tmp_path, monkeypatch):
    image = imgs.good(tmp_path / "photo.png")
    no_explaining(monkeypatch)
    (tmp_path / "a-file").write_text("x")
    for output, message in (
        (tmp_path / "why.jpg", "explain draws a PNG; name it *.png"),
        (tmp_path / "a-file" / "why.png", "not a folder"),
        (tmp_path / "model-file.png", "inside this run's input"),
    ):
        target = tiny_bundle / "why.png" if output.name == "model-file.png" else output
        code, stderr, exc = run("explain", image, "--caption", "a cat", "--model", tiny_bundle, "-o", target)
        one_line_failure(code, stderr, exc)
        assert message in stderr, stderr
    caption = tmp_path / "caption.png"
    caption.write_text("a cat")
    code, stderr, exc = run("explain", image, caption, "--model", tiny_bundle, "-o", caption, "--overwrite")
    one_line_failure(code, stderr, exc)
    assert caption.read_text() == "a cat"


# 4. evaluate --report / --plot


def test_evaluate_claims_report_and_plot_before_evaluating(tmp_path, monkeypatch):
    data = input_csv(tmp_path)
    before, image = data.read_bytes(), (tmp_path / "a.png").read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("evaluate started before checking its outputs")

    monkeypatch.setattr("hashtagger.evaluation.evaluate.evaluate", refuse)
    cases = [
        (["--report", data, "--overwrite"], "is this run's input"),
        (["--plot", tmp_path / "a.png", "--overwrite"], "is this run's input"),  # an image DATA names
        (["--plot", tmp_path / "plot.csv"], "--plot draws a PNG; name it *.png"),
        (["--report", tmp_path / "report.txt"], "--report is written as JSON"),
        (["--report", tmp_path / "same.json", "--plot", tmp_path / "same.json"], "both name"),
        (["--report", tmp_path / "posts.csv" / "r.json"], "not a folder"),
    ]
    for args, message in cases:
        code, stderr, exc = run("evaluate", data, "--split", "all", *args)
        one_line_failure(code, stderr, exc)
        assert message in stderr, stderr
    old = tmp_path / "report.json"
    old.write_text("{}")
    code, stderr, exc = run("evaluate", data, "--split", "all", "--report", old)
    one_line_failure(code, stderr, exc)
    assert "pass --overwrite" in stderr and old.read_text() == "{}"
    assert data.read_bytes() == before and (tmp_path / "a.png").read_bytes() == image
    assert cli_evaluate  # the command module the monkeypatch reaches through


def test_evaluate_without_data_never_writes_over_the_training_data_the_model_records(tiny_bundle, tmp_path):
    """Without DATA, evaluate reads the posts the bundle records: they are its input as a DATA argument is."""
    posts = tmp_path / "posts"
    posts.mkdir()
    photo = posts / "p.png"
    photo.write_bytes(b"a training photo")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    info = json.loads((bundle / "bundle.json").read_text())
    info["training"]["data"] = str(posts)
    (bundle / "bundle.json").write_text(json.dumps(info))
    code, stderr, exc = run("evaluate", "--model", bundle, "--split", "test", "--plot", photo, "--overwrite")
    one_line_failure(code, stderr, exc)
    assert "inside this run's input" in stderr and photo.read_bytes() == b"a training photo"


def test_evaluate_outputs_into_a_read_only_folder_fail_first(world):
    locked = world / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    with unprivileged(), pytest.raises(OutputError, match="not writable"), claim_outputs(locked / "r.json", None):
        pass


# adapt -o


def test_adapt_never_replaces_its_accepted_posts_or_training_data(tiny_bundle, posts_dir, tmp_path, monkeypatch):
    """adapt may write its adapted bundle over the bundle it read (by design), but --force never lets it replace
    the accepted posts, an image they name or the training data with a bundle (found by scripts/probe_inputs.py)."""

    def refuse(*args, **kwargs):
        raise AssertionError("adapt started before checking its output")

    monkeypatch.setattr("hashtagger.evaluation.wide.fit_wide_part", refuse)
    imgs.good(tmp_path / "a.png")
    accepted = tmp_path / "accepted.csv"
    accepted.write_text("image,caption\na.png,my cat #cat\n")
    before = {p: p.read_bytes() for p in (accepted, tmp_path / "a.png")}
    for target in (accepted, tmp_path / "a.png", posts_dir):
        code, stderr, exc = run("adapt", tiny_bundle, accepted, "-o", target, "--force", "--data", posts_dir)
        one_line_failure(code, stderr, exc)
        assert "this run's input" in stderr, stderr
    assert {p: p.read_bytes() for p in before} == before and (posts_dir / "post0000.png").is_file()


# Export and folders


def test_export_never_replaces_its_own_checkpoint(tiny_run, tmp_path):
    best = tiny_run / "best"
    names = sorted(p.name for p in best.iterdir())
    for target in (best, tiny_run):
        code, stderr, exc = run("export", best, "--output", target, "--force")
        one_line_failure(code, stderr, exc)
    assert sorted(p.name for p in best.iterdir()) == names


def test_a_folder_claim_refuses_what_the_user_had_and_locks(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="not empty"):
        check_folder(mine)
    check_folder(mine, overwrite=True)
    check_folder(mine, ours=lambda p: (p / "notes.txt").exists())
    new = tmp_path / "new"
    with claim_folder(new), pytest.raises(OutputError, match="being written"), claim_folder(new):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


# Property: any pre-existing file at any path a writer may write stays unchanged unless the flag was given.

CONTENT = st.binary(min_size=1, max_size=64)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def claims_of_every_writer(tmp: Path, flag: bool):
    """(name, what each writer's claim does) for the file writers: tag (all formats), explain, evaluate's report
    and plot, the review sheet, and a folder writer (export / Ray / a training run)."""
    yield "tag", lambda p: claim_output(p, overwrite=flag)
    yield "explain", lambda p: claim_output(p, overwrite=flag, resumable=False, suffixes=(".png",), what="PNG")
    yield "report", lambda p: claim_outputs(p, None, overwrite=flag)
    yield "plot", lambda p: claim_outputs(None, p, overwrite=flag)
    yield "folder", lambda p: claim_folder(p, overwrite=flag)


@SETTINGS
@given(content=CONTENT, name=st.sampled_from(["out.json", "out.png", "out.csv", "out.jsonl", "sub/out.png"]))
def test_no_writer_claims_an_existing_file_without_the_flag(content, name):
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        for writer, claim in claims_of_every_writer(Path(tmp), flag=False):
            try:
                with claim(target):
                    raise AssertionError(f"{writer} claimed {name}, which held {len(content)} bytes")
            except OutputError:
                pass
            assert target.read_bytes() == content, writer
        assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no lock or temporary left


SPELLINGS = st.sampled_from(["input.png", "./input.png", "sub/../input.png", "link.png", "sub/link.png", "."])


@SETTINGS
@given(content=CONTENT, flag=st.booleans(), spelling=SPELLINGS, folder=st.booleans())
def test_no_writer_claims_its_input_under_any_name(content, flag, spelling, folder):
    """However the output names the input (relative, through .., a symlink, or a file inside an input folder),
    every claim refuses it, with or without --overwrite."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sub").mkdir()
        source = root / "input.png"
        source.write_bytes(content)
        (root / "link.png").symlink_to(source)
        (root / "sub" / "link.png").symlink_to(source)
        inputs = [Reads(root, (".png",))] if folder else [source]
        cwd = os.getcwd()
        os.chdir(root)
        try:
            for make in (claim_output, claim_folder):
                if spelling == "." and make is claim_output and not folder:
                    continue  # a folder is no file output: refused as such, not as the input
                with pytest.raises(OutputError, match="input"), make(Path(spelling), overwrite=flag, inputs=inputs):
                    pass
        finally:
            os.chdir(cwd)
        assert source.read_bytes() == content


# Property: random inputs and pre-existing outputs through explain, evaluate and train (issue 13's fuzz test of
# tag, extended): exit 0 or 1, never a traceback, one line on failure, a pre-existing output intact unless
# --overwrite was given and the run succeeded.

FUZZ = settings(max_examples=8, deadline=None, derandomize=True, phases=PHASES, suppress_health_check=list(HealthCheck))
PREVIOUS = st.none() | st.binary(min_size=1, max_size=30)


def check_outcome(code: int, stderr: str, exc, out: Path, previous: bytes | None, overwrite: bool) -> None:
    assert code in (0, 1) and (exc is None or isinstance(exc, SystemExit)), (code, exc, stderr)
    assert "Traceback" not in stderr
    if code == 1:
        assert len(errors(stderr)) == 1, stderr
    if previous is not None and (code == 1 or not overwrite):
        assert out.read_bytes() == previous


@FUZZ
@given(image=IMAGE_BYTES, caption=st.none() | st.binary(max_size=40), previous=PREVIOUS, overwrite=st.booleans())
def test_random_images_captions_and_outputs_never_break_explain(tiny_bundle, image, caption, previous, overwrite):
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        photo.write_bytes(image_bytes(image))
        args = ["explain", photo]
        if caption is not None:
            (Path(tmp) / "caption.txt").write_bytes(caption)
            args.append(Path(tmp) / "caption.txt")
        out = Path(tmp) / "why.png"
        if previous is not None:
            out.write_bytes(previous)
        args += ["--model", tiny_bundle, "--device", "cpu", "-o", out] + (["--overwrite"] if overwrite else [])
        code, stderr, exc = run(*args)
        check_outcome(code, stderr, exc, out, previous, overwrite)
        assert code == 1 or out.read_bytes().startswith(b"\x89PNG")


@FUZZ
@given(
    rows=st.lists(st.tuples(st.sampled_from(["good.png", "bad.png", ""]), CELLS, CELLS), max_size=4),
    previous=PREVIOUS,
    overwrite=st.booleans(),
    plot=st.booleans(),
)
def test_random_posts_and_outputs_never_break_evaluate(tiny_bundle, rows, previous, overwrite, plot):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "good.png").write_bytes(GOOD_PNG)
        (Path(tmp) / "bad.png").write_bytes(b"not a png")
        data = Path(tmp) / "posts.csv"
        with open(data, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("image", "caption", "hashtags"), *rows])
        before = data.read_bytes()
        out = Path(tmp) / ("plot.png" if plot else "report.json")
        if previous is not None:
            out.write_bytes(previous)
        flag = ["--overwrite"] if overwrite else []
        args = [
            "evaluate",
            data,
            "--model",
            tiny_bundle,
            "--split",
            "all",
            "--device",
            "cpu",
            "--plot" if plot else "--report",
            out,
        ]
        code, stderr, exc = run(*args, *flag)
        check_outcome(code, stderr, exc, out, previous, overwrite)
        assert data.read_bytes() == before


@FUZZ
@given(name=st.none() | NAMES, content=st.none() | st.binary(max_size=20), in_best=st.booleans())
def test_random_run_names_and_folders_never_break_train(posts_dir, name, content, in_best):
    """Up to the work only (no training): a run folder is absent or empty, or the run is refused in one line
    and what was there is intact."""
    from hashtagger.training import trainer

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        existing = None
        if name and name not in (".", "..") and "/" not in name and content is not None:
            existing = runs / name / ("best" if in_best else "") / "photo.jpg"
            existing.parent.mkdir(parents=True, exist_ok=True)
            existing.write_bytes(content)
        reached = []

        def stop(*args, **kwargs):
            reached.append(1)
            raise DataError("stopped at the work")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trainer, "prepare_samples", stop)
            args = ["train", posts_dir, "--output", runs, "--base-model", "tiny"] + (
                ["--run-name", name] if name is not None else []
            )
            code, stderr, exc = run(*args)
        one_line_failure(code, stderr, exc)
        assert bool(reached) == (existing is None and "plain folder name" not in stderr), stderr
        if existing is not None:
            assert existing.read_bytes() == content
        for folder in runs.rglob("*") if runs.exists() else []:
            assert folder.resolve().is_relative_to(runs.resolve())
