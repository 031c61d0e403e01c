"""Export: parity with PyTorch on dynamic shapes, the manifest's checks, and atomic replacement."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from rich.console import Console
from transformers import ResNetConfig, ResNetModel

from hashtagger.bundle.format import BundleError, read_bundle
from hashtagger.data.posts import CsvColumns
from hashtagger.data.prep import PrepOptions
from hashtagger.data.text import encode
from hashtagger.export.build import ExportOptions, ParityError, export
from hashtagger.export.graphs import export_extractor_graph
from hashtagger.io.files import sha256_file
from hashtagger.models.checkpoint import load_checkpoint
from hashtagger.models.grid import GridExtractor

QUIET = Console(stderr=True, quiet=True)


def test_bundle_holds_everything_tag_needs(tiny_bundle):
    bundle = read_bundle(tiny_bundle)
    info = bundle.info
    assert info.raw["format_version"] == 1 and info.raw["opset"] >= 17
    assert set(info.graphs) == {"extractor", "model", "int8", "extractor_int8"}
    assert info.image.size == 96 and len(info.image.mean) == 3
    assert info.text.max_length == 128 and info.text.cleaning.drop_urls is True
    # bundle.json keeps recording the preparation as PrepOptions and CsvColumns (drop_* rules), as before.
    assert info.training.prep == PrepOptions() and info.training.columns == asdict(CsvColumns())
    assert 0 < info.threshold < 1
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert {"model.onnx", "extractor.onnx", "tokenizer.json", "hashtags.json", "bundle.json"} <= set(manifest)
    assert all(sha256_file(tiny_bundle / name) == digest for name, digest in manifest.items())
    parity = info.raw["export"]["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["same_top5"] == 1.0
    assert info.raw["export"]["parity_inputs"] == "validation split"
    assert info.variants["int8"]["top5_overlap"] > 0.5


def test_int8_export_adds_a_static_int8_extractor_with_its_agreement_recorded(tiny_bundle):
    """extractor.int8.onnx is quantised with int8 convolutions; each int8 graph's (and both together's) top-5
    overlap and F1@2 against fp32 on the validation posts are in bundle.json for `tag --variant auto`."""
    info = read_bundle(tiny_bundle).info
    graph = onnx.load(str(tiny_bundle / info.graphs["extractor_int8"]))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    variants = info.variants
    for key in ("int8", "extractor_int8", "int8_both"):
        assert {"top5_overlap", "f1@2", "f1@2_reference"} <= set(variants[key])
        assert variants[key]["top5_overlap"] > 0.5


def test_onnx_matches_torch_on_new_batch_and_sequence_sizes(tiny_run, tiny_bundle):
    """Dynamic axes: batch sizes and caption lengths the export never saw, padded rows included."""
    ckpt = load_checkpoint(tiny_run / "best")
    extractor = ort.InferenceSession(str(tiny_bundle / "extractor.onnx"), providers=["CPUExecutionProvider"])
    model = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for batch, words in ((1, 3), (7, 60), (3, 200)):
        texts = [" ".join(["red cat in the park"] * int(rng.integers(1, words))) for _ in range(batch)]
        text = encode(ckpt.tokenizer, texts, ckpt.max_length)
        pixels = rng.normal(size=(batch, 3, 96, 96)).astype(np.float32)
        feats, boxes = extractor.run(None, {"pixel_values": pixels})
        probs = model.run(["probs"], dict(text, visual_feats=feats, visual_pos=boxes))[0]
        with torch.inference_mode():
            f, b = ckpt.extractor(torch.from_numpy(pixels))
            t = {k: torch.from_numpy(v) for k, v in text.items()}
            expected = torch.sigmoid(ckpt.model(t["input_ids"], t["attention_mask"], t["token_type_ids"], f, b)).numpy()
        assert probs.shape == (batch, len(ckpt.vocab))
        assert np.max(np.abs(probs - expected)) <= 1e-4
        assert (np.argsort(-probs, axis=1) == np.argsort(-expected, axis=1)).all()


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_missing_file_is_named(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json.*missing"):
        read_bundle(bundle_copy)


def test_changed_file_is_named(bundle_copy):
    with open(bundle_copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"model\.onnx.*SHA-256"):
        read_bundle(bundle_copy)


def test_unknown_format_version_is_refused(bundle_copy):
    info = json.loads((bundle_copy / "bundle.json").read_text())
    info["format_version"] = 99
    (bundle_copy / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match=r"bundle\.json.*version 99"):
        read_bundle(bundle_copy, verify=False)


def test_failed_export_leaves_the_existing_bundle_untouched(tiny_run, bundle_copy):
    before = {p.name: sha256_file(p) for p in bundle_copy.iterdir() if p.is_file()}
    with pytest.raises(ParityError, match="max \\|p_torch - p_onnx\\|"):
        export(tiny_run / "best", ExportOptions(output=str(bundle_copy), tolerance=-1.0), QUIET)
    assert {p.name: sha256_file(p) for p in bundle_copy.iterdir() if p.is_file()} == before
    assert not [p for p in bundle_copy.parent.iterdir() if p.name.startswith(".bundle")]  # no temporary left


@pytest.mark.parametrize("image_size", [56, 96, 40])
def test_grid_pooling_is_adaptive_pooling_and_exports_when_6_does_not_divide_the_map(image_size, tmp_path):
    """56 px gives a 7x7 map (cells overlap), 96 px 12x12, 40 px 5x5 (cells repeat map positions)."""
    torch.manual_seed(0)
    backbone = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"))
    extractor = GridExtractor(backbone, image_size).eval()
    pixels = torch.randn(3, 3, image_size, image_size)
    with torch.inference_mode():
        fmap = backbone(pixels).last_hidden_state
        expected = torch.nn.functional.adaptive_avg_pool2d(fmap, (6, 6)).flatten(2).transpose(1, 2).numpy()
        feats, boxes = extractor(pixels)
    assert feats.shape == (3, 36, 32) and boxes.shape == (3, 36, 4)
    assert np.allclose(feats.numpy(), expected, atol=1e-6)
    export_extractor_graph(extractor, tmp_path / "extractor.onnx", 17, pixels[:1])
    session = ort.InferenceSession(str(tmp_path / "extractor.onnx"), providers=["CPUExecutionProvider"])
    onnx_feats, onnx_boxes = session.run(None, {"pixel_values": pixels.numpy()})
    assert np.allclose(onnx_feats, expected, atol=1e-5) and np.array_equal(onnx_boxes, boxes.numpy())


def test_export_falls_back_to_generated_inputs_when_the_data_is_gone(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    info_path = run / "best" / "hashtagger.json"
    info = json.loads(info_path.read_text())
    info["args"]["data"] = str(tmp_path / "moved-away")
    info_path.write_text(json.dumps(info))
    options = ExportOptions(output=str(tmp_path / "out"))
    export(run / "best", options, QUIET)
    assert options.report["parity_inputs"] == "generated"
    assert read_bundle(tmp_path / "out").info.raw["export"]["parity"]["max_abs_diff"] <= 1e-4


def test_compact_bundle_halves_the_size_and_keeps_parity(tiny_run, tiny_bundle, tmp_path):
    options = ExportOptions(output=str(tmp_path / "compact"), compact=True)
    export(tiny_run / "best", options, QUIET)
    bundle = read_bundle(tmp_path / "compact")
    assert bundle.info.raw["weights_stored_as"] == "fp16"
    assert options.report["parity"]["max_abs_diff"] <= 1e-4
    assert options.report["variants"]["compact"]["top5_overlap"] == 1.0
    assert (tmp_path / "compact" / "model.onnx").stat().st_size < 0.7 * (tiny_bundle / "model.onnx").stat().st_size
    # The extractor stays fp32: fp16 copies of its BatchNorm-folded weights would not be the rounded checkpoint.
    extractor_sizes = [(folder / "extractor.onnx").stat().st_size for folder in (tmp_path / "compact", tiny_bundle)]
    assert extractor_sizes[0] == pytest.approx(extractor_sizes[1], rel=0.05)


@pytest.mark.slow
def test_precomputed_feature_model_exports_without_extractor_and_tags(tmp_path):
    """A model trained on detector features: the bundle has no extractor; tag reads the .npz files."""
    from conftest import make_posts, make_region_features

    from hashtagger.bundle.format import BundleError
    from hashtagger.data.posts import load_posts
    from hashtagger.tagging.options import TagOptions
    from hashtagger.tagging.pipeline import tag_posts
    from hashtagger.tagging.tagger import open_runner
    from hashtagger.training.train import TrainConfig, train

    data = make_posts(tmp_path / "posts", n=40, seed=4)
    features = make_region_features(data, tmp_path / "npz", seed=1)
    (features / "post0001.npz").unlink()
    cfg = TrainConfig(
        data=str(data),
        output=str(tmp_path / "runs"),
        base_model="tiny",
        run_name="p",
        epochs=1,
        batch_size=8,
        extractor="precomputed",
        features_dir=str(features),
    )
    run = train(cfg, QUIET)
    options = ExportOptions(output=str(tmp_path / "bundle"), compact=True)
    export(run / "best", options, QUIET)
    bundle = read_bundle(tmp_path / "bundle")
    assert "extractor" not in bundle.info.graphs and bundle.info.extractor.kind == "precomputed"
    assert options.report["parity"]["max_abs_diff"] <= 1e-4 and options.report["parity_inputs"] == "validation split"

    with pytest.raises(BundleError, match="--features-dir"):
        open_runner(TagOptions(model=tmp_path / "bundle", device="cpu"))
    tag_options = TagOptions(model=tmp_path / "bundle", device="cpu", features_dir=features)
    bundle, runner = open_runner(tag_options)
    records = list(tag_posts(load_posts(data), bundle, runner, tag_options))
    assert len(records) == 40
    by_id = {r["id"]: r for r in records}
    assert by_id["post0001.png"]["status"] == "skipped: no precomputed features (post0001.npz)"
    assert by_id["post0001.png"]["reason"] == "features_not_found"
    assert len(bundle.vocab) > 5 and sum(r["status"] == "ok" for r in records) == 39
    assert all(len(r["hashtags"]) == 5 for r in records if r["status"] == "ok")


def test_bundle_files_are_hashed_once_until_they_change(tiny_bundle, tmp_path, monkeypatch):
    """Opening a bundle again does not re-hash its graphs; a file rewritten with the same size and mtime is
    still refused (its ctime moved)."""
    import os

    import hashtagger.bundle.format as bundle_module

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    hashed = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    read_bundle(copy)
    assert "model.onnx" in hashed
    hashed.clear()
    read_bundle(copy)
    assert hashed == []
    graph = copy / "model.onnx"
    st = graph.stat()
    data = bytearray(graph.read_bytes())
    data[-1] ^= 1
    graph.write_bytes(bytes(data))
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(BundleError, match="SHA-256"):
        read_bundle(copy)
