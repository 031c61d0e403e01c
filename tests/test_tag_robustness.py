"""`tag` on awkward input: every bad post gets a record that says why, and the run goes on."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import helpers_images as imgs
import numpy as np
import pytest
from rich.console import Console

from hashtagger.data.images import load_image
from hashtagger.data.posts import load_posts
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import tag_posts
from hashtagger.tagging.records import NO_CAPTION
from hashtagger.tagging.run import tag
from hashtagger.tagging.tagger import open_runner
from hashtagger.tagging.writers import read_records

CAPTION = "my cat in the park today #redcat"

# file name -> (maker, has caption, expected status prefix)
CASES = {
    "good one.png": (imgs.good, True, "ok"),
    "sub dir/café été ünï.jpg": (imgs.good, True, "ok"),
    "empty.jpg": (imgs.zero_byte, True, "skipped: image file is empty"),
    "text.png": (imgs.not_an_image, True, "skipped: not an image"),
    "truncated.jpg": (imgs.truncated_jpeg, True, "skipped: image data is corrupt"),
    "bomb.png": (lambda p: imgs.png_claiming_size(p, 200_000, 200_000), True, "skipped: image too large"),
    "cmyk.jpg": (imgs.cmyk_jpeg, True, "ok"),
    "grey16.png": (imgs.png16, True, "ok"),
    "grey.png": (imgs.grey_png, True, "ok"),
    "palette.png": (imgs.palette_png, True, "ok"),
    "rgba.png": (imgs.rgba_png, True, "ok"),
    "exif.jpg": (imgs.exif_rotated_jpeg, True, "ok"),
    "anim.gif": (imgs.animated_gif, True, "ok"),
    "nocaption.png": (imgs.good, False, "ok: " + NO_CAPTION),
    "badutf8.png": (imgs.good, None, "ok: caption is not valid UTF-8"),
}


def make_mixed(root: Path) -> Path:
    for name, (maker, caption, _) in CASES.items():
        path = root / name
        maker(path)
        if caption is True:
            path.with_suffix(".txt").write_text(CAPTION, encoding="utf-8")
        elif caption is None:
            path.with_suffix(".txt").write_bytes(b"caf\xe9 with my cat \xff\xfe #redcat")
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return make_mixed(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="module")
def mixed_run(mixed, tiny_bundle, tmp_path_factory):
    """One library run over every awkward case, batch size 4 so that bad and good posts share batches."""
    out = tmp_path_factory.mktemp("out") / "tags.jsonl"
    log = io.StringIO()
    summary = tag(mixed, out, None, TagOptions(model=tiny_bundle, batch_size=4), console=Console(file=log, width=200))
    records = read_records(out, "jsonl")
    return summary, records, log.getvalue()


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_has_its_status(mixed_run, name):
    _, records, _ = mixed_run
    by_id = {r["id"]: r for r in records}
    record = by_id[name]  # the id is the path as given: spaces and non-ASCII letters kept
    expected = CASES[name][2]
    assert record["status"].startswith(expected), record
    if expected.startswith("ok"):
        assert 1 <= len(record["hashtags"]) <= 5
    else:
        assert record["hashtags"] == []


def test_one_bad_post_never_aborts_the_run(mixed_run):
    summary, records, log = mixed_run
    assert [r["id"] for r in records] == sorted(CASES, key=lambda n: n)  # every post, in input (path) order
    good = sum(1 for *_, status in CASES.values() if status.startswith("ok"))
    assert summary.tagged == good
    assert summary.skipped == {"image_empty": 1, "not_an_image": 1, "image_corrupt": 1, "image_too_large": 1}
    assert summary.notes == {"no_caption": 1, "caption_not_utf8": 1}
    reasons = {r["id"]: r["reason"] for r in records}
    assert reasons["truncated.jpg"] == "image_corrupt" and reasons["bomb.png"] == "image_too_large"
    assert "image_corrupt" in log and "posts/s" in log  # the summary counts reason codes


def test_decoding_normalises_every_image_kind(tmp_path):
    red = load_image(imgs.cmyk_jpeg(tmp_path / "cmyk.jpg"))
    assert red.mode == "RGB" and red.getpixel((24, 24))[0] > 200 and red.getpixel((24, 24))[1] < 60

    ramp = np.asarray(load_image(imgs.png16(tmp_path / "g16.png")))
    assert ramp.shape == (48, 48, 3)
    assert ramp[0, 0, 0] == 0 and ramp[0, -1, 0] == 255 and 100 < ramp[0, 24, 0] < 160  # scaled, not clipped

    grey = load_image(imgs.grey_png(tmp_path / "grey.png"))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (128, 128, 128)

    palette = load_image(imgs.palette_png(tmp_path / "p.png"))
    assert palette.mode == "RGB" and np.asarray(palette)[..., 2].mean() > 150

    rgba = load_image(imgs.rgba_png(tmp_path / "rgba.png"))
    assert rgba.getpixel((2, 2)) == (255, 255, 255)  # transparent -> white, not black
    assert rgba.getpixel((40, 2)) == imgs.RED

    upright = load_image(imgs.exif_rotated_jpeg(tmp_path / "exif.jpg"))
    assert upright.size == (30, 60)

    first = load_image(imgs.animated_gif(tmp_path / "anim.gif"))
    r, _g, b = first.getpixel((10, 10))
    assert r > 200 and b < 60  # the first (red) frame


def test_pixel_limit_from_options(tiny_bundle, tmp_path):
    imgs.good(tmp_path / "a.png")
    bundle, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    posts = load_posts(tmp_path)
    [record] = tag_posts(posts, bundle, runner, TagOptions(max_pixels=48 * 48 - 1))
    assert record["status"] == f"skipped: image too large (48x48 pixels; limit {48 * 48 - 1})"
    [record] = tag_posts(posts, bundle, runner, TagOptions(max_pixels=48 * 48))
    assert record["status"] == "ok: " + NO_CAPTION


def test_csv_captions_and_missing_images(tiny_bundle, tmp_path):
    imgs.good(tmp_path / "images" / "a.png")
    imgs.good(tmp_path / "images" / "b b.png", imgs.BLUE)
    captions = [
        'my cat, the "best" one, in the park',
        "a dog\non two lines, with a comma",
        "",
        "a dog, again",
        'only "quotes"',
    ]
    rows = [
        ("images/a.png", captions[0]),
        ("images/b b.png", captions[1]),
        ("images/a.png", captions[2]),  # same image again, no caption
        ("images/missing.png", captions[3]),
        ("", captions[4]),
    ]
    with open(tmp_path / "posts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    posts = load_posts(tmp_path / "posts.csv")
    assert [p.caption or "" for p in posts] == captions  # commas, quotes and newlines survive

    out = tmp_path / "tags.csv"
    summary = tag(
        tmp_path / "posts.csv",
        out,
        None,
        TagOptions(model=tiny_bundle, batch_size=8),
        console=Console(file=io.StringIO()),
    )
    with open(out, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert [r["id"] for r in got] == [r[0] for r in rows]
    assert [r["status"] for r in got] == [
        "ok",
        "ok",
        "ok: " + NO_CAPTION,
        "skipped: image file not found",
        "skipped: no image named",
    ]
    assert [r["reason"] for r in got] == ["ok", "ok", "no_caption", "image_not_found", "no_image"]
    assert summary.tagged == 3 and summary.skipped == {"image_not_found": 1, "no_image": 1}
    for r in got[:3]:
        tags, scores = r["hashtags"].split(), r["scores"].split()
        vocab = json.loads((tiny_bundle / "hashtags.json").read_text())["vocab"]
        assert len(tags) == len(scores) == min(5, len(vocab))
        assert all(t.startswith("#") for t in tags)
        assert [float(s) for s in scores] == sorted((float(s) for s in scores), reverse=True)
