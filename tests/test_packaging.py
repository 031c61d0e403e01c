"""Packaging: one version, the bundle records who wrote it, and a command whose extra is missing says which
one to install, in one line."""

from __future__ import annotations

import json
import shutil
import sys
from importlib import metadata

import onnxruntime as ort
import pytest
from typer.testing import CliRunner

import hashtagger
from hashtagger.bundle.format import read_bundle, write_manifest
from hashtagger.cli.main import app
from hashtagger.io import extras


def test_the_installed_distribution_has_the_package_version():
    """pyproject.toml reads hashtagger.__version__: the version is written in one place."""
    assert metadata.version(extras.DISTRIBUTION) == hashtagger.__version__


def test_bundle_records_the_versions_that_wrote_it(tiny_bundle):
    import torch

    info = json.loads((tiny_bundle / "bundle.json").read_text())
    assert info["written_by"] == {
        "hashtagger": hashtagger.__version__,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }


def test_a_bundle_without_written_by_still_opens(tiny_bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    info = json.loads((old / "bundle.json").read_text())
    del info["written_by"]
    (old / "bundle.json").write_text(json.dumps(info))
    write_manifest(old)
    assert read_bundle(old).vocab == read_bundle(tiny_bundle).vocab


@pytest.mark.parametrize(
    "blocked, args, purpose, extra",
    [
        ("torch", ["train", "posts"], "training", "train"),
        ("transformers", ["export", "runs/x"], "export", "train"),
        ("torch", ["evaluate", "--checkpoint", "runs/x"], "evaluate --checkpoint", "train"),
        ("matplotlib", ["evaluate", "--plot", "p.png"], "evaluate --plot", "explain"),
    ],
)
def test_a_command_without_its_extra_names_it_in_one_line(monkeypatch, blocked, args, purpose, extra):
    monkeypatch.setitem(sys.modules, blocked, None)  # what an import finds for a module that is not installed
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 1
    expected = f"error: {purpose} needs the [{extra}] extra ({blocked} not installed): {extras.install_command(extra)}"
    assert result.stderr.strip() == expected
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_with_its_extra_a_command_goes_on(monkeypatch):
    """The check blames nothing when the extra is there: the same command then fails on its real input."""
    result = CliRunner().invoke(app, ["train", "no-such-folder"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "extra" not in result.stderr and "does not exist" in result.stderr


def test_gpu_hint_tells_which_onnxruntime_to_keep(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(extras.metadata, "version", not_installed)
    assert extras.install_command("gpu") in extras.gpu_hint()
    monkeypatch.setattr(extras.metadata, "version", lambda name: "1.31.1")
    hint = extras.gpu_hint()
    assert "shadow" in hint and "pip uninstall -y onnxruntime onnxruntime-gpu" in hint


def test_a_gpu_session_first_preloads_the_gpu_extras_libraries(tiny_bundle, monkeypatch):
    """onnxruntime-gpu finds the nvidia-* packages' CUDA libraries only when preloaded; the CPU never asks."""
    from hashtagger.bundle import runtime

    calls = []
    monkeypatch.setattr(runtime.ort, "preload_dlls", lambda: calls.append("preload"), raising=False)
    runtime._preload_cuda_libraries.cache_clear()
    try:
        runtime.session(tiny_bundle / "model.onnx", "cpu")
        assert calls == []
        # A GPU build lists CUDA: auto preloads once, then uses CUDA if it starts (here it falls back to the CPU).
        gpu_build = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: gpu_build)
        _, used = runtime.session(tiny_bundle / "model.onnx", "auto")
        _, used_again = runtime.session(tiny_bundle / "model.onnx", "auto")
        assert calls == ["preload"] and used == used_again
    finally:
        runtime._preload_cuda_libraries.cache_clear()
