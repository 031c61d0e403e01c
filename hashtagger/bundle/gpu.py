"""What running a bundle on an NVIDIA GPU needs beyond the CPU path. No torch.

- fp16 by default: the bundle's fp16 model graph, or one converted from its fp32 graph once (ONNX Runtime's own
  float16 converter, inputs and outputs kept fp32) and kept in the user's cache, keyed by the graph's digest.
- TensorRT: fp16 engines with shape profiles for the run's batch size and caption lengths, so that dynamic padding
  does not rebuild an engine per shape; engines and timing caches in the user's cache.
- Sizes: a GPU wants bigger batches than a CPU, and more decoding threads to keep it fed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hashtagger.bundle.format import Bundle
from hashtagger.errors import OutputError
from hashtagger.io.extras import install_command
from hashtagger.io.files import atomic_write, user_cache

# Posts per forward pass and image-decoding threads when the options leave them to us (None).
CPU_BATCH, GPU_BATCH = 32, 256
CPU_WORKERS, GPU_WORKERS_MAX = 2, 16


def nvidia_present() -> bool:
    """Whether this machine has an NVIDIA GPU at all: its device files (Linux; /dev/dxg under WSL) or its driver's
    nvidia-smi. Where it has none, falling back to the CPU is the normal case, not worth a warning."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "dxg").exists() or shutil.which("nvidia-smi") is not None


def batch_size(wanted: int | None, on_gpu: bool) -> int:
    return wanted or (GPU_BATCH if on_gpu else CPU_BATCH)


def decode_workers(wanted: int | None, on_gpu: bool) -> int:
    """A GPU scores a batch faster than one core decodes it: one decoding thread per core (up to 16) there."""
    if wanted:
        return wanted
    return max(CPU_WORKERS, min(GPU_WORKERS_MAX, os.cpu_count() or 1)) if on_gpu else CPU_WORKERS


def half_graph(bundle: Bundle) -> tuple[Path | None, str]:
    """The fp16 model graph for CUDA and how it was found: the bundle's own, or the fp32 graph converted once and
    cached. (None, why) when neither can be had (the converter needs the onnx package)."""
    if "fp16" in bundle.info.graphs:
        return bundle.graph("fp16"), "the bundle's"
    try:
        digest = json.loads((bundle.path / "manifest.json").read_text()).get(bundle.info.graphs["model"], "")
    except (OSError, ValueError):
        digest = ""
    cached = user_cache("fp16") / f"{digest[:32] or 'unhashed'}.onnx"
    if digest and cached.is_file():
        return cached, "converted, from the cache"
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        return None, f"no fp16 graph in the bundle, and converting one needs onnx: {install_command('gpu')}"
    half = convert_float_to_float16(onnx.load(str(bundle.graph("model"))), keep_io_types=True)
    try:
        return atomic_write(cached, half.SerializeToString()), "converted now, cached"
    except OutputError as e:  # a read-only cache
        return None, f"no fp16 graph in the bundle, and the converted one cannot be cached ({e})"


def tensorrt_options(path: Path, shapes: dict[str, str]) -> dict[str, object]:
    """TensorRT provider options for the graph at `path`: fp16, engine and timing caches in the user's cache, and
    min / opt / max shape profiles from `shapes` ({input: "min;opt;max"}, e.g. "1x1;256x48;256x128")."""
    names = graph_inputs(path)
    profile = [",".join(f"{n}:{s.split(';')[k]}" for n, s in shapes.items() if n in names) for k in range(3)]
    cache = user_cache("tensorrt")
    return {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": profile[0],
        "trt_profile_opt_shapes": profile[1],
        "trt_profile_max_shapes": profile[2],
    }


def graph_inputs(path: Path) -> set[str]:
    """The input names of an ONNX graph, read without its weights (a fused graph may lack token_type_ids)."""
    import onnx

    return {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
