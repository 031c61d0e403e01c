"""Generated posts whose hashtag depends on the caption (animal) and the image (colour) together: 3 x 3 = 9
hashtags, so that a top-5 can miss. Tests that take over ~5 s on 2 cores are marked `slow`."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hashtagger.models  # noqa: F401  (its torchvision shim is installed before any test module imports transformers)

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40)}
ANIMALS = ("cat", "dog", "bird")
# Tiny models gain nothing from a second thread, and on a busy machine waiting threads cost the most. Set
# before torch starts (in this process and the CLI subprocesses).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The bundle-verification cache (bundle.verify_files) goes to a throw-away folder, for subprocesses too.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hashtagger-test-cache-")


TRAINED = {"tiny_run", "tiny_bundle"}  # fixtures that train and export a model: a minute or more on 2 cores


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINED & set(getattr(item, "fixturenames", ())):
            item.add_marker("slow")


FILLER = "look at this lovely picture from today in the park with friends".split()


def make_posts(root: Path, n: int = 320, seed: int = 0, size: int = 48, separate_tags: bool = False) -> Path:
    """n posts, one image each: the label is <colour><animal> (or, `separate_tags`, #<colour> #<animal>); colour
    only in pixels, animal only in words."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        colour = rng.choice(list(COLOURS))
        animal = rng.choice(ANIMALS)
        base = np.array(COLOURS[colour], dtype=np.float32)
        pixels = np.clip(base + nprng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"post{i:04d}.png")
        words = [*rng.sample(FILLER, 5), animal]
        rng.shuffle(words)
        tags = f" #{colour} #{animal}" if separate_tags else f" #{colour}{animal}"
        (root / f"post{i:04d}.txt").write_text(" ".join(words) + tags)
    return root


def make_region_features(posts: Path, out: Path, dim: int = 24, seed: int = 0) -> Path:
    """A detector's output stand-in: <image stem>.npz with 36 random features and normalised boxes per image."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for image in sorted(posts.glob("*.png")):
        boxes = np.sort(rng.uniform(0, 1, (36, 4)), axis=1).astype(np.float32)
        np.savez(out / f"{image.stem}.npz", features=rng.normal(size=(36, dim)).astype(np.float32), boxes=boxes)
    return out


def cli_without_torch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a fresh interpreter; stderr ends with "torch imported" or "torch not imported"."""
    code = textwrap.dedent(f"""
        import sys
        from typer.main import get_command
        from hashtagger.cli.main import app
        try:
            get_command(app).main(args={list(args)!r}, prog_name="hashtagger", standalone_mode=False)
        finally:
            print("torch imported" if "torch" in sys.modules else "torch not imported", file=sys.stderr)
    """)
    env = dict(os.environ, COLUMNS="300")  # rich wraps at 80 columns when stderr is not a terminal
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mediaeval2016"


@pytest.fixture(scope="session")
def shared_posts_csv() -> Path:
    """The real tweets beside the repository (../shared); CI has them."""
    path = SHARED_DATA / "posts.csv"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="session")
def posts_dir(tmp_path_factory) -> Path:
    return make_posts(tmp_path_factory.mktemp("posts"))


def train_tiny(data: Path, out: Path, run_name: str, epochs: int, **changes) -> Path:
    """A tiny model trained on generated posts, quietly: the run folder (TrainConfig `changes`, e.g. the head)."""
    from rich.console import Console

    from hashtagger.training.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(data),
        output=str(out),
        base_model="tiny",
        run_name=run_name,
        epochs=epochs,
        batch_size=16,
        lr=3e-3,
        new_lr=3e-3,
        **changes,
    )
    return train(cfg, Console(stderr=True, quiet=True))


@pytest.fixture(scope="session")
def tiny_run(posts_dir, tmp_path_factory) -> Path:
    """A tiny model trained on the generated posts (a few seconds on a CPU)."""
    return train_tiny(posts_dir, tmp_path_factory.mktemp("runs"), "tiny", epochs=20)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The tiny model exported as an ONNX bundle, with its int8 variant."""
    from rich.console import Console

    from hashtagger.export.build import ExportOptions, export

    out = tmp_path_factory.mktemp("bundle") / "exported"
    return export(tiny_run / "best", ExportOptions(output=str(out), int8=True), Console(stderr=True, quiet=True))


@pytest.fixture(scope="session")
def held_out_bundle(posts_dir, tmp_path_factory):
    """A name-head model of the generated posts (hashtags <colour><animal>) with half its 9 hashtags held out."""
    from rich.console import Console

    from hashtagger.export.build import ExportOptions, export

    out = tmp_path_factory.mktemp("held-out")
    changes = {"head": "names", "name_dropout": 0.5, "hold_out_tags": 0.5, "max_train_posts": 96}
    run = train_tiny(posts_dir, out, "held", epochs=3, **changes)
    return export(run / "best", ExportOptions(output=str(out / "exported")), Console(stderr=True, quiet=True))


def interrupt_tagging_after(monkeypatch, n: int) -> None:
    """Make `tag` stop with Ctrl-C once it has produced `n` records (0: before the first)."""
    import hashtagger.tagging.tagger as tagging

    real = tagging.tag_posts

    def interrupted(*args, **kwargs):
        for i, record in enumerate(real(*args, **kwargs)):
            if i == n:
                raise KeyboardInterrupt
            yield record

    monkeypatch.setattr(tagging, "tag_posts", interrupted)


NOBODY = 65534


@pytest.fixture()
def world(tmp_path):
    """A folder every user may enter (pytest's own are private to root), for the permission cases."""
    folder = Path(tempfile.mkdtemp(prefix="hashtagger-safety-"))
    folder.chmod(0o777)
    yield folder
    for p in folder.rglob("*"):
        p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def unprivileged():
    """As a user whom permissions bind: root reads everything, so root tests as 'nobody' for the block."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def record_calls(monkeypatch, owner, name: str) -> list:
    """The arguments of every call of owner.name from now on (the calls still run): a spy."""
    calls, real = [], getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls
