"""ONNX Runtime sessions for a bundle, on the best provider that really works. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, BundleError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class DeviceError(Exception):
    """The requested device cannot be used; the message says why."""


def session(path: Path, device: str = "auto", threads: int | None = None) -> tuple[ort.InferenceSession, str]:
    """An optimised session and the provider that actually runs it (from the session, not the wish list).

    auto: CUDA when ONNX Runtime can really use it, else CPU. cuda / tensorrt: that provider or an error.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the GPU package's fallback messages are reported by us, once, in words
    if threads:
        options.intra_op_num_threads = threads
    wanted = PROVIDERS["cuda"] if device == "auto" else PROVIDERS.get(device)
    if wanted is None:
        raise DeviceError(f"unknown device '{device}' (auto, cpu, cuda or tensorrt)")
    available = ort.get_available_providers()
    if device in ("cuda", "tensorrt") and wanted[0] not in available:
        raise DeviceError(f"--device {device}: this onnxruntime build has no {wanted[0]} (installed: {', '.join(available)})")
    try:
        sess = ort.InferenceSession(str(path), options, providers=[p for p in wanted if p in available])
    except Exception as e:  # onnxruntime raises its own exception types; all mean "this graph cannot be loaded"
        if device in ("cuda", "tensorrt"):
            raise DeviceError(f"--device {device}: ONNX Runtime could not start {wanted[0]}: {e}") from None
        raise BundleError(f"{path}: ONNX Runtime cannot load this graph: {e}") from None
    used = sess.get_providers()[0]
    if device in ("cuda", "tensorrt") and used != wanted[0]:
        raise DeviceError(
            f"--device {device}: ONNX Runtime fell back to {used}; {wanted[0]} is not usable here "
            "(no GPU, or the CUDA / cuDNN libraries it needs are missing)"
        )
    return sess, used


@dataclass
class Runner:
    """The bundle's two graphs: region features from pixels, then hashtag probabilities."""

    extractor: ort.InferenceSession | None
    model: ort.InferenceSession
    provider: str

    @classmethod
    def load(cls, bundle: Bundle, device: str = "auto", variant: str = "model", threads: int | None = None) -> "Runner":
        model, provider = session(bundle.graph(variant), device, threads)
        extractor = None
        if "extractor" in bundle.info["graphs"]:
            extractor, _ = session(bundle.graph("extractor"), device if provider != "CPUExecutionProvider" else "cpu", threads)
        return cls(extractor, model, provider)

    def features(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, boxes = self.extractor.run(None, {"pixel_values": pixels.astype(np.float32, copy=False)})
        return feats, boxes

    def probabilities(self, text: dict[str, np.ndarray], feats: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        inputs = dict(text, visual_feats=feats.astype(np.float32, copy=False), visual_pos=boxes.astype(np.float32, copy=False))
        names = {i.name for i in self.model.get_inputs()}
        return self.model.run(["probs"], {k: v for k, v in inputs.items() if k in names})[0]
