"""A linear-head bundle holding a names-head companion (candidates/, a whole bundle of its own) ranks `tag
--candidates` with it, CLI and API, and says so; the parent's manifest and verification leave the companion to
its own; a bundle without one still refuses, and a names-head bundle keeps using its own head (issue 28)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_without_torch
from typer.testing import CliRunner

from hashtagger.bundle.format import COMPANION, read_bundle, write_manifest
from hashtagger.cli.main import app
from hashtagger.errors import BundleError
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import read_records

NEW = "summerdrop26"  # in no vocabulary


@pytest.fixture
def with_companion(tiny_bundle, held_out_bundle, tmp_path) -> Path:
    """The tiny linear-head bundle with the held-out names-head bundle as its companion."""
    parent = tmp_path / "parent"
    shutil.copytree(tiny_bundle, parent)
    shutil.copytree(held_out_bundle, parent / COMPANION)
    return parent


@pytest.fixture
def candidates(held_out_bundle, tmp_path) -> tuple[Path, str]:
    """A candidates file: a hashtag the companion never trained on, and one unknown to both models."""
    held = json.loads((held_out_bundle / "hashtags.json").read_text())["held_out"][0]
    file = tmp_path / "mine.txt"
    file.write_text(f"#{held}\n{NEW}\n")
    return file, held


def test_the_parent_manifest_lists_nothing_of_the_companion(with_companion):
    write_manifest(with_companion)
    manifest = json.loads((with_companion / "manifest.json").read_text())
    assert manifest and not any(name.startswith(COMPANION) for name in manifest)
    # A damaged companion leaves the parent readable; the companion itself is refused when it is used.
    model = with_companion / COMPANION / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    assert read_bundle(with_companion).info.head.kind == "linear"
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        read_bundle(with_companion / COMPANION)


def test_tag_ranks_candidates_with_the_companion(with_companion, candidates, posts_dir, tmp_path):
    file, held = candidates
    out = tmp_path / "tags.jsonl"
    proc = cli_without_torch(
        "tag", str(posts_dir), "--model", str(with_companion), "--candidates", str(file), "--device", "cpu",
        "--top-k", "20", "--keep-own", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert f"candidates scored by the names-head companion model ({with_companion / COMPANION})" in said
    records = read_records(out, "jsonl")
    companion_vocab = read_bundle(with_companion / COMPANION).vocab
    for r in records:  # every hashtag of the companion, then the 2 new ones: fewer than 20
        tags = {t["tag"]: t["seen"] for t in r["hashtags"]}
        assert set(tags) == {*companion_vocab, held, NEW} and tags[held] is False and tags[NEW] is False
    # Without --candidates the parent's own head tags, and nothing is said of the companion.
    plain = CliRunner().invoke(app, ["tag", str(posts_dir), "--model", str(with_companion), "--device", "cpu"])
    assert plain.exit_code == 0 and "companion" not in plain.stderr, plain.stderr
    parent_vocab = read_bundle(with_companion).vocab
    assert all(
        "seen" not in h and h["tag"] in parent_vocab for r in json.loads(plain.stdout)["records"] for h in r["hashtags"]
    )


def test_the_api_ranks_candidates_with_the_companion(with_companion, candidates, posts_dir):
    file, held = candidates
    tagger = Tagger.open(with_companion, device="cpu", candidates=file, top_k=20, keep_own=True)
    assert tagger.companion == with_companion / COMPANION and tagger.bundle.info.head.kind == "names"
    assert (
        tagger.candidates_note == f"candidates scored by the names-head companion model ({with_companion / COMPANION})"
    )
    image = sorted(posts_dir.glob("*.png"))[0]
    assert {held, NEW} <= {t.tag for t in tagger.tag(image, image.with_suffix(".txt").read_text()).tags}
    assert Tagger.open(with_companion, device="cpu").companion is None  # no candidates: the parent alone


def test_without_a_companion_a_linear_bundle_refuses(tiny_bundle, candidates):
    with pytest.raises(BundleError, match="cannot rank --candidates; leave --candidates out"):
        Tagger.open(tiny_bundle, device="cpu", candidates=candidates[0])


def test_a_names_head_bundle_uses_its_own_head(held_out_bundle, tiny_bundle, candidates, tmp_path):
    own = tmp_path / "own"
    shutil.copytree(held_out_bundle, own)
    shutil.copytree(tiny_bundle, own / COMPANION)  # ignored: the bundle's own head ranks names
    tagger = Tagger.open(own, device="cpu", candidates=candidates[0])
    assert tagger.companion is None and tagger.candidates_note is None and tagger.bundle.path == own
