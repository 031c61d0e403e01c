"""A newcomer's path (issue 28): the model found from any folder, its scope said in `tag`'s summary, a warning when
the suggestions are only the frequency prior's, the CPU recipe in one flag, install hints that work, extras
checked before any work, and the training data found whichever folder a run is used from."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hashtagger.bundle import locate, scope
from hashtagger.bundle.format import read_bundle, write_manifest
from hashtagger.cli.main import app
from hashtagger.errors import BundleError
from hashtagger.io import extras

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
ENV = {"COLUMNS": "300"}


def fake_bundle(folder: Path) -> Path:
    """What locate.find_model looks for (bundle.json and manifest.json), without any graph."""
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text("{}")
    (folder / "manifest.json").write_text("{}")
    return folder


def linked_copy(bundle: Path, to: Path, **info) -> Path:
    """A bundle whose files link to `bundle`'s (its companion folder left out), with bundle.json's entries replaced
    by `info` (None: removed), and its manifest rewritten."""
    to.mkdir()
    for f in bundle.iterdir():
        if f.is_file() and f.name not in ("bundle.json", "manifest.json"):
            (to / f.name).symlink_to(f)
    merged = json.loads((bundle / "bundle.json").read_text()) | info
    (to / "bundle.json").write_text(json.dumps({k: v for k, v in merged.items() if v is not None}))
    write_manifest(to)
    return to


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder outside the repository, with no ./exported and no $HASHTAGGER_MODEL."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv(locate.ENV, raising=False)
    return folder


@pytest.fixture
def installed_default(tmp_path, monkeypatch):
    """The shipped bundle as an install puts it: a `hashtagger_default_model` package on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / locate.DEFAULT_PACKAGE).symlink_to(EXPORTED)
    monkeypatch.syspath_prepend(str(site))
    return site / locate.DEFAULT_PACKAGE


# 1. The default model is found from anywhere.


def test_default_model_was_only_found_from_the_repository_root(elsewhere, installed_default):
    assert locate.find_model() == locate.ModelChoice(installed_default, "installed default")
    result = CliRunner().invoke(app, ["tag", str(EXAMPLES), "--device", "cpu", "-o", "out.json"], env=ENV)
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(Path("out.json").read_text())["records"]) == 6


def test_model_is_chosen_by_flag_then_environment_then_exported_then_installed(
    elsewhere, installed_default, monkeypatch
):
    fake_bundle(elsewhere / "exported")
    monkeypatch.setenv(locate.ENV, "/from/env")
    assert locate.find_model("given") == locate.ModelChoice(Path("given"), "--model")
    assert locate.find_model() == locate.ModelChoice(Path("/from/env"), "$HASHTAGGER_MODEL")
    monkeypatch.delenv(locate.ENV)
    assert locate.find_model() == locate.ModelChoice(Path("exported"), "./exported")
    (elsewhere / "exported" / "bundle.json").unlink()  # a folder named exported that holds no bundle is passed over
    assert locate.find_model().is_default


def test_no_model_anywhere_says_how_to_get_one_in_one_line(elsewhere, monkeypatch):
    monkeypatch.setattr(locate, "installed_default", lambda: None)
    with pytest.raises(BundleError) as error:
        locate.find_model()
    assert "--model" in str(error.value) and "hashtagger train DATA --preset cpu" in str(error.value)
    for args in (["tag", str(EXAMPLES)], ["explain", str(EXAMPLES / "storm.jpg")], ["evaluate"]):
        result = CliRunner().invoke(app, args, env=ENV)
        assert result.exit_code == 1 and result.stderr.strip() == f"error: {locate.NO_MODEL}", result.stderr


@pytest.mark.parametrize("command", ["tag", "explain", "evaluate"])
def test_every_command_help_says_where_the_model_comes_from(command):
    result = CliRunner().invoke(app, [command, "--help"], env=ENV)
    text = " ".join(result.stdout.split())
    assert "$HASHTAGGER_MODEL, else ./exported if it holds a bundle, else the installed default" in text


@pytest.mark.slow
def test_the_wheel_ships_the_default_model(tmp_path):
    """pip wheel of the repository holds every file of the bundle's manifest and of its companion's (candidates/;
    209 MB zipped, 128 MB of it the companion).
    Built from links to the repository's files: setuptools writes build/ and an .egg-info into the source
    folder, which would shadow the installed distribution's metadata."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "hashtagger", "exported"):
        (source / name).symlink_to(REPO / name)
    wheel_command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = subprocess.run(
        [*wheel_command, "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("lxmert_hashtagger-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.split("/", 1)[1]: z.read(n) for n in z.namelist() if n.startswith(f"{locate.DEFAULT_PACKAGE}/")}
    for folder in ("", "candidates/"):  # the bundle, then its names-head companion (its own manifest)
        manifest = json.loads(shipped[f"{folder}manifest.json"])
        assert {name: hashlib.sha256(shipped[folder + name]).hexdigest() for name in manifest} == manifest


# 2. Scope stated where users look.


def test_tag_summary_did_not_say_what_the_model_knows(elsewhere, installed_default):
    result = CliRunner().invoke(app, ["tag", str(EXAMPLES), "--device", "cpu", "-o", "out.json"], env=ENV)
    assert result.exit_code == 0, result.stderr
    line = "model: default (250 hashtags of 2012-2015 news tweets, MediaEval 2016); train on your own posts for yours"
    assert line in result.stderr.splitlines()


def test_an_old_bundle_says_where_its_vocabulary_came_from(tmp_path):
    old = linked_copy(EXPORTED, tmp_path / "old", scope=None)
    bundle = read_bundle(old)
    assert (
        scope.describe(bundle, default=False) == f"model: {old} (250 hashtags of the posts in mediaeval2016/posts.csv)"
    )
    assert scope.prior(bundle, 5) == json.loads((EXPORTED / "bundle.json").read_text())["scope"]["prior"]


def same_post_five_times(folder: Path) -> Path:
    folder.mkdir()
    for i in range(5):
        (folder / f"p{i}.jpg").symlink_to(EXAMPLES / "storm.jpg")
        (folder / f"p{i}.txt").write_text("Huge waves hitting the shore tonight")
    return folder


def test_a_run_of_prior_like_suggestions_went_unremarked(tmp_path):
    posts = same_post_five_times(tmp_path / "posts")
    runner = CliRunner()
    first = runner.invoke(app, ["tag", str(posts), "--model", str(EXPORTED), "--device", "cpu"], env=ENV)
    top2 = [h["tag"] for h in json.loads(first.stdout)["records"][0]["hashtags"][:2]]
    assert "frequency prior" not in first.stderr  # the shipped prior is #sandy #hurricanesandy: not these posts'
    like = linked_copy(EXPORTED, tmp_path / "like", scope={"prior": top2})
    result = runner.invoke(app, ["tag", str(posts), "--model", str(like), "--device", "cpu"], env=ENV)
    assert result.exit_code == 0, result.stderr
    warning = " ".join(line for line in result.stderr.splitlines() if "frequency prior" in line)
    assert warning.startswith("warning: 5 of the 5 posts (100%) got the frequency prior's top hashtags")
    assert f"#{top2[0]} #{top2[1]}" in warning and "--preset cpu" in warning


# 3. --candidates with the shipped (linear-head) model: its names-head companion ranks them.


def test_the_shipped_model_refused_candidates(tmp_path):
    (tmp_path / "mine.txt").write_text("brunch\nhiking\n")
    args = ["tag", str(EXAMPLES), "--model", str(EXPORTED), "--candidates", str(tmp_path / "mine.txt")]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--top-k", "300"], env=ENV)
    assert result.exit_code == 0, result.stderr
    companion = f"candidates scored by the names-head companion model ({EXPORTED / 'candidates'})"
    assert companion in result.stderr.splitlines()
    for record in json.loads(result.stdout)["records"]:
        seen = {h["tag"]: h["seen"] for h in record["hashtags"]}
        assert len(seen) == 252 and seen["brunch"] is False and seen["hiking"] is False and seen["sandy"] is True
    # The same bundle without its companion says what to do.
    alone = linked_copy(EXPORTED, tmp_path / "alone")
    result = CliRunner().invoke(app, [*args[:3], str(alone), *args[4:]], env=ENV)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "leave --candidates out, or train a model that can: hashtagger train DATA --preset cpu --head names" in (
        result.stderr
    )


# 4. The CPU recipe in one flag; a run that learnt only the prior says so.


@pytest.fixture
def captured_training(monkeypatch, tmp_path):
    import hashtagger.training.train as training

    seen = []
    monkeypatch.setattr(training, "train", lambda cfg, console, resume=None: seen.append(cfg))
    (tmp_path / "posts").mkdir()
    return seen, tmp_path / "posts"


def test_training_the_cpu_recipe_took_seven_flags(captured_training):
    seen, posts = captured_training
    result = CliRunner().invoke(app, ["train", str(posts), "--preset", "cpu"], env=ENV)
    assert result.exit_code == 0, result.stderr
    cfg = seen[0]
    assert (cfg.base_model, cfg.text_init, cfg.backbone, cfg.pooling) == (
        "mini",
        "minilm",
        "efficientnet-lite2",
        "mean",
    )
    assert (cfg.modality_dropout, cfg.lr, cfg.epochs, cfg.vocab_size) == (0.35, 5e-5, 4, 250)


def test_flags_given_explicitly_win_over_the_preset(captured_training):
    seen, posts = captured_training
    args = ["train", str(posts), "--preset", "cpu", "--epochs", "1", "--vocab-size", "40", "--lr", "1e-4"]
    assert CliRunner().invoke(app, args, env=ENV).exit_code == 0
    assert (seen[0].epochs, seen[0].prep.vocab_size, seen[0].lr, seen[0].base_model) == (1, 40, 1e-4, "mini")
    result = CliRunner().invoke(app, ["train", str(posts), "--preset", "gpu"], env=ENV)
    assert result.exit_code == 1 and "unknown --preset 'gpu': use cpu" in result.stderr


def test_tiny_was_not_labelled_tests_only():
    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env=ENV).stdout.split())
    assert "tiny (for tests only" in text and "--preset" in text


def test_collapse_share_reads_the_best_epoch():
    assert scope.collapse_share(0.95, []) == 0.95
    history = [
        {"val_f1@2": 0.2, "val_loss": 0.3, "top2_same_as_prior": 0.1},
        {"val_f1@2": 0.4, "val_loss": 0.2, "top2_same_as_prior": 0.97},
    ]
    assert scope.collapse_share(None, history) == 0.97  # a checkpoint written before the entry
    assert scope.collapse_warning(0.89, "x") is None and "--preset cpu" in scope.collapse_warning(0.9, "x")


def make_prior_posts(root: Path, n: int = 80) -> Path:
    """Posts whose hashtags say nothing of the post: #a on all, #b on 4 in 5, #c on 1 in 5, whatever the words and
    pixels. A model can learn only the prior: #a #b first for every post."""
    rng = np.random.default_rng(0)
    words = "sun rain park city river friends morning night coffee street music garden".split()
    root.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"p{i:03d}.png")
        tags = "#a #b" if i % 5 else "#a #c"
        (root / f"p{i:03d}.txt").write_text(f"{' '.join(rng.choice(words, 4))} {tags}")
    return root


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    """A tiny run trained from its own folder with relative paths, on posts that teach only the prior."""
    from rich.console import Console

    from hashtagger.training.train import TrainConfig, train

    base = tmp_path_factory.mktemp("prior")
    make_prior_posts(base / "posts")
    cwd = Path.cwd()
    os.chdir(base)
    try:
        console = Console(stderr=True, record=True, width=300)
        cfg = TrainConfig(data="posts", output="runs", base_model="tiny", run_name="r", epochs=2, batch_size=16)
        run = train(cfg, console)
    finally:
        os.chdir(cwd)
    return base / run, console.export_text()


@pytest.mark.slow
def test_a_run_that_learnt_only_the_prior_said_nothing(prior_run, tmp_path):
    from rich.console import Console

    from hashtagger.export.build import ExportOptions, export

    run, printed = prior_run
    assert "learnt only the frequency prior" in " ".join(printed.split()) and "--preset cpu" in printed
    console = Console(stderr=True, record=True, width=300)
    bundle = export(run / "best", ExportOptions(output=str(tmp_path / "b")), console)
    assert "learnt only the frequency prior" in console.export_text()
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["scope"]["prior"][:2] == ["a", "b"] and info["scope"]["top2_same_as_prior"] >= scope.COLLAPSED
    # --keep-own: these posts carry the prior's hashtags, which tag otherwise leaves out as their own
    args = ["tag", str(run.parent.parent / "posts"), "--model", str(bundle), "--keep-own"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    assert "learnt only the frequency prior" in result.stderr and "got the frequency prior's" in result.stderr


# 7. Install hints that work; extras checked before any work.


def test_install_hint_from_the_repository_pins_torch_with_its_constraints(monkeypatch, tmp_path):
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")
    monkeypatch.setattr(extras, "install_source", lambda: (tmp_path, True))
    assert extras.install_command("train") == f"pip install -c {tmp_path}/constraints.txt -e '{tmp_path}[train]'"


def test_install_hint_for_a_wheel_named_a_package_not_on_the_index(monkeypatch):
    monkeypatch.setattr(extras, "install_source", lambda: None)
    requires = ['torch>=2.5; extra == "train"', 'timm>=1.0; extra == "train"', 'pyarrow>=14; extra == "parquet"']
    monkeypatch.setattr(extras.metadata, "requires", lambda name: requires)
    assert extras.install_command("parquet") == "pip install 'pyarrow>=14'"
    assert extras.install_command("train") == (
        "pip install torch==2.13.0 'timm>=1.0' (add --extra-index-url https://download.pytorch.org/whl/cpu for the "
        "CPU-only torch)"
    )


def test_the_hints_torch_pins_are_the_constraints():
    pins = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    assert sorted(pins) == sorted(extras.PINS.values())


def test_parquet_output_without_pyarrow_failed_after_tagging(monkeypatch, tmp_path):
    import hashtagger.tagging.run as run

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setattr(run, "Tagger", None)  # tagging would fail on this, not on the check
    args = ["tag", str(EXAMPLES), "--model", str(EXPORTED), "-o", str(tmp_path / "x.parquet")]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 1 and not (tmp_path / "x.parquet").exists()
    assert result.stderr.strip() == (
        "error: writing Parquet (--output *.parquet or --format parquet) needs the [parquet] extra (pyarrow not "
        f"installed): {extras.install_command('parquet')}"
    )


def test_evaluate_plot_demanded_all_of_train(monkeypatch, elsewhere):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(app, ["evaluate", "--plot", "p.png", "--model", "nowhere"], env=ENV)
    assert result.exit_code == 1 and "extra" not in result.stderr and "nowhere" in result.stderr


# 8. Paths recorded relative to where `train` ran.


@pytest.mark.slow
def test_a_run_recorded_paths_relative_to_where_train_ran(prior_run, elsewhere):
    from hashtagger.models.checkpoint import load_checkpoint

    run, _ = prior_run
    info = json.loads((run / "best" / "hashtagger.json").read_text())
    assert info["args"]["data"] == str(run.parent.parent / "posts") and Path(info["args"]["output"]).is_absolute()
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(run), "--split", "val", "--k", "2"], env=ENV)
    assert result.exit_code == 0, result.stderr
    # A run of an older version recorded the paths as typed: they are read relative to where it ran.
    info["args"] |= {"data": "posts", "output": "runs"}
    (run / "best" / "hashtagger.json").write_text(json.dumps(info))
    assert load_checkpoint(run / "best").meta.args["data"] == str(run.parent.parent / "posts")


def test_evaluate_failed_on_a_path_the_user_never_typed(elsewhere):
    """The shipped bundle records ../shared/... on the machine that built it."""
    result = CliRunner().invoke(app, ["evaluate", "--model", str(EXPORTED)], env=ENV)
    recorded = json.loads((EXPORTED / "bundle.json").read_text())["training"]["data"]
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"error: the model records its training data as {recorded}, which is not here: pass the posts it was "
        "trained on (hashtagger evaluate DATA ..., or --data DATA of export and adapt)"
    )
