"""What users of WD14-style taggers, whisper and rembg expect: one image from the command line, `.tags` sidecars,
--version, shell completion, a config file, a Python API that takes images in memory and gives one record type,
`from hashtagger import ImageError`, and an explain picture that shows what the model sees, in plain words."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.data.images import ImageSettings, crop_window
from hashtagger.tagging.writers import read_records
from hashtagger.version import __version__

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
WIDE = {"COLUMNS": "300"}


@pytest.fixture
def posts(tmp_path) -> Path:
    root = tmp_path / "posts"
    root.mkdir()
    for f in EXAMPLES.iterdir():
        if f.stem in ("marathon", "eclipse"):
            shutil.copy(f, root / f.name)
    return root


def invoke(*args: object, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={**WIDE, **(env or {})})


def test_version_flag():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"hashtagger {__version__}"


def test_shell_completion_is_offered():
    result = invoke("--help")
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_one_image_from_the_command_line(posts, tmp_path):
    out = tmp_path / "one.jsonl"
    result = invoke("tag", posts / "marathon.jpg", "--model", EXPORTED, "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output
    (record,) = read_records(out, "jsonl")
    assert record["id"] == "marathon.jpg" and record["reason"] == "ok"  # its .txt was read
    result = invoke("tag", posts / "eclipse.jpg", "--caption", "Total #eclipse over the city", "--model", EXPORTED)
    assert result.exit_code == 0, result.output
    assert read_records_from(result.stdout)[0]["reason"] == "ok"  # the caption given, not "no_caption"
    result = invoke("tag", posts, "--caption", "a folder has many captions", "--model", EXPORTED)
    assert result.exit_code == 1 and "is not an image" in result.stderr


def read_records_from(stdout: str) -> list[dict]:
    return json.loads(stdout)["records"]


def test_sidecars_beside_each_image_with_each_policy(posts, tmp_path):
    caption = (posts / "marathon.txt").read_bytes()
    result = invoke("tag", posts, "--model", EXPORTED, "--top-k", "2", "--sidecars", "skip", "-o", tmp_path / "a.json")
    assert result.exit_code == 0, result.output
    records = {r["id"]: [h["tag"] for h in r["hashtags"]] for r in read_records(tmp_path / "a.json", "json")}
    for image in ("marathon", "eclipse"):
        assert (posts / f"{image}.tags").read_text() == "".join(f"#{t}\n" for t in records[f"{image}.jpg"])
    assert (posts / "marathon.txt").read_bytes() == caption  # the caption is never touched
    (posts / "eclipse.tags").write_text("#mine\n")
    again = invoke("tag", posts, "--model", EXPORTED, "--top-k", "2", "--sidecars", "skip", "-o", tmp_path / "b.json")
    assert "2 skipped" in " ".join(again.stderr.split())
    assert (posts / "eclipse.tags").read_text() == "#mine\n"
    invoke("tag", posts, "--model", EXPORTED, "--top-k", "2", "--sidecars", "append", "-o", tmp_path / "c.json")
    appended = (posts / "eclipse.tags").read_text().split()
    assert appended[0] == "#mine" and len(appended) == 3  # its own #mine is not suggested back: two new ones


def test_config_file_sets_defaults_and_flags_win(posts, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "default").symlink_to(EXPORTED, target_is_directory=True)
    (tmp_path / "hashtagger.toml").write_text('[tag]\nmodel = "models/default"\ntop-k = 1\nalways = ["mine", "ours"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    result = invoke("tag", posts / "marathon.jpg")
    assert result.exit_code == 0, result.output
    tags = [h["tag"] for h in read_records_from(result.stdout)[0]["hashtags"]]
    assert tags[:2] == ["mine", "ours"] and len(tags) == 3
    result = invoke("tag", posts / "marathon.jpg", "--top-k", "2")  # the flag wins
    assert len(read_records_from(result.stdout)[0]["hashtags"]) == 4
    # No ./hashtagger.toml: the user's config; its relative paths are relative to its own folder.
    user = tmp_path / "xdg" / "hashtagger"
    user.mkdir(parents=True)
    (tmp_path / "hashtagger.toml").rename(user / "config.toml")
    (user / "models").symlink_to(tmp_path / "models", target_is_directory=True)
    monkeypatch.chdir(elsewhere)
    result = invoke("tag", posts / "marathon.jpg", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert result.exit_code == 0, result.output
    assert len(read_records_from(result.stdout)[0]["hashtags"]) == 3
    (user / "config.toml").write_text("[tag]\ntopk = 3\n")
    result = invoke("tag", posts, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert result.exit_code == 1 and "has no option topk" in result.stderr and "top-k" in result.stderr


def test_image_error_and_the_record_types_import_from_the_package():
    import hashtagger
    from hashtagger import ImageError, Record, Tag
    from hashtagger.errors import ImageError as Defined

    assert ImageError is Defined and issubclass(ImageError, hashtagger.HashtaggerError)
    assert Record({"id": "a", "status": "ok", "reason": "ok", "hashtags": [{"tag": "x", "score": 0.5}]}).tags == [
        Tag("x", 0.5)
    ]


def test_the_api_takes_images_in_memory(posts):
    from hashtagger import ImageError, Tagger

    tagger = Tagger.open(EXPORTED, device="cpu")
    path = posts / "marathon.jpg"
    caption = (posts / "marathon.txt").read_text()
    by_path = tagger.tag(path, caption)
    by_bytes = tagger.tag(path.read_bytes(), caption)
    assert by_bytes.id == "<image 0>" and by_bytes["hashtags"] == by_path["hashtags"]  # the same decode
    with Image.open(path) as im:
        im.load()
        by_pil = tagger.tag(im, caption)
        by_array = tagger.tag(np.asarray(im.convert("RGB")), caption)
    for other in (by_pil, by_array):  # decoded at full size, not JPEG-draft reduced: scores move a little
        assert [t.tag for t in other.tags][:2] == [t.tag for t in by_path.tags][:2]
    with pytest.raises(ImageError) as bad:
        tagger.tag(np.zeros((4, 4, 2), np.float32), caption)
    assert bad.value.code == "not_an_image"
    records = list(tagger.tag_many([(b"", "empty"), (path, caption), (io.BytesIO(), "a stream")]))
    assert [r.reason for r in records] == ["image_empty", "ok", "not_an_image"]  # reported, not raised


def test_explain_frames_what_the_model_sees_and_says_its_colours_in_words():
    from hashtagger.tagging.attribution import Explanation
    from hashtagger.tagging.explain import figure

    settings = ImageSettings(size=224, crop_pct=0.875, crop_mode="center")
    picture = np.zeros((300, 600, 3), np.uint8)
    boxes = np.array([[0, 0, 0.5, 1], [0.5, 0, 1, 1]], np.float32)
    why = Explanation("sandy", 0.5, 0.2, 0.1, [("waves", 0.3), ("tonight", -0.1)], np.array([0.2, -0.1]), boxes)
    fig = figure(picture, [why], settings)
    left, top, right, bottom = crop_window(600, 300, settings)
    frames = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(frames) == 1 and np.allclose(frames[0].get_bbox().bounds, (left, top, right - left, bottom - top))
    assert left > 0  # a centre crop: the picture's sides are outside the frame
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "raise the hashtag's score" in legend and "lower it" in legend and "what the model sees" in legend
