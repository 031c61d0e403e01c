"""Checkpoint -> ONNX bundle (see bundle.py for the layout), parity-checked, optimised, written atomically.

Two graphs rather than one: the region extractor runs once per image while LXMERT runs once per post
(many posts share an image), a `precomputed`-feature bundle simply has no extractor graph, and the
text-only / image-only ablations of `evaluate` feed LXMERT blanked features without the extractor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console
from torch import nn

from hashtagger.bundle.format import FORMAT_VERSION, is_bundle, read_bundle, write_manifest
from hashtagger.bundle.thresholds import MIN_POSITIVES, tune_per_hashtag, tune_threshold
from hashtagger.data.batching import TEXT_INPUTS, split_examples
from hashtagger.data.images import load_pixels
from hashtagger.data.precomputed import precomputed_path, read_precomputed
from hashtagger.data.tagnames import tag_words
from hashtagger.data.text import encode
from hashtagger.errors import DataError, ImageError, OutputError, ParityError
from hashtagger.evaluation import metrics
from hashtagger.io.files import atomic_folder
from hashtagger.models import registry as archs
from hashtagger.models.checkpoint import Checkpoint, load_checkpoint
from hashtagger.models.lxmert import HashtagModel, NameHead
from hashtagger.tagging.attribution import write_background
from hashtagger.version import __version__


@dataclass
class ExportOptions:
    output: str = "exported"
    opset: int = 17
    fp16: bool = False  # extra model.fp16.onnx for CUDA
    int8: bool = False  # extra model.int8.onnx (dynamic) and extractor.int8.onnx (static) for CPU
    compact: bool = False  # store fp32 weights as fp16 (half the size); computation stays fp32
    tolerance: float = 1e-4
    parity_posts: int = 512  # validation posts for parity, variant agreement and the threshold (all, up to this)
    data: str | None = None  # where the checkpoint's validation posts are; default: its training data
    force: bool = False  # replace options.output even when it is not a bundle or an empty folder
    report: dict = field(default_factory=dict)  # filled in: parity, fusions, variants


class _Probabilities(nn.Module):
    """probs; with a name head also `projected`, the post's unit vector in name space (for new hashtags)."""

    def __init__(self, model: HashtagModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        if not isinstance(self.model, HashtagModel):  # a comparison system (archs.py): logits, one output
            return torch.sigmoid(self.model(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos))
        pooled = self.model.pooled(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos)
        probs = torch.sigmoid(self.model.logits(pooled, input_ids))
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

    quantize_static(
        str(extractor),
        str(output),
        Batches(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


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


def parity_inputs(ckpt: Checkpoint, options: ExportOptions, console: Console) -> ParityInputs:
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
        chosen = split_examples(ckpt, "val", options.data)[: options.parity_posts]
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
        console.print(f"[yellow]validation posts unavailable ({e}); checking parity on generated inputs")
    rng = np.random.default_rng(0)
    n = options.parity_posts
    words = list(ckpt.vocab) or ["photo"]
    texts = [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(0, 40, n)]
    text, labels, index = encode(ckpt.tokenizer, texts, ckpt.max_length), [set() for _ in texts], np.arange(n)
    if precomputed:
        boxes = np.sort(rng.uniform(0, 1, (n, 36, 4)), axis=2).astype(np.float32)
        regions = (rng.normal(size=(n, 36, spec.feature_dim)).astype(np.float32), boxes)
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


def check_export_target(output: Path, force: bool = False) -> None:
    """An export replaces a bundle or an empty folder; anything else only with `force`."""
    if force or not (output.exists() or output.is_symlink()):
        return
    if output.is_symlink() or not output.is_dir():
        raise OutputError(
            f"{output} exists and is not a folder; choose another --output, or pass --force to replace it"
        )
    if any(output.iterdir()) and not is_bundle(output):
        raise OutputError(
            f"{output} is a folder that is not a hashtagger bundle; choose another --output, "
            "or pass --force to replace it and everything in it"
        )


def export(checkpoint: str | Path, options: ExportOptions | None = None, console: Console | None = None) -> Path:
    """Write the bundle to options.output; on any failure an existing bundle there is left untouched.
    Raises OutputError (before any work) when the output is neither absent, empty nor a bundle, unless forced."""
    options = options or ExportOptions()  # a fresh one per call: export records its report in it
    console = console or Console(stderr=True)
    output = Path(options.output)
    check_export_target(output, options.force)
    ckpt = load_checkpoint(Path(checkpoint))
    with atomic_folder(output) as work:
        _build(ckpt, work, options, console)
    read_bundle(output)  # what we wrote must open
    return output


def _build(ckpt: Checkpoint, work: Path, options: ExportOptions, console: Console) -> None:
    inputs = parity_inputs(ckpt, options, console)
    config = ckpt.model.config
    # A model trained on precomputed features has no extractor: its bundle takes region features as input.
    extractor = work / "extractor.onnx" if ckpt.extractor is not None else None
    with console.status("exporting ONNX graphs"):
        text = {k: torch.from_numpy(v[:2]) for k, v in inputs.text.items()}
        if extractor is not None and ckpt.extractor is not None:
            pixels = torch.from_numpy(inputs.grid_pixels()[inputs.index[:2]])
            feats, boxes = ckpt.extractor(pixels)
            export_extractor_graph(ckpt.extractor, extractor, options.opset, pixels)
            offline_optimize(extractor)
        else:
            feats, boxes = (torch.from_numpy(x[inputs.index[:2]]) for x in inputs.region_arrays())
        export_model_graph(
            ckpt.model, work / "model.onnx", options.opset, dict(text, visual_feats=feats, visual_pos=boxes)
        )
        fusions = {}
        if isinstance(ckpt.model, HashtagModel):  # the comparison systems have no BERT-shaped layers to fuse
            fusions = fuse_transformer(work / "model.onnx", config.num_attention_heads, config.hidden_size)
        offline_optimize(work / "model.onnx")
    full_precision = torch_probabilities(ckpt, inputs)
    graphs = {"model": "model.onnx"} | ({"extractor": extractor.name} if extractor is not None else {})
    head: dict[str, Any] = {"kind": "linear"}
    if isinstance(ckpt.model.head, NameHead):
        options.report["names_parity"] = export_names_graph(ckpt, work / "names.onnx", options.opset, console)
        graphs["names"] = "names.onnx"
        head = {
            "kind": "names",
            "scale": float(ckpt.model.head.log_scale.detach().exp()),
            "unseen_bias": ckpt.model.head.unseen_bias(),
            "match": float(ckpt.model.head.match.detach()),  # its weight; candidates' pieces are made at tag time
            "name_tokens": NAME_TOKENS,
        }
    # Variants come from the fp32 graph and are compared with the checkpoint as trained.
    variants = {}
    if options.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(work / "model.onnx"),
            str(work / "model.int8.onnx"),
            weight_type=QuantType.QInt8,
            # the fused contrib ops defeat shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        graphs["int8"] = "model.int8.onnx"
        int8_model = work / "model.int8.onnx"
        variants["int8"] = _agreement("int8", extractor, int8_model, full_precision, inputs, ckpt.vocab, console)
        if extractor is not None:
            int8_extractor = work / "extractor.int8.onnx"
            quantize_extractor(extractor, int8_extractor, inputs.grid_pixels())
            graphs["extractor_int8"] = int8_extractor.name
            # Each int8 graph alone and both together: `tag --variant auto` runs the fastest that agrees.
            for name, ext, model in (
                ("extractor_int8", int8_extractor, work / "model.onnx"),
                ("int8_both", int8_extractor, int8_model),
            ):
                variants[name] = _agreement(name, ext, model, full_precision, inputs, ckpt.vocab, console)
    if options.fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(onnx.load(str(work / "model.onnx")), keep_io_types=True)
        onnx.save(half, str(work / "model.fp16.onnx"))
        graphs["fp16"] = "model.fp16.onnx"
        half_model = work / "model.fp16.onnx"
        variants["fp16"] = _agreement("fp16", extractor, half_model, full_precision, inputs, ckpt.vocab, console)
    reference = full_precision
    if options.compact:
        # The model graph only: the extractor's graph has BatchNorm folded into its convolutions by then, and
        # fp16 copies of the folded weights are not the fp16-rounded checkpoint (an EfficientNet-Lite2
        # extractor moved scores by 1.6e-3); it is also the smaller graph.
        round_weights_to_fp16(ckpt.model)
        store_weights_fp16(work / "model.onnx")
        if "names" in graphs:  # its parity was checked in fp32; candidates move by the fp16 rounding only
            store_weights_fp16(work / "names.onnx")
        reference = torch_probabilities(ckpt, inputs)
    onnx_probs = onnx_probabilities(extractor, work / "model.onnx", inputs)
    parity = compare(reference, onnx_probs, ckpt.vocab, inputs.labels)
    options.report.update(parity=parity, fusions=fusions, parity_inputs=inputs.source, posts=len(reference))
    if parity["max_abs_diff"] > options.tolerance or parity["same_top5"] < 1.0:
        raise ParityError(
            f"ONNX parity failed on {len(reference)} {inputs.source} posts: max |p_torch - p_onnx| = "
            f"{parity['max_abs_diff']:.2e} (tolerance {options.tolerance:.0e}), same top-5 on "
            f"{parity['same_top5']:.1%} of posts; nothing written"
        )
    console.print(
        f"parity on {len(reference)} {inputs.source} posts: max |Δp| {parity['max_abs_diff']:.2e}, "
        f"same top-5 on {parity['same_top5']:.0%}; "
        f"fusions: {', '.join(f'{k} {v}' for k, v in fusions.items()) or 'none'}"
    )
    if options.compact:
        variants["compact"] = compare(full_precision, onnx_probs, ckpt.vocab, inputs.labels)
        console.print(
            "compact (fp16-stored weights) vs the checkpoint: "
            f"top-5 overlap {variants['compact']['top5_overlap']:.1%}, "
            f"max |Δp| {variants['compact']['max_abs_diff']:.1e}"
        )
    options.report["variants"] = variants
    background = write_background(work, *_background_regions(ckpt, inputs))
    spec = ckpt.extractor_spec
    threshold = tune_threshold(onnx_probs, ckpt.vocab, inputs.labels)
    info = {
        "format_version": FORMAT_VERSION,
        "graphs": graphs,
        "opset": options.opset,
        "weights_stored_as": "fp16" if options.compact else "fp32",
        "image": asdict(spec.image),  # everything vision.preprocess does to an image before the extractor
        "extractor": {"kind": spec.kind, "backbone": spec.backbone, "feature_dim": spec.feature_dim}
        | ({"weights": spec.weights} if spec.weights else {})
        | ({"regions": 36} if extractor is not None else {}),
        "text": {"max_length": ckpt.max_length, "cleaning": ckpt.prep.cleaning.__dict__},
        "threshold": threshold,
        "hashtag_thresholds": {
            "min_positives": MIN_POSITIVES,
            "values": tune_per_hashtag(onnx_probs, ckpt.vocab, inputs.labels, threshold),
        },
        "background": background,
        "head": head,  # region features of reference images: what `explain` puts for an absent image
        "model": {"base_model": ckpt.meta["model_spec"]["base_model"]}
        | archs.describe(ckpt.model)
        | {"hashtags": len(ckpt.vocab)},
        "source_checkpoint": str(ckpt.path),
        # With split.json, what `evaluate --model` needs to find the training data's test posts.
        "training": {k: ckpt.meta.get("args", {}).get(k) for k in ("data", "columns")} | {"prep": asdict(ckpt.prep)},
        "metrics": {k: ckpt.meta[k] for k in ("val_metrics", "test_metrics", "prior_test_metrics") if k in ckpt.meta},
        "export": options.report,
        # Which versions wrote the graphs, for a user who finds a bundle behaving differently elsewhere.
        "written_by": {"hashtagger": __version__, "onnxruntime": ort.__version__, "torch": torch.__version__},
    }
    (work / "bundle.json").write_text(json.dumps(info, indent=1))
    counts = ckpt.meta.get("label_counts", {})
    (work / "hashtags.json").write_text(
        json.dumps(
            {
                "vocab": ckpt.vocab,
                "train_counts": [counts.get(t, 0) for t in ckpt.vocab],
                "held_out": ckpt.meta.get("held_out_tags", []),
            }
        )
    )
    (work / "split.json").write_text(
        json.dumps(ckpt.split)
    )  # image digests of train / val / test, as in the checkpoint
    ckpt.tokenizer.save(str(work / "tokenizer.json"))
    write_manifest(work)


def _background_regions(ckpt: Checkpoint, inputs: ParityInputs, images: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Region features and boxes of up to `images` of the parity images (validation images where there are)."""
    if ckpt.extractor is None:
        feats, boxes = inputs.region_arrays()
        return feats[:images], boxes[:images]
    with torch.inference_mode():
        feats, boxes = ckpt.extractor(torch.from_numpy(inputs.grid_pixels()[:images]))
    return feats.numpy(), boxes.numpy()


def _agreement(
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
        console.print(f"[yellow]{name}: written, but its agreement cannot be measured on the CPU provider ({e})")
        return {"measured": False, "reason": str(e).splitlines()[0]}
    result = compare(reference, probs, vocab, inputs.labels)
    console.print(
        f"{name} vs fp32: top-5 overlap {result['top5_overlap']:.1%}, same top-5 on {result['same_top5']:.0%}"
        + (f", F1@2 {result['f1@2']:.3f} (fp32 {result['f1@2_reference']:.3f})" if "f1@2" in result else "")
    )
    return result
