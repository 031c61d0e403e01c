"""Explanations (erasure weights, image / caption Shapley shares) from an exported bundle: on posts whose colour
hashtag is only in the pixels and whose animal hashtag is only in one word, they must say so."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import ANIMALS, COLOURS, FILLER, cli_without_torch, make_posts, train_tiny
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.errors import ImageError
from hashtagger.tagging.explain import ExplainOptions, explain_post


@pytest.fixture(scope="module")
def split_posts(tmp_path_factory):
    """Posts tagged #<colour> #<animal>: the colour hashtag rests on the image, the animal one on a single word."""
    return make_posts(tmp_path_factory.mktemp("split-posts"), n=240, seed=3, separate_tags=True)


@pytest.fixture(scope="module")
def split_bundle(split_posts, tmp_path_factory):
    from hashtagger.export.build import ExportOptions, export

    out = tmp_path_factory.mktemp("split-runs")
    run = train_tiny(split_posts, out, "split", epochs=12)
    return export(run / "best", ExportOptions(output=str(out / "exported")), Console(file=io.StringIO()))


def _post(root, colour: str, animal: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS[colour], np.float32) + rng.normal(0, 25, (48, 48, 3)), 0, 255)
    path = root / f"{colour}-{animal}-{seed}.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    words = list(rng.choice(FILLER, 5, replace=False))
    words.insert(int(rng.integers(0, 6)), animal)
    return path, " ".join(words)


@pytest.mark.parametrize("colour,animal", [(c, a) for c in COLOURS for a in ANIMALS])
def test_colour_rests_on_the_image_and_animal_on_its_word(split_bundle, tmp_path, colour, animal):
    image, caption = _post(tmp_path, colour, animal, seed=len(colour) + len(animal))
    _, explanations = explain_post(
        image, caption, ExplainOptions(model=split_bundle, top_k=len(COLOURS) + len(ANIMALS), device="cpu")
    )
    by_tag = {e.tag: e for e in explanations}
    assert set(by_tag) == {*COLOURS, *ANIMALS}
    assert {e.tag for e in explanations[:2]} == {colour, animal}  # the model itself got the post right

    c = by_tag[colour]
    assert c.image > c.text and c.image_share > 0.5, (c.image, c.text)
    assert len(c.regions) == 36 and c.boxes.shape == (36, 4)

    a = by_tag[animal]
    weights = dict(a.words)
    others = [w for word, w in a.words if word != animal]
    assert weights[animal] > max(others), a.words


def test_tag_explain_adds_top_words_and_regions(split_bundle, split_posts, tmp_path):
    for name in ("post0000.png", "post0000.txt", "post0001.png", "post0001.txt"):
        shutil.copy(split_posts / name, tmp_path / name)
    proc = cli_without_torch(
        "tag", str(tmp_path), "--model", str(split_bundle), "--explain", "--top-k", "2", "--device", "cpu", "--keep-own"
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    records = json.loads(proc.stdout)["records"]
    assert len(records) == 2
    record = records[0]
    caption = (split_posts / "post0000.txt").read_text()
    animal = next(a for a in ANIMALS if a in caption.split())
    assert len(record["hashtags"]) == 2
    for entry in record["hashtags"]:
        why = entry["explanation"]
        assert abs(why["image_share"] + why["text_share"] - 1) < 1e-6
        assert 1 <= len(why["words"]) <= 3 and len(why["regions"]) == 3
        assert all(len(r["box"]) == 4 for r in why["regions"])
        if entry["tag"] == animal:
            assert why["words"][0]["word"] == animal
        if entry["tag"] in COLOURS:
            assert why["image_share"] > 0.5


def test_tag_explain_needs_json(split_bundle, split_posts, tmp_path):
    result = CliRunner().invoke(
        app,
        ["tag", str(split_posts), "--model", str(split_bundle), "--explain", "-o", str(tmp_path / "out.csv")],
    )
    assert result.exit_code == 1
    assert "--explain" in result.stderr and "JSON" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_explain_command_writes_a_png(split_bundle, tmp_path):
    image, caption = _post(tmp_path, "red", "cat")
    caption_file = tmp_path / "caption.txt"
    caption_file.write_text(caption)
    out = tmp_path / "why.png"
    proc = cli_without_torch(
        "explain", str(image), str(caption_file), "--model", str(split_bundle), "-o", str(out), "--top-k", "3"
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 3 * im.height // 2  # three panels side by side
    assert "#red" in proc.stderr and "explanation written to" in proc.stderr


def test_explain_on_an_unreadable_image_says_why(split_bundle, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        explain_post(bad, "a cat", ExplainOptions(model=split_bundle, device="cpu"))
    out = tmp_path / "why.png"
    result = CliRunner().invoke(
        app,
        ["explain", str(bad), "--caption", "a cat", "--model", str(split_bundle), "-o", str(out)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.jpg" in lines[0]
    assert "corrupt" in lines[0] or "not an image" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
