"""The shipped artefacts, as a user meets them: the bundle in exported/ reads and verifies, and the README's
first command (`hashtagger tag examples/posts`) gives a record per example post, with the answer a person
would give where there is only one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import cli_without_torch

from hashtagger.bundle.format import read_bundle

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
pytestmark = pytest.mark.slow


def test_shipped_bundle_reads_and_verifies():
    bundle = read_bundle(EXPORTED)  # every file of the manifest against its SHA-256
    manifest = json.loads((EXPORTED / "manifest.json").read_text())
    assert {"model.onnx", "extractor.onnx", "tokenizer.json", "hashtags.json", "bundle.json"} <= set(manifest)
    assert len(bundle.vocab) > 5 and len(set(bundle.vocab)) == len(bundle.vocab)
    assert 0 < bundle.threshold < 1 and bundle.info.raw["metrics"]["test_metrics"]


@pytest.fixture(scope="module")
def example_records() -> list[dict]:
    proc = cli_without_torch("tag", str(EXAMPLES), "--model", str(EXPORTED), "--device", "cpu", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    # Since issue 28 a JSON output, on stdout as in a file, is {"provenance": {...}, "records": [...]}: which
    # model (its digest), hashtagger version and options made it. The records themselves are unchanged.
    output = json.loads(proc.stdout)
    manifest_digest = hashlib.sha256((EXPORTED / "manifest.json").read_bytes()).hexdigest()
    assert output["provenance"]["model_digest"] == manifest_digest
    return output["records"]


def test_every_example_post_gets_a_record(example_records):
    images = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    assert [r["id"] for r in example_records] == images
    vocab = set(read_bundle(EXPORTED, verify=False).vocab)
    for r in example_records:
        scores = [t["score"] for t in r["hashtags"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert {t["tag"] for t in r["hashtags"]} <= vocab
    reasons = {r["id"]: r["reason"] for r in example_records}
    assert reasons.pop("eclipse.jpg") == "no_caption"  # the one example without a caption file
    assert set(reasons.values()) == {"ok"}


def test_an_unambiguous_post_gets_the_obvious_hashtag(example_records):
    """Rescue teams after the earthquake near Kathmandu, over a mountain photo: the data's Nepal earthquake."""
    by_id = {r["id"]: r for r in example_records}
    assert by_id["mountains.jpg"]["hashtags"][0]["tag"] == "nepalearthquake"
