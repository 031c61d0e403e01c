"""A post's own hashtags are not suggested back (unless --keep-own), --exclude never, --always first: in the
Picker, the Tagger API, the CLI's outputs and the Ray engine's actors alike."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.data.posts import Post, load_posts
from hashtagger.errors import DataError
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.picking import Picker, hashtag_list, own_hashtags
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import read_records

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
LABELS = ["a", "b", "c", "d", "e"]
SCORES = np.array([0.5, 0.9, 0.1, 0.7, 0.3])


def test_own_hashtags_come_from_the_caption_and_the_sidecar(tmp_path):
    (tmp_path / "p.png").write_bytes(b"")
    (tmp_path / "p.txt").write_text("Waves! #Sandy #NYC")
    (tmp_path / "p.tags").write_text("#hurricane\n")
    (post,) = load_posts(tmp_path)
    assert own_hashtags(post) == {"sandy", "nyc", "hurricane"}
    assert own_hashtags(Post("x", None, "no tags here")) == frozenset()


def test_suggestions_leave_out_the_posts_own_hashtags():
    picker = Picker(LABELS, top_k=2, threshold=None)
    assert picker.columns(SCORES, {"B"}) == [3, 0]  # own hashtags are matched case-insensitively (lower-cased)
    assert picker.columns(SCORES, {"b"}) == [3, 0]
    assert Picker(LABELS, 2, None, keep_own=True).columns(SCORES, {"b"}) == [1, 3]


def test_exclude_is_never_suggested_and_always_comes_first():
    picker = Picker(LABELS, top_k=2, threshold=None, exclude=("b",), always=("d", "mine"))
    assert picker.columns(SCORES) == [0, 4]  # b excluded, d already there as an always hashtag
    assert picker.always_entries() == [
        {"tag": "d", "score": 1.0, "always": True},
        {"tag": "mine", "score": 1.0, "always": True},
    ]
    assert picker.always_entries({"d"})[1]["seen"] is False


def test_the_threshold_still_cuts_the_top_k():
    picker = Picker(LABELS, top_k=3, threshold=np.full(5, 0.4), exclude=("b",))
    assert picker.columns(SCORES) == [3, 0]  # top 3 allowed: d, a, e; e is under 0.4


def test_hashtag_lists_from_commas_or_a_file(tmp_path):
    assert hashtag_list("#Sandy, nyc ,,boston") == ("sandy", "nyc", "boston")
    (tmp_path / "mine.txt").write_text("#one\ntwo\n\n#One\n")
    assert hashtag_list(f"@{tmp_path / 'mine.txt'}") == ("one", "two")
    assert hashtag_list(["#A", "b"]) == ("a", "b")
    with pytest.raises(DataError, match="cannot read the hashtags file"):
        hashtag_list(f"@{tmp_path / 'absent.txt'}")


@pytest.fixture(scope="module")
def posts(tmp_path_factory) -> Path:
    """The marathon example, its caption carrying the hashtags the model ranks first for it, and a sidecar."""
    root = tmp_path_factory.mktemp("own")
    shutil.copy(EXAMPLES / "marathon.jpg", root / "marathon.jpg")
    (root / "marathon.txt").write_text((EXAMPLES / "marathon.txt").read_text().strip() + " #SochiProblems")
    (root / "marathon.tags").write_text("#boston\n")
    return root


@pytest.fixture(scope="module")
def everything(posts) -> list[str]:
    """The model's ranking for the post with nothing left out."""
    (record,) = Tagger.open(EXPORTED, device="cpu", top_k=10, keep_own=True).tag_many(posts)
    return [h["tag"] for h in record["hashtags"]]


def test_tagger_leaves_out_own_hashtags_by_default(posts, everything):
    assert {"sochiproblems", "boston"} <= set(everything[:5])  # the defect: both came back in the top 5
    (record,) = Tagger.open(EXPORTED, device="cpu", top_k=10).tag_many(posts)
    tags = [h["tag"] for h in record["hashtags"]]
    assert tags[:8] == [t for t in everything if t not in ("sochiproblems", "boston")]  # the rest moves up
    assert len(tags) == 10 and not {"sochiproblems", "boston"} & set(tags)
    # One image by path: its .tags sidecar (#boston) counts as its own, though the caption has no hashtag.
    kept = Tagger.open(EXPORTED, device="cpu", keep_own=True).tag(posts / "marathon.jpg", "Pray for Boston").tags
    left = Tagger.open(EXPORTED, device="cpu").tag(posts / "marathon.jpg", "Pray for Boston").tags
    assert "boston" in [t.tag for t in kept]
    assert [t.tag for t in left][:4] == [t.tag for t in kept if t.tag != "boston"][:4]


def test_cli_exclude_and_always_in_every_format(posts, everything, tmp_path):
    (tmp_path / "never.txt").write_text(f"#{everything[2]}\n")
    runner = CliRunner()
    base = ["tag", str(posts), "--model", str(EXPORTED), "--device", "cpu", "--top-k", "3"]
    args = [*base, "--exclude", f"@{tmp_path / 'never.txt'}", "--always", "MyBrand,#mine", "--keep-own"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    (record,) = read_records(tmp_path / "out.jsonl", "jsonl")
    assert record["hashtags"][:2] == [
        {"tag": "mybrand", "score": 1.0, "always": True},
        {"tag": "mine", "score": 1.0, "always": True},
    ]
    assert [h["tag"] for h in record["hashtags"][2:]] == [t for t in everything if t != everything[2]][:3]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    assert "#mybrand #mine" in (tmp_path / "out.csv").read_text()
    pytest.importorskip("pyarrow")
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out.parquet")])
    assert result.exit_code == 0, result.output
    (row,) = read_records(tmp_path / "out.parquet", "parquet")
    assert row["hashtags"] == record["hashtags"]


def test_ray_actors_leave_out_own_hashtags_too(posts):
    """The Ray engine's actors score with the same options (its Tagger) on the posts its read tasks load."""
    from hashtagger.bundle.format import read_bundle
    from hashtagger.tagging.ray import engine
    from hashtagger.tagging.ray.partition import partition

    options = TagOptions(model=EXPORTED, device="cpu", always=("mine",), exclude="bostonmarathon")
    source, (shard,) = partition(posts, options.columns, 10)
    settings = read_bundle(EXPORTED).image
    rows = list(engine._load_shard({"shard": 0, "spec": pickle.dumps(shard)}, source, options, settings))
    batch = {key: np.array([row[key] for row in rows], dtype=object) for key in ("shard", "pos", "item")}
    (cell,) = engine.TagActor(options)(batch)["record"]
    tags = [h["tag"] for h in json.loads(cell)["hashtags"]]
    assert tags[0] == "mine" and not {"sochiproblems", "boston", "bostonmarathon"} & set(tags)
    assert tags == [h["tag"] for h in next(Tagger(options).tag_many(posts))["hashtags"]]  # as in one process
