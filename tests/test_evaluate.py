"""`hashtagger evaluate`: metric definitions, post selection, both backends, ablations, report and plot."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from conftest import make_posts
from rich.console import Console
from typer.testing import CliRunner

from hashtagger import metrics
from hashtagger.bundle import write_manifest
from hashtagger.checkpoint import load_checkpoint
from hashtagger.cli import app
from hashtagger.data import DataError, load_posts
from hashtagger.evaluate import evaluate, parse_ks, plot, report_table, write_report

QUIET = Console(stderr=True, quiet=True)
SYSTEMS = ["model", "text-only", "image-only", "frequency prior"]


@pytest.fixture(scope="module")
def checkpoint_report(tiny_run, posts_dir):
    return evaluate(posts_dir, checkpoint=tiny_run / "best", device="cpu", console=QUIET)


@pytest.fixture(scope="module")
def bundle_report(tiny_bundle, posts_dir):
    return evaluate(posts_dir, model=tiny_bundle, device="cpu", console=QUIET)


def test_metric_definitions_on_hand_made_posts():
    ranked = [["a", "b", "c"], ["c", "a", "b"], ["a", "b", "c"]]
    truths = [{"a", "d"}, {"b"}, {"zz"}]  # the last post's only hashtag is outside the vocabulary: a miss
    got = metrics.topk_metrics(ranked, truths, (1, 2, 3))
    # k=1: 1 correct of 3 recommended; 4 true hashtags; 1 post of 3 hit.
    assert got[1] == pytest.approx({"precision": 1 / 3, "recall": 1 / 4, "f1": 2 / 7, "accuracy": 1 / 3})
    # k=2: still 1 correct, now of 6 recommended.
    assert got[2] == pytest.approx({"precision": 1 / 6, "recall": 1 / 4, "f1": 1 / 5, "accuracy": 1 / 3})
    # k=3: 2 correct of 9; 2 posts hit; the out-of-vocabulary post never can be.
    assert got[3] == pytest.approx({"precision": 2 / 9, "recall": 1 / 2, "f1": 4 / 13, "accuracy": 2 / 3})


def test_parse_ks():
    assert parse_ks("1..5") == (1, 2, 3, 4, 5)
    assert parse_ks("2") == (2,)
    assert parse_ks("5,1,2-3") == (1, 2, 3, 5)
    for bad in ("0", "", "a", "1..x"):
        with pytest.raises(DataError):
            parse_ks(bad)


def test_test_split_is_the_stored_one(checkpoint_report, bundle_report, tiny_run):
    ckpt = load_checkpoint(tiny_run / "best")
    stored = ckpt.split["test"]  # one post per image in the generated data
    for report in (checkpoint_report, bundle_report):
        assert report.split == "test"
        assert report.posts == len(stored) > 0
        assert report.oov_posts == 0 and report.missing_test_images == 0
        assert report.skipped == {"no image named": 0, "no hashtags": 0, "unreadable image": 0}
        assert list(report.systems) == SYSTEMS
        assert sorted(report.systems["model"]) == [1, 2, 3, 4, 5]
    assert (checkpoint_report.backend, bundle_report.backend) == ("pytorch", "onnx")
    # The same posts and model as training's own test evaluation: the same numbers.
    meta = ckpt.meta
    for system, stored in (("model", meta["test_metrics"]), ("frequency prior", meta["prior_test_metrics"])):
        for k, row in stored.items():
            assert row == pytest.approx(checkpoint_report.systems[system][int(k)])


def test_checkpoint_and_bundle_agree(checkpoint_report, bundle_report):
    for system in SYSTEMS:
        for k in range(1, 6):
            for m in metrics.METRICS:
                a, b = checkpoint_report.systems[system][k][m], bundle_report.systems[system][k][m]
                assert abs(a - b) <= 1e-3, (system, k, m, a, b)


def test_model_beats_prior_and_needs_both_streams(checkpoint_report):
    s = checkpoint_report.systems
    # The label is colour (pixels only) + animal (words only): the full model must beat the prior,
    # and each stream alone must lose to the full model.
    assert s["model"][1]["f1"] > s["frequency prior"][1]["f1"]
    assert s["model"][1]["accuracy"] > s["text-only"][1]["accuracy"]
    assert s["model"][1]["accuracy"] > s["image-only"][1]["accuracy"]
    assert s["text-only"][1] != s["model"][1] and s["image-only"][1] != s["model"][1]


def test_split_all_counts_out_of_vocabulary_and_skipped_posts(tiny_bundle, tmp_path):
    root = make_posts(tmp_path / "other", n=12, seed=5)
    (root / "post0000.txt").write_text("a small purple fish swims #purplefish")  # only an unknown hashtag
    (root / "post0001.txt").write_text("a dog in the park")  # no hashtag: cannot be evaluated
    (root / "post0002.png").write_bytes(b"not an image")  # unreadable: skipped, not fatal
    with open(root / "post0003.txt", "a") as f:
        f.write(" #extra")  # one hashtag in the vocabulary, one outside it
    report = evaluate(root, model=tiny_bundle, split="all", ks=(1, 9), device="cpu", console=QUIET)
    assert report.posts == 10 and report.vocab_size == 9
    assert report.oov_posts == 1
    assert report.skipped == {"no image named": 0, "no hashtags": 1, "unreadable image": 1}
    assert report.true_hashtags == 11
    # k = 9, the whole vocabulary: every in-vocabulary label is found (9 posts), whatever the model; the
    # out-of-vocabulary hashtags stay in recall's denominator.
    for system in SYSTEMS:
        assert report.systems[system][9] == pytest.approx(
            {"precision": 9 / 90, "recall": 9 / 11, "f1": 2 * (9 / 90) * (9 / 11) / (9 / 90 + 9 / 11), "accuracy": 0.9}
        )


def test_report_json_table_and_plot(bundle_report, tmp_path):
    path = write_report(bundle_report, tmp_path / "out" / "report.json")
    saved = json.loads(path.read_text())
    assert saved["posts"] == bundle_report.posts and saved["backend"] == "onnx"
    assert list(saved["systems"]) == SYSTEMS
    assert saved["systems"]["model"]["2"]["f1"] == pytest.approx(bundle_report.systems["model"][2]["f1"])
    assert set(saved["definitions"]) == set(metrics.METRICS)
    png = plot(bundle_report, tmp_path / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    text = Console(width=140, record=True, file=io.StringIO())
    text.print(report_table(bundle_report))
    assert "frequency prior" in text.export_text()


def test_cli(tiny_bundle, posts_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(posts_dir),
            "--model",
            str(tiny_bundle),
            "--k",
            "1..3",
            "--device",
            "cpu",
            "--report",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "image-only" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["ks"] == [1, 2, 3]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    result = runner.invoke(app, ["evaluate", "--model", str(tiny_bundle), "--split", "all"])
    assert result.exit_code == 1 and "needs DATA" in result.output


def test_bundle_without_split_says_what_to_do(tiny_bundle, posts_dir, tmp_path):
    old = shutil.copytree(tiny_bundle, tmp_path / "old")
    (old / "split.json").unlink()
    write_manifest(old)
    with pytest.raises(DataError, match="re-export"):
        evaluate(posts_dir, model=old, device="cpu", console=QUIET)
    # A separate dataset needs no split.
    assert evaluate(posts_dir, model=old, split="all", device="cpu", console=QUIET).posts == len(load_posts(posts_dir))
