"""The wide part of a bundle (bundle/wide.py, evaluation/wide.py): the NumPy scorer against scikit-learn, the blend,
the weight chosen on validation, the bundle that tags, evaluates and explains with it, and bundles without one
scoring exactly as before."""

from __future__ import annotations

import hashlib
import json
import random
import shutil

import numpy as np
import pytest
from conftest import FILLER
from rich.console import Console
from sklearn.feature_extraction.text import TfidfVectorizer

from hashtagger.bundle.format import read_bundle, write_manifest
from hashtagger.bundle.wide import FILE, read_wide, terms
from hashtagger.data.batching import Sample, examples_by_split
from hashtagger.data.posts import load_posts
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.data.text import clean_caption
from hashtagger.errors import BundleError
from hashtagger.evaluation.systems import open_bundle
from hashtagger.evaluation.tfidf import fit_tfidf
from hashtagger.evaluation.wide import WEIGHTS, choose_weight, fit_wide
from hashtagger.tagging import attribution
from hashtagger.tagging.tagger import TagOptions, open_runner, tag_posts

QUIET = Console(stderr=True, quiet=True)
TEXTS = ["a cat on the mat", "two dogs and a dog", "the cat and the dog", "birds sing", "a bird and a cat", "dogs"]
LABELS = [["cat"], ["dog"], ["cat", "dog"], ["bird"], ["bird", "cat"], ["dog"]]
VOCAB = ["cat", "dog", "bird", "fish"]  # fish: never in training, a constant column


def test_terms_are_scikit_learns_default_analyser():
    sklearn_terms = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    for text in ["Huge waves hitting the shore", "Café déjà vu: it's 2 o'clock!", "a b cc", "", "Ünïcode WORDS words"]:
        assert terms(text) == sklearn_terms(text)


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float32, 1e-6), (np.float16, 1e-3)])
def test_numpy_scorer_matches_scikit_learn(dtype, tolerance):
    fitted = fit_tfidf(TEXTS, LABELS, VOCAB)
    part = fitted.wide_part(dtype=dtype)
    queries = ["the cat", "a dog and a cat", "birds and dogs sing", "nothing known here", ""]
    reference = fitted.probabilities(queries)
    assert np.abs(part.probabilities(queries) - reference).max() < tolerance
    assert reference[:, 3].max() == 0.0 and part.probabilities(queries)[:, 3].max() < 1e-12
    # No known term: the intercepts alone, whatever the words.
    assert np.array_equal(part.logits(["nothing known here"]), part.logits([""]))
    assert np.allclose(part.logits([""])[0], part.intercept)


def test_blend_keeps_columns_the_wide_part_never_saw():
    part = fit_tfidf(TEXTS, LABELS, VOCAB).wide_part(weight=0.3)
    deep = np.random.default_rng(0).uniform(size=(2, len(VOCAB) + 2)).astype(np.float32)  # 2 --candidates columns
    texts = ["a cat", ""]
    got = part.blend(deep, texts)
    assert np.allclose(got[:, :4], 0.7 * deep[:, :4] + 0.3 * part.probabilities(texts), atol=1e-6)
    assert np.array_equal(got[:, 4:], deep[:, 4:])
    part.weight = 0.0
    assert part.blend(deep, texts) is deep


def test_top_terms_name_the_words_behind_a_hashtag():
    part = fit_tfidf(TEXTS, LABELS, VOCAB).wide_part()
    top = part.top_terms("my cat and my dog", VOCAB.index("cat"))
    assert top and top[0][0] == "cat" and all(w > 0 for _, w in top)
    assert part.top_terms("", 0) == []


def test_choose_weight_breaks_ties_towards_the_deep_model():
    assert choose_weight({0.0: 0.5, 0.1: 0.6, 0.2: 0.6, 0.3: 0.55}) == 0.1
    assert choose_weight(dict.fromkeys(WEIGHTS, 0.4)) == 0.0


def test_read_wide_refuses_mismatched_shapes(tmp_path):
    part = fit_tfidf(TEXTS, LABELS, VOCAB).wide_part(weight=0.4)
    part.save(tmp_path / FILE)
    loaded = read_wide(tmp_path / FILE, 0.4, len(VOCAB))
    assert loaded.terms == part.terms and loaded.weight == 0.4
    assert np.array_equal(loaded.probabilities(["a cat"]), part.probabilities(["a cat"]))
    with pytest.raises(BundleError, match="shapes do not match"):
        read_wide(tmp_path / FILE, 0.4, len(VOCAB) + 1)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def wide_bundle(tiny_bundle, posts_dir, tmp_path_factory):
    before = _digests(tiny_bundle)
    out = tmp_path_factory.mktemp("wide") / "bundle"
    fit_wide(tiny_bundle, out, data=str(posts_dir), console=QUIET)
    assert _digests(tiny_bundle) == before  # the source bundle is untouched
    return out


@pytest.mark.slow
def test_fit_wide_writes_a_checked_bundle(wide_bundle, tiny_bundle):
    bundle = read_bundle(wide_bundle)
    section = bundle.info.raw["wide"]
    assert FILE in json.loads((wide_bundle / "manifest.json").read_text())
    assert section["weight"] in WEIGHTS and section["parity"]["max_abs_diff"] <= 1e-3
    grid = {float(w): f1 for w, f1 in section["validation_f1_at_2"].items()}
    assert grid[section["weight"]] == max(grid.values())
    assert set(bundle.hashtag_thresholds) <= set(bundle.vocab)
    # A tampered wide part is refused, as any bundle file is.
    broken = wide_bundle.parent / "broken"
    shutil.copytree(wide_bundle, broken)
    (broken / FILE).write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="SHA-256"):
        read_bundle(broken)


def _with_weight(folder, destination, weight):
    """A copy of the bundle whose blend weight is `weight` (so that the blend shows whatever validation chose)."""
    shutil.copytree(folder, destination)
    info = json.loads((destination / "bundle.json").read_text())
    info["wide"]["weight"] = weight
    (destination / "bundle.json").write_text(json.dumps(info))
    write_manifest(destination)
    return destination


@pytest.mark.slow
def test_tag_scores_the_blend_and_old_bundles_score_as_before(wide_bundle, tiny_bundle, posts_dir, tmp_path):
    blended = _with_weight(wide_bundle, tmp_path / "half", 0.5)
    posts = load_posts(posts_dir)[:24]
    options = TagOptions(model=blended, device="cpu", top_k=9)
    bundle, runner = open_runner(options)
    assert runner.wide is not None and runner.wide.weight == 0.5
    plain_options = TagOptions(model=tiny_bundle, device="cpu", top_k=9)
    plain_bundle, plain = open_runner(plain_options)
    assert plain.wide is None
    records = list(tag_posts(posts, bundle, runner, options))
    deep = list(tag_posts(posts, plain_bundle, plain, plain_options))
    for post, got, old in zip(posts, records, deep, strict=True):
        wide = runner.wide.probabilities([clean_caption(post.caption or "", bundle.cleaning)])[0]
        expected = {h["tag"]: 0.5 * h["score"] + 0.5 * wide[bundle.vocab.index(h["tag"])] for h in old["hashtags"]}
        for h in got["hashtags"]:
            assert h["score"] == pytest.approx(expected[h["tag"]], abs=2e-4)
    # A bundle without a wide part: the deep scores, unchanged.
    probs = np.random.default_rng(0).uniform(size=(2, len(plain_bundle.vocab))).astype(np.float32)
    assert plain.blend(probs, ["a", "b"]) is probs


@pytest.mark.slow
def test_evaluate_blends_and_the_image_only_ablation_blanks_the_caption_in_both_parts(wide_bundle, posts_dir, tmp_path):
    blended = _with_weight(wide_bundle, tmp_path / "half", 0.5)
    m, deep_only = open_bundle(blended, "cpu", 64), open_bundle(blended, "cpu", 64, wide=False)
    rows = examples_by_split(m, str(posts_dir))["val"][:12]
    cache = FeatureCache(tmp_path / "cache", m.cache_id)
    fill_cache({d: e.image for e, d in rows}, m.encoder, m.extractor_spec, cache)
    store, samples = FeatureStore(cache), [Sample(e.text, [], d) for e, d in rows]
    part = read_bundle(blended).wide_part()
    assert part is not None
    for blank, texts in ((None, [s.text for s in samples]), ("image", [s.text for s in samples]), ("text", None)):
        wide = part.probabilities(texts if texts is not None else [""] * len(samples))
        expected = 0.5 * deep_only.probabilities(samples, store, blank) + 0.5 * wide
        assert np.allclose(m.probabilities(samples, store, blank), expected, atol=1e-6)


@pytest.mark.slow
def test_explain_names_the_wide_parts_words(wide_bundle, tmp_path):
    blended = _with_weight(wide_bundle, tmp_path / "half", 0.5)
    bundle, runner = open_runner(TagOptions(model=blended, device="cpu"))
    feats, boxes = (x[0] for x in runner.features(np.zeros((1, 3, bundle.image.size, bundle.image.size), np.float32)))
    text = "look at this lovely dog in the park"
    (why,) = attribution.explain(runner, bundle, text, feats, boxes, tags=[bundle.vocab.index("reddog")])
    assert why.wide_terms[0][0] == "dog"
    assert why.record()["wide_terms"][0]["term"] == "dog"


def test_extra_hashtags_come_after_the_vocabulary_and_before_candidates():
    fitted = fit_tfidf(TEXTS, LABELS, VOCAB)
    part = fitted.wide_part(weight=0.0)
    part.extra = ["fish"]  # the wide part's last column, beyond a 3-hashtag deep vocabulary
    deep = np.full((1, 3 + 2), 0.25, np.float32)  # 3 vocabulary columns, 2 candidates
    got = part.blend(deep, ["a cat"])
    assert got.shape == (1, 6)
    assert np.array_equal(got[:, :3], deep[:, :3]) and np.array_equal(got[:, 4:], deep[:, 3:])
    assert got[0, 3] == pytest.approx(part.probabilities(["a cat"])[0, 3])


@pytest.mark.slow
def test_adapt_adds_a_new_hashtag_and_reports_the_old_ones(tiny_bundle, posts_dir, tmp_path):
    from typer.testing import CliRunner

    from hashtagger.cli.main import app

    images = sorted(posts_dir.glob("*.png"))[:12]
    rng = random.Random(0)  # captions like the generated ones, "zebra" as their animal
    lines = ["image,caption"] + [f"{p},{' '.join(rng.sample(FILLER, 5))} zebra #zebra" for p in images]
    (tmp_path / "accepted.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "adapted"
    result = CliRunner().invoke(
        app, ["adapt", str(tiny_bundle), str(tmp_path / "accepted.csv"), "-o", str(out), "--data", str(posts_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "1 new hashtags" in result.output and "before" in result.output
    info = read_bundle(out).info.raw["wide"]
    assert info["extra_hashtags"] == 1 and info["fitted_on"]["accepted"] == 12
    options = TagOptions(model=out, device="cpu", top_k=20)
    bundle, runner = open_runner(options)
    assert runner.labels(bundle.vocab)[-1] == "zebra"
    post = load_posts(posts_dir)[0]
    zebra = {}
    for caption in ("look, a zebra in the park", "look, a cat in the park"):
        post.caption = caption
        (record,) = tag_posts([post], bundle, runner, options)
        zebra[caption] = {h["tag"]: h["score"] for h in record["hashtags"]}["zebra"]  # the wide part's alone
    assert zebra["look, a zebra in the park"] > 0.2 > 10 * zebra["look, a cat in the park"]


@pytest.mark.slow
def test_export_wide_fits_it_at_export(tiny_run, posts_dir, tmp_path):
    from hashtagger.export.build import ExportOptions, export

    out = export(tiny_run / "best", ExportOptions(output=str(tmp_path / "b"), wide=True, data=str(posts_dir)), QUIET)
    bundle = read_bundle(out)
    assert bundle.info.raw["wide"]["weight"] in WEIGHTS and bundle.info.raw["export"]["parity"]["max_abs_diff"] <= 1e-4
    assert bundle.wide_part() is not None
