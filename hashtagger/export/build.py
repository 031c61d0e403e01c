"""Checkpoint -> ONNX bundle (see bundle/format.py for the layout), in named steps: the graphs traced (graphs.py),
their variants and optimisations (optimise.py), parity with PyTorch checked (parity.py), then bundle.json and
its companions written, all into a folder that replaces the output atomically.

Two graphs rather than one: the region extractor runs once per image while LXMERT runs once per post
(many posts share an image), a `precomputed`-feature bundle simply has no extractor graph, and the
text-only / image-only ablations of `evaluate` feed LXMERT blanked features without the extractor.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console

from hashtagger.bundle import scope
from hashtagger.bundle.format import FORMAT_VERSION, is_bundle, read_bundle, write_manifest
from hashtagger.bundle.thresholds import MIN_POSITIVES, tune_per_hashtag, tune_threshold
from hashtagger.bundle.token_wide import FILE as TOKEN_WIDE_FILE
from hashtagger.bundle.token_wide import read_token_wide, save_token_wide
from hashtagger.data.posts import CsvColumns, posts_input
from hashtagger.data.regions import REGIONS
from hashtagger.errors import DataError, ParityError
from hashtagger.evaluation import metrics
from hashtagger.evaluation.wide import fit_wide_part, write_wide
from hashtagger.export.graphs import NAME_TOKENS, export_extractor_graph, export_model_graph, export_names_graph
from hashtagger.export.optimise import (
    fuse_transformer,
    offline_optimize,
    quantize_extractor,
    round_weights_to_fp16,
    store_weights_fp16,
)
from hashtagger.export.parity import (
    ParityInputs,
    agreement,
    compare,
    onnx_probabilities,
    parity_inputs,
    torch_probabilities,
)
from hashtagger.io.claims import Reads, claim_folder
from hashtagger.io.console import quiet_logger, say
from hashtagger.io.files import atomic_folder
from hashtagger.models.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint
from hashtagger.models.lxmert import HashtagModel, NameHead
from hashtagger.models.wide import PRIME
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
    description: str | None = None  # what the vocabulary was learnt from (bundle.json's scope); default: the data
    wide: bool = False  # also fit the wide part (evaluation/wide.py) on the training split, w chosen on validation
    new_match: float = 0.0  # name heads: extra caption-match weight for never-seen hashtags (HeadInfo.new_match)
    report: dict = field(default_factory=dict)  # filled in: ExportReport.record() (parity, fusions, variants)


def export(checkpoint: str | Path, options: ExportOptions | None = None, console: Console | None = None) -> Path:
    """Write the bundle to options.output; on any failure an existing bundle there is left untouched.
    Raises OutputError (before any work) when the output is neither absent, empty nor a bundle, unless forced,
    or when it is (or holds) the checkpoint or the data it reads."""
    options = options or ExportOptions()  # a fresh one per call: export records its report in it
    console = console or Console(stderr=True)
    output = Path(options.output)
    source = resolve_checkpoint(Path(checkpoint))
    inputs = [Reads(source), posts_input(options.data) if options.data else None]
    with claim_folder(output, options.force, ours=is_bundle, inputs=inputs, force="--force"):
        ckpt = load_checkpoint(source)
        if not math.isfinite(options.new_match):
            raise DataError(f"--new-match must be a number, not {options.new_match}")
        if options.new_match and not isinstance(ckpt.model.head, NameHead):
            raise DataError(f"{source}: --new-match weights a name head's match of new hashtags; this model has none")
        share = scope.collapse_share(ckpt.meta.top2_same_as_prior, ckpt.meta.history)
        if collapsed := scope.collapse_warning(share, f"the checkpoint {ckpt.path}"):
            say(console, collapsed, "warning")
        with atomic_folder(output) as work:
            report = _build(ckpt, work, options, console)
            if options.wide:
                write_wide(work, fit_wide_part(work, options.data, console=console), console)
    options.report.update(report.record())
    read_bundle(output)  # what we wrote must open
    return output


@dataclass
class ExportReport:
    """What an export wrote and measured. bundle.json's "export" entry holds all of it but `graphs` (which is its
    "graphs" entry)."""

    graphs: dict[str, str]  # role (model, extractor, names, int8, extractor_int8, fp16) -> the file written
    parity: dict  # model.onnx (with the extractor's graph) against the checkpoint: parity.compare()'s figures
    fusions: dict[str, int]  # ONNX Runtime's fused operators in model.onnx
    parity_inputs: str  # "validation split" or "generated"
    posts: int  # the parity posts
    variants: dict[str, dict] = field(default_factory=dict)  # int8 / fp16 / compact agreement with the checkpoint
    names_parity: dict | None = None  # a name head's names.onnx against PyTorch

    def record(self) -> dict:
        """bundle.json's "export" entry."""
        names = {"names_parity": self.names_parity} if self.names_parity is not None else {}
        return names | {
            "parity": self.parity,
            "fusions": self.fusions,
            "parity_inputs": self.parity_inputs,
            "posts": self.posts,
            "variants": self.variants,
        }


@dataclass
class _Job:
    """One export's inputs, shared by its steps."""

    ckpt: Checkpoint
    work: Path  # the folder that becomes the bundle
    options: ExportOptions
    console: Console
    inputs: ParityInputs
    # extractor.onnx; None for a model trained on precomputed features: its bundle takes region features as input
    extractor: Path | None = None


def _build(ckpt: Checkpoint, work: Path, options: ExportOptions, console: Console) -> ExportReport:
    """Every file of the bundle into `work`, in steps: graphs, variants, parity, then bundle.json and the rest."""
    job = _Job(ckpt, work, options, console, parity_inputs(ckpt, options.data, options.parity_posts, console))
    fusions = _write_graphs(job)
    graphs = {"model": "model.onnx"} | ({"extractor": job.extractor.name} if job.extractor is not None else {})
    full_precision = torch_probabilities(ckpt, job.inputs)
    names_parity = None
    if isinstance(ckpt.model.head, NameHead):
        names_parity = export_names_graph(ckpt, work / "names.onnx", options.opset, console)
        graphs["names"] = "names.onnx"
    # Variants come from the fp32 graph and are compared with the checkpoint as trained.
    variants = _write_int8(job, full_precision, graphs) if options.int8 else {}
    if options.fp16:
        variants["fp16"] = _write_fp16(job, full_precision, graphs)
    reference = _store_compact(job, "names" in graphs) if options.compact else full_precision
    onnx_probs = onnx_probabilities(job.extractor, work / "model.onnx", job.inputs)
    parity = _check_parity(job, reference, onnx_probs, fusions)
    if options.compact:
        variants["compact"] = _compact_agreement(job, full_precision, onnx_probs)
    report = ExportReport(graphs, parity, fusions, job.inputs.source, len(reference), variants, names_parity)
    _write_bundle_files(job, report, onnx_probs)
    return report


def _write_graphs(job: _Job) -> dict[str, int]:
    """model.onnx and, for a grid extractor, extractor.onnx, traced on two parity posts, fused and optimised;
    returns model.onnx's fused operators."""
    ckpt, work, inputs, opset = job.ckpt, job.work, job.inputs, job.options.opset
    config = ckpt.model.config
    job.extractor = work / "extractor.onnx" if ckpt.extractor is not None else None
    with job.console.status("exporting ONNX graphs"):
        text = {k: torch.from_numpy(v[:2]) for k, v in inputs.text.items()}
        if job.extractor is not None and ckpt.extractor is not None:
            pixels = torch.from_numpy(inputs.grid_pixels()[inputs.index[:2]])
            feats, boxes = ckpt.extractor(pixels)
            export_extractor_graph(ckpt.extractor, job.extractor, opset, pixels)
            offline_optimize(job.extractor)
        else:
            feats, boxes = (torch.from_numpy(x[inputs.index[:2]]) for x in inputs.region_arrays())
        export_model_graph(ckpt.model, work / "model.onnx", opset, dict(text, visual_feats=feats, visual_pos=boxes))
        fusions = {}
        if isinstance(ckpt.model, HashtagModel):  # the comparison systems have no BERT-shaped layers to fuse
            fusions = fuse_transformer(work / "model.onnx", config.num_attention_heads, config.hidden_size)
        offline_optimize(work / "model.onnx")
    return fusions


def _write_int8(job: _Job, full_precision: np.ndarray, graphs: dict[str, str]) -> dict[str, dict]:
    """model.int8.onnx (dynamic) and, for a grid extractor, extractor.int8.onnx (static), each alone and both
    together compared with the checkpoint: `tag --variant auto` runs the fastest that agrees."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    work, extractor, vocab = job.work, job.extractor, job.ckpt.vocab
    with quiet_logger():  # ONNX Runtime's quantisation advice on the root logger
        quantize_dynamic(
            str(work / "model.onnx"),
            str(work / "model.int8.onnx"),
            weight_type=QuantType.QInt8,
            # One scale per output channel, not per matrix: on the default model's validation posts the int8 graph's
            # top-5 overlap with fp32 rose from 95.2% to 97.4% with the int8 extractor too (96.0% to 98.0% alone).
            per_channel=True,
            # the fused contrib ops defeat shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    graphs["int8"] = "model.int8.onnx"
    int8_model = work / "model.int8.onnx"
    variants = {"int8": agreement("int8", extractor, int8_model, full_precision, job.inputs, vocab, job.console)}
    if extractor is not None:
        int8_extractor = work / "extractor.int8.onnx"
        quantize_extractor(extractor, int8_extractor, job.inputs.grid_pixels())
        graphs["extractor_int8"] = int8_extractor.name
        for name, ext, model in (
            ("extractor_int8", int8_extractor, work / "model.onnx"),
            ("int8_both", int8_extractor, int8_model),
        ):
            variants[name] = agreement(name, ext, model, full_precision, job.inputs, vocab, job.console)
    return variants


def _write_fp16(job: _Job, full_precision: np.ndarray, graphs: dict[str, str]) -> dict:
    """model.fp16.onnx (for CUDA) and its agreement with the checkpoint."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(job.work / "model.onnx")), keep_io_types=True)
    onnx.save(half, str(job.work / "model.fp16.onnx"))
    graphs["fp16"] = "model.fp16.onnx"
    half_model = job.work / "model.fp16.onnx"
    return agreement("fp16", job.extractor, half_model, full_precision, job.inputs, job.ckpt.vocab, job.console)


def _store_compact(job: _Job, names: bool) -> np.ndarray:
    """`--compact`: the model graph's large weights stored as fp16; returns the checkpoint's probabilities with its
    weights rounded the same way, the reference that parity is measured against."""
    # The model graph only: the extractor's graph has BatchNorm folded into its convolutions by then, and
    # fp16 copies of the folded weights are not the fp16-rounded checkpoint (an EfficientNet-Lite2
    # extractor moved scores by 1.6e-3); it is also the smaller graph.
    round_weights_to_fp16(job.ckpt.model)
    store_weights_fp16(job.work / "model.onnx")
    if names:  # its parity was checked in fp32; candidates move by the fp16 rounding only
        store_weights_fp16(job.work / "names.onnx")
    return torch_probabilities(job.ckpt, job.inputs)


def _check_parity(job: _Job, reference: np.ndarray, onnx_probs: np.ndarray, fusions: dict[str, int]) -> dict:
    """The written graphs against the checkpoint; ParityError (nothing written) beyond the tolerance."""
    parity = compare(reference, onnx_probs, job.ckpt.vocab, job.inputs.labels)
    source, tolerance = job.inputs.source, job.options.tolerance
    if parity["max_abs_diff"] > tolerance or parity["same_top5"] < 1.0:
        raise ParityError(
            f"ONNX parity failed on {len(reference)} {source} posts: max |p_torch - p_onnx| = "
            f"{parity['max_abs_diff']:.2e} (tolerance {tolerance:.0e}), same top-5 on "
            f"{parity['same_top5']:.1%} of posts; nothing written"
        )
    job.console.print(
        f"parity on {len(reference)} {source} posts: max |Δp| {parity['max_abs_diff']:.2e}, "
        f"same top-5 on {parity['same_top5']:.0%}; "
        f"fusions: {', '.join(f'{k} {v}' for k, v in fusions.items()) or 'none'}"
    )
    return parity


def _compact_agreement(job: _Job, full_precision: np.ndarray, onnx_probs: np.ndarray) -> dict:
    """The compact bundle against the checkpoint as trained (not fp16-rounded)."""
    result = compare(full_precision, onnx_probs, job.ckpt.vocab, job.inputs.labels)
    job.console.print(
        "compact (fp16-stored weights) vs the checkpoint: "
        f"top-5 overlap {result['top5_overlap']:.1%}, "
        f"max |Δp| {result['max_abs_diff']:.1e}"
    )
    return result


def _head_info(ckpt: Checkpoint, new_match: float) -> dict[str, Any]:
    """bundle.json's "head": a linear head, or a name head's constants."""
    head = ckpt.model.head
    if not isinstance(head, NameHead):
        return {"kind": "linear"}
    return {
        "kind": "names",
        "scale": float(head.log_scale.detach().exp()),
        "unseen_bias": head.unseen_bias(),
        "match": float(head.match.detach()),  # its weight; candidates' pieces are made at tag time
        "new_match": new_match,
        "name_tokens": NAME_TOKENS,
    }


def _bundle_info(job: _Job, report: ExportReport, onnx_probs: np.ndarray, background: str) -> dict:
    """bundle.json: what a bundle is (graphs, preprocessing, thresholds, head, model) and where it came from."""
    ckpt, options, labels = job.ckpt, job.options, job.inputs.labels
    spec = ckpt.extractor_spec
    threshold = tune_threshold(onnx_probs, ckpt.vocab, labels)
    return {
        "format_version": FORMAT_VERSION,
        "graphs": report.graphs,
        "opset": options.opset,
        "weights_stored_as": "fp16" if options.compact else "fp32",
        "image": asdict(spec.image),  # everything vision.preprocess does to an image before the extractor
        "extractor": {"kind": spec.kind, "backbone": spec.backbone, "feature_dim": spec.feature_dim}
        | ({"weights": spec.weights} if spec.weights else {})
        | ({"regions": REGIONS} if job.extractor is not None else {}),
        "text": {"max_length": ckpt.max_length, "cleaning": ckpt.prep.cleaning.__dict__},
        "threshold": threshold,
        "hashtag_thresholds": {
            "min_positives": MIN_POSITIVES,
            "values": tune_per_hashtag(onnx_probs, ckpt.vocab, labels, threshold),
        },
        "background": background,  # region features of reference images: what `explain` puts for an absent image
        "head": _head_info(ckpt, options.new_match),
        "model": {"base_model": ckpt.spec.base_model} | ckpt.model.describe() | {"hashtags": len(ckpt.vocab)},
        "source_checkpoint": str(ckpt.path),
        # With split.json, what `evaluate --model` needs to find the training data's test posts.
        "training": {
            "data": ckpt.meta.args.get("data"),
            "columns": asdict(CsvColumns.from_flags(ckpt.meta.args)),
            "prep": asdict(ckpt.prep),
        },
        "metrics": {k: v for k, v in ckpt.meta.to_json().items() if k.endswith("_metrics")},
        "export": report.record(),
        "scope": _scope(ckpt, options.description),
        # Which versions wrote the graphs, for a user who finds a bundle behaving differently elsewhere.
        "written_by": {"hashtagger": __version__, "onnxruntime": ort.__version__, "torch": torch.__version__},
    }


def _scope(ckpt: Checkpoint, description: str | None) -> dict:
    """bundle.json's "scope" (bundle/scope.py): what the vocabulary was learnt from, the frequency prior's top 5,
    and how often the checkpoint's top 2 was the prior's on validation."""
    return {
        "description": description or scope.learnt_from(ckpt.meta.args.get("data")),
        "prior": metrics.frequency_prior([list(Counter(ckpt.meta.label_counts).elements())], ckpt.vocab)[:5],
        "top2_same_as_prior": scope.collapse_share(ckpt.meta.top2_same_as_prior, ckpt.meta.history),
    }


def _write_bundle_files(job: _Job, report: ExportReport, onnx_probs: np.ndarray) -> None:
    """bundle.json, the background regions, hashtags.json, split.json, the tokenizer and the manifest."""
    ckpt, work = job.ckpt, job.work
    background = write_background(work, *_background_regions(ckpt, job.inputs))
    info = _bundle_info(job, report, onnx_probs, background)
    if tables := _write_token_wide(job):
        info["model"]["joint_wide"] |= tables
    (work / "bundle.json").write_text(json.dumps(info, indent=1))
    counts = ckpt.meta.label_counts
    (work / "hashtags.json").write_text(
        json.dumps(
            {
                "vocab": ckpt.vocab,
                "train_counts": [counts.get(t, 0) for t in ckpt.vocab],
                "held_out": ckpt.meta.held_out_tags,
            }
        )
    )
    (work / "split.json").write_text(
        json.dumps(ckpt.split)
    )  # image digests of train / val / test, as in the checkpoint
    ckpt.tokenizer.save(str(work / "tokenizer.json"))
    write_manifest(work)


# float16 tables move a parity post's wide logits by a few 1e-3 at most: they name terms in explanations, the
# graph's own copy scores.
TABLES_TOLERANCE = 2e-2


def _write_token_wide(job: _Job) -> dict:
    """A `--joint-wide` model's tables (bundle/token_wide.py, for `explain`), checked against PyTorch's wide
    logits on the parity posts; what bundle.json's model.joint_wide gains ({} for a model without a wide part)."""
    wide = getattr(job.ckpt.model, "wide", None)
    if wide is None:
        return {}
    weights = (wide.unigrams.weight.detach().numpy(), wide.pairs.weight.detach().numpy())
    save_token_wide(job.work / TOKEN_WIDE_FILE, wide.rows.numpy(), *weights, PRIME)
    tables = read_token_wide(job.work / TOKEN_WIDE_FILE, len(job.ckpt.vocab))
    ids, mask = job.inputs.text["input_ids"], job.inputs.text["attention_mask"]
    with torch.inference_mode():
        reference = wide(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    ours = np.stack([tables.logits(row[kept > 0]) for row, kept in zip(ids, mask, strict=True)])
    diff = float(np.abs(reference - ours).max())
    if diff > TABLES_TOLERANCE:
        raise ParityError(
            f"the wide part's tables differ from the model's by {diff:.2e} in logits on {len(ours)} posts "
            f"(tolerance {TABLES_TOLERANCE:.0e}); nothing written"
        )
    return {"file": TOKEN_WIDE_FILE, "tables_parity": {"max_abs_diff": round(diff, 6), "posts": len(ours)}}


def _background_regions(ckpt: Checkpoint, inputs: ParityInputs, images: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Region features and boxes of up to `images` of the parity images (validation images where there are)."""
    if ckpt.extractor is None:
        feats, boxes = inputs.region_arrays()
        return feats[:images], boxes[:images]
    with torch.inference_mode():
        feats, boxes = ckpt.extractor(torch.from_numpy(inputs.grid_pixels()[:images]))
    return feats.numpy(), boxes.numpy()
