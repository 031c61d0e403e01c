"""The GPU path: what a CPU can check of it (fp16 graph conversion and cache, I/O binding, TensorRT profiles,
sizes per device), and tests marked `gpu` that need a working CUDA provider (benchmarks/gpu_check.sh runs them
on a GPU machine; elsewhere they are skipped and say why)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from hashtagger.bundle import gpu
from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Runner, _model_graph, _profiles
from hashtagger.data.posts import load_posts
from hashtagger.data.text import encode
from hashtagger.errors import BundleError, DeviceError
from hashtagger.io.extras import install_command
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import sized, tag_posts
from hashtagger.tagging.tagger import open_runner


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hashtagger"


def inputs(bundle, n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = bundle.image.size
    text = encode(bundle.tokenizer, ["a red cat on the sofa", "blue dog", "green bird in a tree", ""][:n], 16)
    return text, rng.random((n, 3, side, side), dtype=np.float32)


def test_an_fp16_graph_is_converted_once_cached_by_digest_and_agrees_with_fp32(tiny_bundle, cache):
    bundle = read_bundle(tiny_bundle)
    assert "fp16" not in bundle.info.graphs
    first = Runner.load(bundle, "cpu", "fp16")
    assert first.variant.startswith("model fp16") and "converted now, cached" in first.variant
    (cached,) = (cache / "fp16").iterdir()
    assert Runner.load(bundle, "cpu", "fp16").variant.endswith("(fp16 graph converted, from the cache)")
    assert list((cache / "fp16").iterdir()) == [cached]
    import onnx

    graph = onnx.load(str(cached))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in graph.graph.output)  # io kept fp32
    full = Runner.load(bundle, "cpu", "model")
    text, pixels = inputs(bundle)
    feats, boxes = full.features(pixels)
    a, b = full.probabilities(text, feats, boxes), first.probabilities(text, feats, boxes)
    assert np.abs(a - b).max() < 5e-3
    assert (np.argsort(-a, axis=1)[:, :3] == np.argsort(-b, axis=1)[:, :3]).mean() >= 0.9


def test_without_the_onnx_package_fp16_asked_for_is_an_error_and_a_default_falls_back(tiny_bundle, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    bundle = read_bundle(tiny_bundle)
    with pytest.raises(BundleError, match=r"--variant fp16: .*needs onnx: " + re.escape(install_command("gpu"))):
        Runner.load(bundle, "cpu", "fp16")
    path, note = _model_graph(bundle, "fp16", explicit=False)  # what CUDA's default does: fp32, and says why
    assert path is None and note.startswith("fp16 not used: ")


def test_io_binding_gives_the_outputs_of_a_plain_run(tiny_bundle):
    bundle = read_bundle(tiny_bundle)
    runner = Runner.load(bundle, "cpu", "model")
    text, pixels = inputs(bundle)
    plain_feats, plain_boxes = runner.features(pixels)
    plain = runner.probabilities(text, plain_feats, plain_boxes)
    runner.bind = "cpu"  # the code path CUDA takes ("cuda"), with the outputs bound on the CPU
    feats, boxes = runner.features(pixels)
    assert np.array_equal(feats, plain_feats) and np.array_equal(boxes, plain_boxes)
    assert np.array_equal(runner.probabilities(text, feats, boxes), plain)


def test_tensorrt_options_profile_only_the_graphs_inputs_and_cache_in_the_users_folder(tiny_bundle, cache):
    bundle = read_bundle(tiny_bundle)
    shapes = _profiles(bundle, 256)
    names = gpu.graph_inputs(bundle.graph("model"))
    options = gpu.tensorrt_options(bundle.graph("model"), shapes)
    assert options["trt_fp16_enable"] and options["trt_engine_cache_enable"]
    assert options["trt_engine_cache_path"] == str(cache / "tensorrt")
    profiled = {entry.split(":")[0] for entry in str(options["trt_profile_max_shapes"]).split(",")}
    assert profiled == names and "pixel_values" not in profiled
    assert f"input_ids:256x{bundle.max_length}" in str(options["trt_profile_max_shapes"])
    assert "input_ids:1x1" in str(options["trt_profile_min_shapes"])
    extractor = gpu.tensorrt_options(bundle.graph("extractor"), shapes)
    side = bundle.image.size
    assert extractor["trt_profile_opt_shapes"] == f"pixel_values:256x3x{side}x{side}"


def test_batch_and_decoding_threads_left_to_us_follow_the_device(tiny_bundle, monkeypatch):
    _, runner = open_runner(TagOptions(model=tiny_bundle, device="cpu"))
    cpu = sized(TagOptions(), runner)
    assert (cpu.batch_size, cpu.workers) == (32, 2)
    assert sized(TagOptions(batch_size=7, workers=3), runner).batch_size == 7
    monkeypatch.setattr(runner, "provider", "CUDAExecutionProvider")
    monkeypatch.setattr(gpu.os, "cpu_count", lambda: 64)
    on_gpu = sized(TagOptions(), runner)
    assert (on_gpu.batch_size, on_gpu.workers) == (256, 16)
    assert sized(TagOptions(workers=3), runner).workers == 3


# ------------------------------------------------------------------------------------------- on a GPU


@pytest.fixture(scope="module")
def cuda_bundle(tiny_bundle):
    try:
        Runner.load(read_bundle(tiny_bundle), "cuda", "model")
    except DeviceError as e:
        pytest.skip(f"needs a working CUDA provider: {e}")
    return tiny_bundle


@pytest.mark.gpu
def test_cuda_runs_fp16_by_default_with_io_binding_and_auto_finds_it(cuda_bundle, cache):
    runner = Runner.load(read_bundle(cuda_bundle), "cuda")
    assert runner.provider == "CUDAExecutionProvider" and runner.bind == "cuda"
    assert runner.variant.startswith("model fp16")
    assert Runner.load(read_bundle(cuda_bundle), "auto").provider == "CUDAExecutionProvider"


@pytest.mark.gpu
def test_cuda_records_agree_with_the_cpu(cuda_bundle, posts_dir, cache):
    def records(device: str, variant: str) -> list[dict]:
        options = TagOptions(model=cuda_bundle, device=device, variant=variant, top_k=5)
        bundle, runner = open_runner(options)
        return list(tag_posts(load_posts(posts_dir), bundle, runner, options))

    cpu, cuda32, cuda16 = records("cpu", "model"), records("cuda", "model"), records("cuda", "default")
    for a, b, c in zip(cpu, cuda32, cuda16, strict=True):
        assert a["id"] == b["id"] == c["id"] and a["reason"] == b["reason"] == c["reason"]
        assert {h["tag"] for h in a["hashtags"]} == {h["tag"] for h in b["hashtags"]}
        assert np.allclose([h["score"] for h in a["hashtags"]], [h["score"] for h in b["hashtags"]], atol=1e-3)
        if a["hashtags"]:
            assert a["hashtags"][0]["tag"] == c["hashtags"][0]["tag"]


@pytest.mark.gpu
def test_tensorrt_when_present_runs_and_caches_its_engines(cuda_bundle, posts_dir, cache):
    try:
        runner = Runner.load(read_bundle(cuda_bundle), "tensorrt", batch_size=8)
    except DeviceError as e:
        pytest.skip(f"no usable TensorRT provider: {e}")
    options = TagOptions(model=cuda_bundle, device="tensorrt", batch_size=8)
    records = list(tag_posts(load_posts(posts_dir), read_bundle(cuda_bundle), runner, options))
    assert records and all(r["reason"] for r in records)
    assert any((cache / "tensorrt").iterdir())
