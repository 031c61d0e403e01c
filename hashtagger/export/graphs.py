"""Tracing the bundle's ONNX graphs from PyTorch: the model (probabilities, and a name head's projection), the
region extractor, and a name head's name encoder (checked against PyTorch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from torch import nn

from hashtagger.data.batching import TEXT_INPUTS
from hashtagger.data.tagnames import tag_words
from hashtagger.data.text import encode
from hashtagger.errors import ParityError
from hashtagger.export.optimise import offline_optimize
from hashtagger.models.checkpoint import Checkpoint
from hashtagger.models.lxmert import HashtagModel, NameHead


class _Probabilities(nn.Module):
    """probs; with a name head also `projected`, the post's unit vector in name space (for new hashtags)."""

    def __init__(self, model: HashtagModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        if not isinstance(self.model, HashtagModel):  # a comparison system (archs.py): logits, one output
            return torch.sigmoid(self.model(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos))
        pooled = self.model.pooled(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos)
        probs = torch.sigmoid(self.model.logits(pooled, input_ids, attention_mask))
        return (probs, self.model.head.project(pooled)) if isinstance(self.model.head, NameHead) else probs


def export_model_graph(model: HashtagModel, path: Path, opset: int, example: dict[str, torch.Tensor]) -> None:
    outputs = ["probs", "projected"] if isinstance(model.head, NameHead) else ["probs"]
    torch.onnx.export(
        _Probabilities(model).eval(),
        tuple(example[k] for k in (*TEXT_INPUTS, "visual_feats", "visual_pos")),
        str(path),
        input_names=[*TEXT_INPUTS, "visual_feats", "visual_pos"],
        output_names=outputs,
        dynamic_axes={
            **{k: {0: "batch", 1: "tokens"} for k in TEXT_INPUTS},
            "visual_feats": {0: "batch", 1: "objects"},
            "visual_pos": {0: "batch", 1: "objects"},
            **{k: {0: "batch"} for k in outputs},
        },
        opset_version=opset,
        dynamo=False,
    )


def export_names_graph(ckpt: Checkpoint, path: Path, opset: int, console: Console) -> dict:
    """The name encoder as names.onnx (hashtag words -> unit vector), so `tag --candidates` embeds new hashtags
    without torch; checked against PyTorch on the vocabulary's names. Returns its parity report."""
    names = [tag_words(t) for t in ckpt.vocab]
    text = {k: torch.from_numpy(v) for k, v in encode(ckpt.tokenizer, names, NAME_TOKENS).items()}
    encoder = ckpt.model.name_encoder.eval()
    torch.onnx.export(
        encoder,
        tuple(text[k] for k in TEXT_INPUTS),
        str(path),
        input_names=list(TEXT_INPUTS),
        output_names=["embedding"],
        dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in TEXT_INPUTS}, "embedding": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    offline_optimize(path)
    with torch.inference_mode():
        reference = encoder(*(text[k] for k in TEXT_INPUTS)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {k: v.numpy() for k, v in text.items()})[0]
    diff = float(np.max(np.abs(reference - got)))
    if diff > 1e-4:
        raise ParityError(f"names.onnx parity failed: max |e_torch - e_onnx| = {diff:.2e}; nothing written")
    console.print(f"names graph: {len(names)} hashtag names, max |Δe| {diff:.2e}")
    return {"max_abs_diff": diff, "names": len(names)}


NAME_TOKENS = 32  # a hashtag's words fit in far fewer tokens


def export_extractor_graph(extractor: nn.Module, path: Path, opset: int, pixels: torch.Tensor) -> None:
    torch.onnx.export(
        extractor.eval(),
        (pixels,),
        str(path),
        input_names=["pixel_values"],
        output_names=["visual_feats", "visual_pos"],
        dynamic_axes={"pixel_values": {0: "batch"}, "visual_feats": {0: "batch"}, "visual_pos": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
