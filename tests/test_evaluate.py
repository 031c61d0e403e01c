"""`hashtagger evaluate`: metric definitions, post selection, both backends, ablations, the TF-IDF baseline,
bootstrap differences, thresholded output, report and plot; per-hashtag thresholds in the bundle and `tag`."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from dataclasses import replace

import pytest
from conftest import make_posts
from rich.console import Console
from typer.testing import CliRunner

import hashtagger.evaluation.systems as systems
from hashtagger.bundle import thresholds
from hashtagger.bundle.format import read_bundle, write_manifest
from hashtagger.cli.main import app
from hashtagger.data.batching import split_examples
from hashtagger.data.posts import DataError, load_posts
from hashtagger.evaluation import metrics
from hashtagger.evaluation.evaluate import evaluate, parse_ks
from hashtagger.evaluation.options import EvaluateOptions
from hashtagger.evaluation.report import differences_table, plot, report_table, thresholded_table, write_report
from hashtagger.evaluation.tfidf import TFIDF
from hashtagger.models.checkpoint import load_checkpoint
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import tag_posts
from hashtagger.tagging.tagger import open_runner

QUIET = Console(stderr=True, quiet=True)
CPU = EvaluateOptions(device="cpu")
SYSTEMS = ["model", "text-only", "image-only", TFIDF, "frequency prior"]
PAIRS = [("model", TFIDF), ("model", "text-only"), ("image-only", "frequency prior"), ("model", "frequency prior")]


@pytest.fixture(scope="module")
def checkpoint_report(tiny_run, posts_dir):
    return evaluate(posts_dir, checkpoint=tiny_run / "best", options=CPU, console=QUIET)


@pytest.fixture(scope="module")
def bundle_report(tiny_bundle, posts_dir):
    return evaluate(posts_dir, model=tiny_bundle, options=CPU, console=QUIET)


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
    for system, stored in (("model", meta.test_metrics), ("frequency prior", meta.prior_test_metrics)):
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
    report = evaluate(root, model=tiny_bundle, options=replace(CPU, split="all", ks=(1, 9)), console=QUIET)
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
    assert set(saved["definitions"]) == {*metrics.METRICS, "differences", "thresholded"}
    assert [(d["system"], d["baseline"]) for d in saved["differences"]] == PAIRS
    assert saved["resamples"] == 2000 and 0 < saved["images"] <= saved["posts"]
    assert set(saved["thresholded"]) == {"global", "per-hashtag"}
    png = plot(bundle_report, tmp_path / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    text = Console(width=140, record=True, file=io.StringIO())
    text.print(report_table(bundle_report))
    for table in (differences_table(bundle_report), thresholded_table(bundle_report)):
        text.print(table)
    shown = text.export_text()
    assert "frequency prior" in shown and "model - TF-IDF" in shown and "per hashtag" in shown


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
        evaluate(posts_dir, model=old, options=CPU, console=QUIET)
    # A separate dataset needs no split.
    assert evaluate(posts_dir, model=old, options=replace(CPU, split="all"), console=QUIET).posts == len(
        load_posts(posts_dir)
    )


def test_tfidf_baseline_beats_the_prior_from_the_caption_alone(bundle_report, checkpoint_report):
    """The caption names the animal: three of the nine hashtags. The prior cannot know which."""
    for report in (bundle_report, checkpoint_report):
        tfidf, prior = report.systems[TFIDF], report.systems["frequency prior"]
        assert tfidf[3]["accuracy"] > 0.9 > prior[3]["accuracy"]
        assert tfidf[3]["f1"] > prior[3]["f1"]
    assert checkpoint_report.systems[TFIDF] == bundle_report.systems[TFIDF]


def test_tfidf_is_fitted_on_the_training_split_only(tiny_bundle, tiny_run, posts_dir, monkeypatch):
    seen = {}
    real = systems.tfidf_scores

    def spy(train_texts, train_labels, vocab, texts):
        seen.update(train=sorted(train_texts), evaluated=texts)
        return real(train_texts, train_labels, vocab, texts)

    monkeypatch.setattr(systems, "tfidf_scores", spy)
    report = evaluate(posts_dir, model=tiny_bundle, options=replace(CPU, split="val", ablations=False), console=QUIET)
    ckpt = load_checkpoint(tiny_run / "best")
    assert seen["train"] == sorted(e.text for e, _ in split_examples(ckpt, "train"))
    held = {e.text for which in ("val", "test") for e, _ in split_examples(ckpt, which)}
    assert not held & set(seen["train"]) and len(seen["evaluated"]) == report.posts


def test_differences_of_the_report(bundle_report):
    by_pair = {(d["system"], d["baseline"]): d["f1"] for d in bundle_report.differences}
    assert list(by_pair) == PAIRS
    for (system, baseline), rows in by_pair.items():
        for k, (d, lo, hi) in rows.items():
            s = bundle_report.systems
            assert d == pytest.approx(s[system][k]["f1"] - s[baseline][k]["f1"])
            assert lo <= d <= hi
    assert bundle_report.images == bundle_report.posts  # one post per image in the generated data


def test_split_val_and_an_unknown_split(tiny_bundle, tiny_run, posts_dir):
    report = evaluate(posts_dir, model=tiny_bundle, options=replace(CPU, split="val", ablations=False), console=QUIET)
    assert report.split == "val" and report.posts == len(load_checkpoint(tiny_run / "best").split["val"])
    assert any("flatters" in note for note in report.notes)
    with pytest.raises(DataError, match="unknown split 'nonsense': use val, test or all"):
        evaluate(posts_dir, model=tiny_bundle, options=EvaluateOptions(split="nonsense"), console=QUIET)
    result = CliRunner().invoke(app, ["evaluate", str(posts_dir), "--model", str(tiny_bundle), "--split", "nonsense"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: unknown split 'nonsense': use val, test or all"]


def test_export_writes_per_hashtag_thresholds(tiny_bundle, tiny_run):
    info = read_bundle(tiny_bundle).info
    stored = info.raw["hashtag_thresholds"]
    assert stored["min_positives"] == thresholds.MIN_POSITIVES
    positives = Counter(t for e, _ in split_examples(load_checkpoint(tiny_run / "best"), "val") for t in e.labels)
    assert set(stored["values"]) == {t for t, n in positives.items() if n >= thresholds.MIN_POSITIVES}
    assert all(0 < v < 1 for v in stored["values"].values())


def _with_thresholds(tiny_bundle, folder, values):
    """A copy of the bundle whose per-hashtag thresholds are `values` (None: a bundle from before them)."""
    copy = shutil.copytree(tiny_bundle, folder)
    info = json.loads((copy / "bundle.json").read_text())
    if values is None:
        del info["hashtag_thresholds"]
    else:
        info["hashtag_thresholds"]["values"] = values
    (copy / "bundle.json").write_text(json.dumps(info))
    write_manifest(copy)
    return copy


def test_tag_threshold_auto_uses_per_hashtag_thresholds(tiny_bundle, posts_dir, tmp_path):
    posts = load_posts(posts_dir)[:40]

    def tagged(bundle_dir, threshold):
        bundle, runner = open_runner(TagOptions(model=bundle_dir, device="cpu"))
        records = tag_posts(posts, bundle, runner, TagOptions(top_k=3, threshold=threshold))
        return [[(t["tag"], t["score"]) for t in r["hashtags"]] for r in records]

    free = tagged(tiny_bundle, None)
    top = Counter(tags[0][0] for tags in free).most_common(1)[0][0]  # the hashtag most often ranked first
    high = _with_thresholds(tiny_bundle, tmp_path / "high", {top: 1.0})
    global_cut = read_bundle(high).threshold
    auto = tagged(high, "auto")
    assert all(tag != top for tags in auto for tag, _ in tags)  # its own cut-off drops it everywhere
    for before, after in zip(free, auto, strict=True):  # every other hashtag: the global threshold
        assert after == [(t, s) for t, s in before if t != top and s >= global_cut]
    assert tagged(high, 0.0) == free  # a number still applies to every hashtag

    old = _with_thresholds(tiny_bundle, tmp_path / "old", None)
    assert read_bundle(old).hashtag_thresholds == {}
    assert tagged(old, "auto") == tagged(old, read_bundle(old).threshold)
    report = evaluate(posts_dir, model=old, options=replace(CPU, ablations=False), console=QUIET)
    assert set(report.thresholded) == {"global"}
    assert any("no per-hashtag thresholds" in note for note in report.notes)


def test_thresholded_f1_of_the_report(bundle_report, tiny_bundle):
    rows = bundle_report.thresholded
    assert rows["global"]["threshold"] == read_bundle(tiny_bundle).threshold
    assert rows["per-hashtag"]["tuned"] == len(read_bundle(tiny_bundle).hashtag_thresholds)
    for row in rows.values():
        assert 0 <= row["precision"] <= 1 and 0 <= row["f1"] <= 1 and row["hashtags_per_post"] > 0


def test_without_scikit_learn_the_baseline_is_skipped_with_a_note(tiny_bundle, posts_dir, monkeypatch):
    monkeypatch.setattr(systems, "tfidf_available", lambda: False)
    report = evaluate(posts_dir, model=tiny_bundle, options=CPU, console=QUIET)
    assert TFIDF not in report.systems
    assert any("scikit-learn is not installed" in n and "[train]" in n for n in report.notes)
    assert ("model", TFIDF) not in [(d["system"], d["baseline"]) for d in report.differences]
