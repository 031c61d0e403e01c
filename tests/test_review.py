"""The review sheet without a browser: what goes into the page (escaping, bounded bytes, skipped posts, the
outputs it reads) and its output's claim; the sidecars that carry accepted hashtags beside each image."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_without_torch
from PIL import Image

from hashtagger.data.posts import load_posts
from hashtagger.errors import DataError, OutputError
from hashtagger.review.entries import MAX_CAPTION_CHARS, load_entries
from hashtagger.review.sheet import SheetOptions, build_sheet, script_json
from hashtagger.review.thumbs import MAX_BYTES, thumbnail_bytes
from hashtagger.tagging.ray.shards import shard_folder
from hashtagger.tagging.sidecars import read_sidecar, sidecar_path, sidecars_from, write_sidecar
from hashtagger.tagging.writers import write_file

EVIL = 'Look </script><script>window.pwned=1</script> <img src=x onerror="window.pwned=2"> & <!-- #sandy'


def make_run(root: Path, fmt: str = "jsonl") -> tuple[Path, Path]:
    """A posts folder (noise images of varied sizes, an unreadable one, a caption with markup) and a tag output
    for it, as `tag --candidates` writes records."""
    posts = root / "posts"
    posts.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(640, 480), (300, 900), (1200, 900)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(posts / f"p{i}.png")
        (posts / f"p{i}.txt").write_text(f"caption {i} #tag{i}")
    (posts / "p0.txt").write_text(EVIL)
    (posts / "broken.jpg").write_bytes(b"not a jpeg")
    records = [
        {"id": "broken.jpg", "status": "skipped: not an image (unrecognised format)", "reason": "not_an_image"},
        *(
            {
                "id": f"p{i}.png",
                "status": "ok",
                "reason": "ok",
                "hashtags": [
                    {"tag": "sandy", "score": 0.61, "seen": True},
                    {"tag": "newtag", "score": 0.2, "seen": False},
                ],
            }
            for i in range(3)
        ),
    ]
    for r in records:
        r.setdefault("hashtags", [])
    output = root / f"tags.{fmt}"
    write_file(output, records, fmt)
    return posts, output


def blob(sheet: Path) -> dict:
    text = sheet.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="sheet-data">(.*?)</script>', text, re.S)
    assert found, "the data blob is missing"
    return json.loads(found.group(1))


def test_a_sheet_holds_every_post_its_thumbnails_and_the_skipped_reason(tmp_path):
    posts, output = make_run(tmp_path)
    summary = build_sheet(output, tmp_path / "sheet.html", SheetOptions(posts=posts))
    data = blob(tmp_path / "sheet.html")
    assert [p["id"] for p in data["posts"]] == ["broken.jpg", "p0.png", "p1.png", "p2.png"]
    broken, p0 = data["posts"][0], data["posts"][1]
    assert broken["skipped"] and broken["thumb"] == -1 and "not an image" in broken["status"]
    assert "not an image" in broken["thumb_error"]
    assert p0["caption"] == EVIL and p0["tags"] == [["sandy", 0.61, True], ["newtag", 0.2, False]]
    assert Path(p0["image"]).is_absolute() and Path(p0["image"]).is_file()
    assert len(data["thumbs"]) == 3 and all(u.startswith("data:image/jpeg;base64,") for u in data["thumbs"])
    assert (summary.posts, summary.skipped, summary.thumbnails, summary.no_thumbnail) == (4, 1, 3, 1)


def test_user_text_cannot_end_the_script_or_reach_the_network(tmp_path):
    posts, output = make_run(tmp_path)
    build_sheet(output, tmp_path / "sheet.html", SheetOptions(posts=posts))
    text = (tmp_path / "sheet.html").read_text(encoding="utf-8")
    start = text.index('id="sheet-data">')
    end = text.index("</script>", start)
    assert "<" not in text[start + len('id="sheet-data">') : end], "a raw '<' inside the data blob"
    assert "window.pwned" in text[start:end]  # the caption is there, escaped, before the blob's own end
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), "a network reference"
    assert "default-src 'none'" in text and "innerHTML" not in text
    assert json.loads(script_json("</script><!--&")) == "</script><!--&"


def test_bytes_per_post_are_bounded_for_any_image(tmp_path):
    """Noise is JPEG's worst case: even a large noise image gives at most MAX_BYTES."""
    rng = np.random.default_rng(1)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(noise)
    data = thumbnail_bytes(noise)
    assert len(data) <= MAX_BYTES
    with Image.open(io.BytesIO(data)) as im:
        assert max(im.size) <= 128 and im.format == "JPEG"
    posts, output = make_run(tmp_path / "run")
    (posts / "p1.txt").write_text("word " * 50_000)
    build_sheet(output, tmp_path / "sheet.html", SheetOptions(posts=posts))
    assert len(blob(tmp_path / "sheet.html")["posts"][2]["caption"]) <= MAX_CAPTION_CHARS


def test_the_sheet_is_claimed_like_every_output(tmp_path):
    posts, output = make_run(tmp_path)
    sheet = tmp_path / "sheet.html"
    sheet.write_text("mine")
    with pytest.raises(OutputError, match="--overwrite"):
        build_sheet(output, sheet, SheetOptions(posts=posts))
    assert sheet.read_text() == "mine"
    build_sheet(output, sheet, SheetOptions(posts=posts, overwrite=True))
    assert sheet.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(OutputError, match="input"):
        build_sheet(output, output, SheetOptions(posts=posts, overwrite=True))
    with pytest.raises(OutputError, match="input"):
        build_sheet(output, posts / "sheet.html", SheetOptions(posts=posts))
    assert json.loads(output.read_text().splitlines()[0])["id"] == "broken.jpg"
    assert not list(tmp_path.glob(".*")), "a lock or temporary file left behind"


def test_a_missing_input_fails_before_any_file_is_written(tmp_path):
    _, output = make_run(tmp_path)
    with pytest.raises(DataError, match="--posts"):
        build_sheet(output, tmp_path / "out" / "sheet.html")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_every_output_format_is_read(tmp_path, fmt):
    posts, output = make_run(tmp_path, fmt)
    entries = load_entries(output, posts)
    assert [e.id for e in entries] == ["broken.jpg", "p0.png", "p1.png", "p2.png"]
    assert [t for t, _, _ in entries[1].hashtags] == ["sandy", "newtag"] and entries[0].skipped


def test_a_ray_output_folder_is_read_with_the_input_its_manifest_names(tmp_path):
    posts, output = make_run(tmp_path)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    folder = tmp_path / "ray-out"
    manifest = {"model": "m", "model_digest": "d", "format": "jsonl", "input": str(posts.resolve())}
    with shard_folder(folder, manifest) as shards:
        shards.write(0, records[:2])
        shards.write(1, records[2:])
    summary = build_sheet(folder, tmp_path / "sheet.html")
    assert summary.posts == 4 and summary.skipped == 1
    assert [p["id"] for p in blob(tmp_path / "sheet.html")["posts"]] == ["broken.jpg", "p0.png", "p1.png", "p2.png"]


def test_repeated_ids_join_in_order_and_unknown_ids_stay(tmp_path):
    folder = tmp_path / "csvposts"
    folder.mkdir()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(folder / "a.png")
    (folder / "posts.csv").write_text("image,caption\na.png,first\na.png,second\n")
    records = [{"id": "a.png", "status": "ok", "reason": "ok", "hashtags": []} for _ in range(2)]
    records.append({"id": "gone.png", "status": "ok", "reason": "ok", "hashtags": []})
    write_file(tmp_path / "t.json", records, "json")
    entries = load_entries(tmp_path / "t.json", folder / "posts.csv")
    assert [e.caption for e in entries] == ["first", "second", ""]
    assert entries[2].image is None and entries[2].status == "ok; post not found in the input"
    with pytest.raises(DataError, match="none of the posts"):
        load_entries(tmp_path / "t.json", make_run(tmp_path / "other")[0])


def test_sidecar_policies(tmp_path):
    image = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(image)
    (tmp_path / "a.txt").write_text("the caption #x")
    assert write_sidecar(image, ["#Sandy", "nyc"]) == "written"
    assert sidecar_path(image).read_text() == "#sandy\n#nyc\n"
    assert write_sidecar(image, ["other"], "skip") == "skipped"
    assert write_sidecar(image, ["nyc", "flood"], "append") == "appended"
    assert read_sidecar(image) == ["sandy", "nyc", "flood"]
    assert write_sidecar(image, ["flood"], "append") == "unchanged"
    assert write_sidecar(image, ["storm"], "overwrite") == "replaced"
    assert read_sidecar(image) == ["storm"]
    assert write_sidecar(image, [], "overwrite") == "empty" and read_sidecar(image) == ["storm"]
    assert (tmp_path / "a.txt").read_text() == "the caption #x"
    with pytest.raises(DataError, match="policy"):
        write_sidecar(image, ["x"], "merge")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.tags", "a.txt"]


def test_a_reviewed_csv_sidecars_and_the_folder_agree(tmp_path):
    """The CSV the sheet saves -> sidecars -> the folder read as train reads it: the same hashtags."""
    posts, _ = make_run(tmp_path)
    rows = [("p0.png", "#sandy #flood"), ("p2.png", "#storm")]
    csv_text = "post_id,image,caption,hashtags\r\n" + "".join(
        f'"{name}","{(posts / name).resolve()}","a caption","{tags}"\r\n' for name, tags in rows
    )
    (tmp_path / "accepted.csv").write_text(csv_text + f'"gone","{tmp_path}/gone.png","x","#a"\r\n')
    counts = sidecars_from(tmp_path / "accepted.csv", "append")
    assert counts == {"written": 2, "image not found": 1}
    from_csv = {Path(p.image).name: p.hashtags for p in load_posts(tmp_path / "accepted.csv") if p.image.is_file()}
    from_folder = {p.id: p.hashtags for p in load_posts(posts) if p.id in from_csv}
    assert from_folder == from_csv == {"p0.png": ["sandy", "flood"], "p2.png": ["storm"]}


def test_the_review_command_writes_a_sheet_then_sidecars_without_torch(tmp_path):
    posts, output = make_run(tmp_path)
    sheet = tmp_path / "sheet.html"
    proc = cli_without_torch("review", str(output), "--posts", str(posts), "-o", str(sheet))
    assert proc.returncode == 0, proc.stderr
    assert "4 posts (1 skipped), 3 thumbnails" in proc.stderr and "torch not imported" in proc.stderr
    again = cli_without_torch("review", str(output), "--posts", str(posts), "-o", str(sheet))
    assert "error: " in again.stderr and "pass --overwrite" in again.stderr and "Traceback" not in again.stderr
    accepted = tmp_path / "accepted.csv"
    accepted.write_text(f'post_id,image,caption,hashtags\n"p1.png","{posts / "p1.png"}","c","#flood #nyc"\n')
    proc = cli_without_torch("review", str(accepted), "--sidecars", "append")
    assert proc.returncode == 0, proc.stderr
    assert "written 1" in proc.stderr and read_sidecar(posts / "p1.png") == ["flood", "nyc"]
