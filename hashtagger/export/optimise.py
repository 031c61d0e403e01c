"""Making the traced graphs smaller and faster: ONNX Runtime's BERT fusions and basic optimisations saved into
the file, fp16-stored weights (`--compact`), and the int8 extractor's static quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from hashtagger.io.console import quiet_logger


def fuse_transformer(path: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """ONNX Runtime's transformers optimizer (BERT fusions: LayerNorm, Gelu, attention, ...), in place.

    Returns the fused-operator counts; LXMERT's self-attention blocks are BERT-shaped, its cross-attention is not.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    optimized.save_model_to_file(str(path))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def round_weights_to_fp16(module: nn.Module) -> None:
    """Make the PyTorch weights exactly what a compact bundle stores, so parity is measured on the same model."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() >= COMPACT_MIN_ELEMENTS:
                tensor.copy_(tensor.half().float())


COMPACT_MIN_ELEMENTS = 1024  # small tensors (biases, norms) stay fp32: they cost nothing and matter most


def store_weights_fp16(path: Path) -> None:
    """Keep large fp32 initializers as fp16 followed by a Cast to fp32.

    ONNX Runtime folds the Casts when the session starts, so the graph computes in fp32 as before
    while the file is half the size (this is how the default model fits in the repository).
    """
    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < COMPACT_MIN_ELEMENTS:
            continue
        half = onnx.numpy_helper.to_array(init).astype(np.float16)
        name = init.name
        init.CopyFrom(onnx.numpy_helper.from_array(half, f"{name}.fp16"))
        casts.append(onnx.helper.make_node("Cast", [f"{name}.fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))


def offline_optimize(path: Path) -> None:
    """ONNX Runtime's provider-independent (basic) optimisations saved into the file, so each start skips them."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    path.with_suffix(".opt.onnx").replace(path)


CALIBRATION_IMAGES = 128  # validation images whose activation ranges set the int8 extractor's scales
CALIBRATION_BATCH = 8  # images per calibration run


def quantize_extractor(extractor: Path, output: Path, pixels: np.ndarray) -> None:
    """Static int8 quantisation of the extractor graph: int8 weights per channel, uint8 activations whose scales
    are calibrated (min / max) on up to CALIBRATION_IMAGES of `pixels`. QDQ format: ONNX Runtime's CPU provider
    fuses it into integer convolutions. On the EfficientNet-Lite2 extractor (README, Export) it ran 1.6x faster
    than fp32, while int8 activations ran no faster than fp32, per-tensor weights or Conv-only quantisation
    changed the features far more, and the QOperator format could not be written (a cycle in ONNX Runtime's
    rewrite of the "same"-padding shape arithmetic)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = pixels[:CALIBRATION_IMAGES]

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.starts = iter(range(0, len(images), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.starts, None)
            return None if start is None else {"pixel_values": images[start : start + CALIBRATION_BATCH]}

    # ONNX Runtime's quantisation logs advice on the root logger ("consider pre-processing before quantization")
    # about graphs this export has already optimised: a stray line in the user's terminal.
    with quiet_logger():
        quantize_static(
            str(extractor),
            str(output),
            Batches(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
