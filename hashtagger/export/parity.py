"""Does the bundle score as the checkpoint does: the parity posts (validation posts, generated ones when the data
is gone), PyTorch's and ONNX Runtime's probabilities on them, and how far a graph (or a variant) agrees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console

from hashtagger.data.batching import TEXT_INPUTS, split_examples
from hashtagger.data.images import load_pixels
from hashtagger.data.precomputed import precomputed_path, read_precomputed
from hashtagger.data.regions import REGIONS
from hashtagger.data.text import encode
from hashtagger.errors import DataError, ImageError
from hashtagger.evaluation import metrics
from hashtagger.io.console import say
from hashtagger.models.checkpoint import Checkpoint


@dataclass
class ParityInputs:
    text: dict[str, np.ndarray]
    labels: list[set[str]]
    source: str  # "validation split" or "generated"
    index: np.ndarray  # each post's row in `pixels` / `regions`: posts that share an image share a row
    pixels: np.ndarray | None = None  # [images, 3, S, S], for a grid extractor
    regions: tuple[np.ndarray, np.ndarray] | None = None  # ([images, N, D], [images, N, 4]), precomputed features

    def grid_pixels(self) -> np.ndarray:
        assert self.pixels is not None, "a grid extractor's parity inputs are pixels"
        return self.pixels

    def region_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.regions is not None, "a precomputed-feature model's parity inputs are region features"
        return self.regions


def parity_inputs(ckpt: Checkpoint, data: str | None, posts: int, console: Console) -> ParityInputs:
    """Up to `parity_posts` validation posts of the checkpoint (generated ones if its data is gone)."""
    spec = ckpt.extractor_spec
    precomputed = ckpt.extractor is None

    def load(image: Path):
        if precomputed:
            if spec.features_dir is None:
                raise DataError(f"{ckpt.path} does not record the folder of its precomputed features")
            return read_precomputed(precomputed_path(spec.features_dir, image))
        return load_pixels(image, spec.image)

    try:
        chosen = split_examples(ckpt, "val", data)[:posts]
        rows: dict[str, int] = {}  # image digest -> row: each image is decoded once
        images, rows_of_posts, texts, labels = [], [], [], []
        for example, digest in chosen:
            if digest not in rows:
                try:
                    images.append(load(example.image))
                except ImageError:
                    continue
                rows[digest] = len(images) - 1
            rows_of_posts.append(rows[digest])
            texts.append(example.text)
            labels.append(set(example.labels))
        if len(texts) >= 2:
            text, index = encode(ckpt.tokenizer, texts, ckpt.max_length), np.asarray(rows_of_posts)
            if precomputed:
                regions = (np.stack([f for f, _ in images]), np.stack([b for _, b in images]))
                return ParityInputs(text, labels, "validation split", index, regions=regions)
            return ParityInputs(text, labels, "validation split", index, pixels=np.stack(images))
    except (DataError, OSError, ValueError) as e:  # ValueError: precomputed files with unequal box counts
        say(console, f"validation posts unavailable ({e}); checking parity on generated inputs", "warning")
    rng = np.random.default_rng(0)
    n = posts
    words = list(ckpt.vocab) or ["photo"]
    texts = [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(0, 40, n)]
    text, labels, index = encode(ckpt.tokenizer, texts, ckpt.max_length), [set() for _ in texts], np.arange(n)
    if precomputed:
        boxes = np.sort(rng.uniform(0, 1, (n, REGIONS, 4)), axis=2).astype(np.float32)
        regions = (rng.normal(size=(n, REGIONS, spec.feature_dim)).astype(np.float32), boxes)
        return ParityInputs(text, labels, "generated", index, regions=regions)
    pixels = rng.normal(size=(n, 3, spec.image.size, spec.image.size)).astype(np.float32)
    return ParityInputs(text, labels, "generated", index, pixels=pixels)


def torch_probabilities(ckpt: Checkpoint, inputs: ParityInputs) -> np.ndarray:
    with torch.inference_mode():
        if ckpt.extractor is None:
            feats, boxes = (torch.from_numpy(x) for x in inputs.region_arrays())
        else:
            feats, boxes = ckpt.extractor(torch.from_numpy(inputs.grid_pixels()))
        index = torch.from_numpy(inputs.index)
        text = {k: torch.from_numpy(v) for k, v in inputs.text.items()}
        return torch.sigmoid(ckpt.model(*(text[k] for k in TEXT_INPUTS), feats[index], boxes[index])).numpy()


def onnx_probabilities(extractor: Path | None, model: Path, inputs: ParityInputs) -> np.ndarray:
    if extractor is None:
        feats, boxes = inputs.region_arrays()
    else:
        ext = ort.InferenceSession(str(extractor), providers=["CPUExecutionProvider"])
        feats, boxes = ext.run(None, {"pixel_values": inputs.grid_pixels()})
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    regions = {"visual_feats": feats[inputs.index], "visual_pos": boxes[inputs.index]}
    feeds = {k: v for k, v in dict(inputs.text, **regions).items() if k in names}
    return sess.run(["probs"], feeds)[0]


def compare(reference: np.ndarray, candidate: np.ndarray, vocab: list[str], labels: list[set[str]]) -> dict:
    """Max probability difference, share of posts with the same top-5 (as a set), mean top-5 overlap, F1@2 of each."""
    ref5, cand5 = metrics.rank(reference, vocab, 5), metrics.rank(candidate, vocab, 5)
    overlap = [len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(ref5, cand5, strict=True)]
    result = {
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
        "same_top5": sum(a == b for a, b in zip(ref5, cand5, strict=True)) / len(ref5),
        "top5_overlap": float(np.mean(overlap)),
    }
    if any(labels):
        result["f1@2_reference"] = metrics.topk_metrics(ref5, labels, (2,))[2]["f1"]
        result["f1@2"] = metrics.topk_metrics(cand5, labels, (2,))[2]["f1"]
    return result


def agreement(
    name: str,
    extractor: Path | None,
    model: Path,
    reference: np.ndarray,
    inputs: ParityInputs,
    vocab: list[str],
    console: Console,
) -> dict:
    """The variant's top-5 and F1@2 on the parity posts against the checkpoint's (`reference`)."""
    try:
        probs = onnx_probabilities(extractor, model, inputs)
    except Exception as e:  # e.g. fp16 kernels missing on the CPU provider
        say(console, f"{name}: written, but its agreement cannot be measured on the CPU provider ({e})", "warning")
        return {"measured": False, "reason": str(e).splitlines()[0]}
    result = compare(reference, probs, vocab, inputs.labels)
    console.print(
        f"{name} vs fp32: top-5 overlap {result['top5_overlap']:.1%}, same top-5 on {result['same_top5']:.0%}"
        + (f", F1@2 {result['f1@2']:.3f} (fp32 {result['f1@2_reference']:.3f})" if "f1@2" in result else "")
    )
    return result
