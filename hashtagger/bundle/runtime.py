"""ONNX Runtime sessions for a bundle, on the best provider that really works. No torch."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hashtagger.bundle import gpu
from hashtagger.bundle.format import Bundle, check_graph_shapes
from hashtagger.bundle.wide import WidePart
from hashtagger.data.tagnames import caption_match, name_pieces, tag_words
from hashtagger.data.text import encode
from hashtagger.errors import BundleError, DeviceError
from hashtagger.io.extras import gpu_hint

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
CPU = "CPUExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# Input pixels the extractor sees at once on the CPU (Runner.features): eight 260x260 images. Measured with the
# default model (EfficientNet-Lite2, --batch-size 32, 300 posts, one thread): 0.64 GB anonymous memory against
# 1.26 GB when it sees the whole batch, at 0.98x the posts/s (benchmarks/extractor_memory.py).
EXTRACT_PIXELS = 8 * 260 * 260
# `--variant auto` on the CPU takes int8 graphs only when export measured them against fp32 on validation posts
# and their F1@2 moved by at most this much.
INT8_F1_TOLERANCE = 0.005
INT8_TOP5_OVERLAP = 0.95  # and on average 95% of each validation post's fp32 top 5 in its int8 top 5
# The int8 choices of `auto`, fastest first: (key of its agreement in bundle.json's export.variants, model graph,
# extractor graph). "int8" is model.int8.onnx with the fp32 extractor, as bundles before the int8 extractor record.
# On new photos (every image distinct) the extractor is most of the time: the default model on 200 distinct
# images ran 1.44x fp32 with the int8 extractor alone and 1.11x with the int8 model graph alone
# (benchmarks/variant_throughput.py --distinct).
INT8_CHOICES = (
    ("int8_both", "int8", "extractor_int8"),
    ("extractor_int8", "model", "extractor_int8"),
    ("int8", "int8", "extractor"),
)
# Redirecting stdout / stderr is process-wide: sessions that capture ONNX Runtime's messages open one at a time.
_CAPTURE_LOCK = threading.Lock()


def session(
    path: Path, device: str = "auto", threads: int | None = None, shapes: dict[str, str] | None = None
) -> tuple[ort.InferenceSession, str]:
    """An optimised session and the provider that actually runs it (from the session, not the wish list).

    auto: CUDA when ONNX Runtime can really use it, else CPU. cuda / tensorrt: that provider or an error.
    `shapes`: TensorRT's shape profiles ({input: "min;opt;max"}), see gpu.tensorrt_options.
    """
    sess, used, _ = _open(path, device, threads, shapes)
    return sess, used


def _open(
    path: Path, device: str, threads: int | None, shapes: dict[str, str] | None = None
) -> tuple[ort.InferenceSession, str, str]:
    """session(), plus why the wanted GPU provider did not start ("" when it did, or none was wanted)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the GPU package's fallback messages are reported by us, once, in words
    if threads:
        options.intra_op_num_threads = threads
    # Tagging runs the extractor and LXMERT at once in two threads: idle ONNX Runtime workers that spin waiting for
    # work take the cores from the other session (measured on 2 cores: spinning off is faster quiet and under load).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = PROVIDERS["cuda"] if device == "auto" else PROVIDERS.get(device)
    if wanted is None:
        raise DeviceError(f"unknown device '{device}' (auto, cpu, cuda or tensorrt)")
    available = ort.get_available_providers()
    if device in ("cuda", "tensorrt") and wanted[0] not in available:
        raise DeviceError(
            f"--device {device}: this onnxruntime build has no {wanted[0]} (it has {', '.join(available)}); "
            + gpu_hint()
        )
    if device == "auto" and wanted[0] not in available:
        wanted = PROVIDERS["cpu"]
        why = f"this onnxruntime build has no {PROVIDERS['cuda'][0]}"
    else:
        why = ""
    try:
        if wanted[0] == CPU:  # nothing to fall back from: no messages to catch, and CPU sessions open in parallel
            log = io.StringIO()
            sess = ort.InferenceSession(str(path), options, providers=[CPU])
        else:
            # ONNX Runtime prints provider failures itself: to stdout (which may carry our JSON) and through its
            # C++ logger to stderr. Keep both, and turn them into one reason.
            providers: list = [p for p in wanted if p in available]
            if providers[0] == TENSORRT:
                providers[0] = (TENSORRT, gpu.tensorrt_options(path, shapes or {}))
            with _CAPTURE_LOCK, _captured_output() as log:
                _preload_cuda_libraries()
                sess = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types; all mean "this graph cannot be loaded"
        if device in ("cuda", "tensorrt"):
            raise DeviceError(f"--device {device}: ONNX Runtime could not start {wanted[0]}: {e}") from None
        raise BundleError(f"{path}: ONNX Runtime cannot load this graph: {e}") from None
    used = sess.get_providers()[0]
    if used != wanted[0]:
        why = _reason(log.getvalue())
    if device in ("cuda", "tensorrt") and used != wanted[0]:
        raise DeviceError(
            f"--device {device}: {wanted[0]} is not usable here ({why}); ONNX Runtime would fall back to {used}"
        )
    return sess, used, why


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries that the [gpu] extra installs as nvidia-* packages.

    onnxruntime-gpu does not search site-packages for them by itself: without this its CUDA provider fails
    with "libcublasLt.so.13: cannot open shared object file". Harmless where CUDA comes from the system.
    """
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is not None:
        preload()


@contextlib.contextmanager
def _captured_output():
    """Collect what is written to stdout / stderr (Python and C++ alike) inside the block."""
    log = io.StringIO()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real file descriptors (embedded, pytest capture): Python only
        with contextlib.redirect_stdout(log):
            yield log
        return
    with tempfile.TemporaryFile("w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log):
                yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log.write(tmp.read().decode("utf-8", "replace"))


def _reason(log: str) -> str:
    """The cause in ONNX Runtime's fallback messages, e.g. 'libcublasLt.so.13: cannot open shared object file'."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    messages = [m.strip() for m in re.findall(r"\[[EW]:onnxruntime[^\]]*\]\s*(.+)", log)]
    parts = []
    for m in messages:
        if "with error: " in m:
            parts.append(m.split("with error: ", 1)[1].split(": No such file")[0].strip())
            break
    requirement = next((re.search(r"Require [^.]*\.\*[^.]*\.\*", m) for m in messages if "Require " in m), None)
    if requirement:
        parts.append(requirement.group(0).replace("Require", "onnxruntime-gpu requires"))
    if not parts and messages:
        parts.append(messages[0][:300])
    if not gpu.nvidia_present():
        parts.insert(0, "no NVIDIA GPU found")
    return "; ".join(parts) or "no GPU, or the CUDA / cuDNN libraries it needs are missing"


VARIANTS = ("default", "auto", "model", "int8", "fp16")


def choose_graphs(bundle: Bundle, variant: str, device: str) -> tuple[str, str | None]:
    """The (model, extractor) graph roles that `variant` runs on `device` (cpu, cuda or tensorrt); no extractor
    for a precomputed-feature bundle.

    model: fp32. int8: every int8 graph the bundle has. fp16: an fp16 model graph (gpu.half_graph). default:
    fp32 on the CPU, fp16 on CUDA, fp32 on TensorRT (which builds fp16 engines from it). auto: the default, except
    that on the CPU it takes the fastest int8 graphs whose F1@2 on validation, recorded by export, is within
    INT8_F1_TOLERANCE of fp32's and whose top 5 holds INT8_TOP5_OVERLAP of fp32's.
    """
    graphs = bundle.info.graphs
    extractor = "extractor" if "extractor" in graphs else None
    if variant not in VARIANTS:
        raise BundleError(f"unknown variant '{variant}' ({', '.join(VARIANTS)})")
    if variant in ("default", "auto"):
        if device == "cpu":
            return (int8_choice(bundle) if variant == "auto" else None) or ("model", extractor)
        return ("fp16" if device == "cuda" else "model"), extractor
    if variant == "int8" and extractor is not None and "extractor_int8" in graphs:
        return "int8", "extractor_int8"
    return variant, extractor


def int8_choice(bundle: Bundle) -> tuple[str, str | None] | None:
    """The (model, extractor) int8 graph roles `--variant auto` runs on the CPU; None when none agrees with fp32."""
    graphs, recorded = bundle.info.graphs, bundle.info.variants
    for key, model, extractor in INT8_CHOICES:
        roles = (model, extractor) if "extractor" in graphs else (model,)
        if all(role in graphs for role in roles) and int8_agrees(recorded.get(key)):
            return model, roles[1] if len(roles) > 1 else None
    return None


def int8_agrees(agreement: dict | None) -> bool:
    """An int8 variant's recorded agreement passes: its F1@2 within INT8_F1_TOLERANCE of fp32's on validation and
    its top-5 overlap with fp32 at least INT8_TOP5_OVERLAP.
    Not measured (no labelled validation posts, a graph the CPU could not run), or fp32's F1@2 is 0: it does not
    pass."""
    if not isinstance(agreement, dict):
        return False
    f1, reference = agreement.get("f1@2"), agreement.get("f1@2_reference")
    if not isinstance(f1, (int, float)) or not isinstance(reference, (int, float)):
        return False
    # A model that gets nothing right (random weights) agrees with anything: that is no evidence.
    overlap = agreement.get("top5_overlap")
    close = isinstance(overlap, (int, float)) and overlap >= INT8_TOP5_OVERLAP
    return close and reference > 0 and abs(f1 - reference) <= INT8_F1_TOLERANCE


def variant_label(model: str, extractor: str | None) -> str:
    """E.g. "model int8, extractor int8", "model fp32": what a run's summary says it ran."""
    label = f"model {'fp32' if model == 'model' else model}"
    if extractor is not None:
        label += f", extractor {'int8' if extractor == 'extractor_int8' else 'fp32'}"
    return label


def _model_graph(bundle: Bundle, role: str, explicit: bool) -> tuple[Path | None, str]:
    """The model graph's path for `role` and a note for the run's label; (None, note) when an fp16 graph that was
    only a default cannot be had. BundleError when one asked for by name cannot."""
    if role != "fp16":
        return bundle.graph(role), ""
    path, how = gpu.half_graph(bundle)
    if path is None:
        if explicit:
            raise BundleError(f"{bundle.path}: --variant fp16: {how}")
        return None, f"fp16 not used: {how}"
    return path, "" if how == "the bundle's" else f"fp16 graph {how}"


def _profiles(bundle: Bundle, batch: int) -> dict[str, str]:
    """TensorRT shape profiles ("min;opt;max") of both graphs' inputs for batches of up to `batch` posts."""
    side, regions = bundle.image.size, bundle.info.extractor.regions
    dim, longest = bundle.info.extractor.feature_dim, bundle.max_length
    text = f"1x1;{batch}x{min(48, longest)};{batch}x{longest}"
    return {
        "pixel_values": f"1x3x{side}x{side};{batch}x3x{side}x{side};{batch}x3x{side}x{side}",
        "input_ids": text,
        "attention_mask": text,
        "token_type_ids": text,
        "visual_feats": f"1x{regions}x{dim};{batch}x{regions}x{dim};{batch}x{regions}x{dim}",
        "visual_pos": f"1x{regions}x4;{batch}x{regions}x4;{batch}x{regions}x4",
    }


def _shapes(args) -> dict[str, list]:
    return {a.name: list(a.shape or []) for a in args}


@dataclass
class Candidates:
    """Hashtags added at tag time, scored by a name head:
    sigmoid(scale * projected . embedding + unseen_bias + (match + new_match) * caption_match): as NameHead scores
    its own, with the bundle's extra weight on the caption match of hashtags it never saw."""

    tags: list[str]  # not in the vocabulary
    embeddings: np.ndarray  # [tags, dim], unit vectors from the bundle's names graph
    pieces: np.ndarray  # [tags, 2, width], tagnames.name_pieces
    scale: float
    bias: float
    match: float
    new_match: float = 0.0

    def probabilities(self, projected: np.ndarray, input_ids: np.ndarray) -> np.ndarray:
        if not self.tags:
            return np.zeros((len(projected), 0), projected.dtype)
        logits = self.scale * projected @ self.embeddings.T + self.bias
        if self.match + self.new_match:
            logits = logits + (self.match + self.new_match) * caption_match(input_ids, self.pieces)
        return 1.0 / (1.0 + np.exp(-logits))


@dataclass
class Runner:
    """The bundle's two graphs: region features from pixels, then hashtag probabilities (of the vocabulary, then
    of any candidates added with `add_candidates`)."""

    extractor: ort.InferenceSession | None
    model: ort.InferenceSession
    provider: str
    fallback: str = ""  # --device auto ended on the CPU: why the GPU provider could not be used
    candidates: Candidates | None = None
    variant: str = "model fp32"  # the graphs that run, for people: variant_label()
    # Where outputs are bound with ONNX Runtime's I/O binding ("cuda" on a GPU: inputs copied to the device once,
    # outputs allocated there by ORT and copied back once); None: plain run(), ORT's own copies.
    bind: str | None = None
    wide: WidePart | None = None  # the bundle's wide part (wide.py), blended into the vocabulary's scores

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        device: str = "auto",
        variant: str = "default",
        threads: int | None = None,
        batch_size: int | None = None,
    ) -> Runner:
        """Both sessions, opened at once in two threads (ONNX Runtime releases the GIL while it loads and
        optimises a graph). `variant`: see choose_graphs; `batch_size`: TensorRT's largest profile."""
        has_cuda = PROVIDERS["cuda"][0] in ort.get_available_providers()
        planned = "cpu" if device == "cpu" or (device == "auto" and not has_cuda) else device
        planned = "cuda" if planned == "auto" else planned
        model_role, extractor_role = choose_graphs(bundle, variant, planned)
        model_path, note = _model_graph(bundle, model_role, explicit=variant == "fp16")
        if model_path is None:  # fp16 wanted by default but not to be had: fp32, and the label says why
            model_role, model_path = "model", bundle.graph("model")
        paths = [model_path] + ([bundle.graph(extractor_role)] if extractor_role else [])
        shapes = _profiles(bundle, gpu.batch_size(batch_size, True))
        with ThreadPoolExecutor(max_workers=len(paths), thread_name_prefix="session") as pool:
            opened = [pool.submit(_open, path, device, threads, shapes) for path in paths]
            model, provider, fallback = opened[0].result()
            extractor = opened[1].result() if extractor_role else None
        if provider == CPU and model_role == "fp16" and variant != "fp16":  # auto ended on the CPU after all
            model_role = "model"
            model = _open(bundle.graph("model"), "cpu", threads)
        if extractor is not None and extractor[1] != provider:  # auto ended on two providers: keep to the model's
            extractor = _open(paths[1], device if provider != CPU else "cpu", threads, shapes)
        check_graph_shapes(
            bundle,
            _shapes(model.get_inputs()),
            _shapes(model.get_outputs()),
            (_shapes(extractor[0].get_inputs()), _shapes(extractor[0].get_outputs())) if extractor else None,
        )
        label = variant_label(model_role, extractor_role) + (f" ({note})" if note else "")
        bind = None if provider == CPU else "cuda"
        wide = bundle.wide_part()
        if wide is not None:
            label += f", wide part w={wide.weight:.1f}"
        return cls(extractor[0] if extractor else None, model, provider, fallback, variant=label, bind=bind, wide=wide)

    def _run(self, sess: ort.InferenceSession, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.bind is None:
            return sess.run(outputs, feeds)
        binding = sess.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in outputs:
            binding.bind_output(name, self.bind)
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def features(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region features and boxes of a batch of images. On the CPU the extractor sees at most
        EXTRACT_PIXELS of input at once: ONNX Runtime's CPU arena keeps the largest batch's activations for the
        session's life, and the run's memory would follow --batch-size, not a budget."""
        assert self.extractor is not None, "a precomputed-feature bundle takes region features, not pixels"
        names = [o.name for o in self.extractor.get_outputs()]
        pixels = pixels.astype(np.float32, copy=False)
        step = max(1, EXTRACT_PIXELS // (pixels.shape[-2] * pixels.shape[-1]))
        if self.bind or len(pixels) <= step:
            feats, boxes = self._run(self.extractor, names, {"pixel_values": pixels})
            return feats, boxes
        parts = [
            self._run(self.extractor, names, {"pixel_values": pixels[i : i + step]})
            for i in range(0, len(pixels), step)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def probabilities(self, text: dict[str, np.ndarray], feats: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        inputs = dict(
            text, visual_feats=feats.astype(np.float32, copy=False), visual_pos=boxes.astype(np.float32, copy=False)
        )
        names = {i.name for i in self.model.get_inputs()}
        feeds = {k: v for k, v in inputs.items() if k in names}
        if self.candidates is None:
            return self._run(self.model, ["probs"], feeds)[0]
        probs, projected = self._run(self.model, ["probs", "projected"], feeds)
        extra = self.candidates.probabilities(projected, text["input_ids"]).astype(probs.dtype)
        return np.concatenate([probs, extra], axis=1)

    def blend(self, probs: np.ndarray, captions: list[str]) -> np.ndarray:
        """`probabilities` of posts with these cleaned captions, blended with the wide part where the bundle has one."""
        return probs if self.wide is None else self.wide.blend(probs, captions)

    def labels(self, vocab: list[str]) -> list[str]:
        """The hashtag of each column `probabilities` returns."""
        return vocab + (self.wide.extra if self.wide else []) + (self.candidates.tags if self.candidates else [])

    def add_candidates(self, bundle: Bundle, tags: list[str], device: str = "cpu") -> list[str]:
        """Score `tags` beside the vocabulary from now on: each new one embedded once, here, with the bundle's
        names graph. Returns those already in the vocabulary (scored as before). BundleError for a bundle whose
        head cannot rank new hashtags."""
        head = bundle.info.head
        if head.kind != "names":
            raise BundleError(
                f"{bundle.path}: this model scores its own {len(bundle.vocab)} hashtags only (a '{head.kind}' "
                "head), so it cannot rank --candidates; leave --candidates out, or train a model that can: "
                "hashtagger train DATA --preset cpu --head names --name-dropout 0.8 (chosen on validation), "
                "then hashtagger export RUN"
            )
        if "names" not in bundle.info.graphs:
            raise BundleError(
                f"{bundle.path}: the bundle has no name-embedding graph (names.onnx; exported by an older "
                "hashtagger); re-export the checkpoint to rank --candidates"
            )
        known = set(bundle.vocab)
        new = [t for t in tags if t not in known]
        embeddings = np.zeros((0, 0), np.float32)
        pieces = name_pieces(bundle.tokenizer, new)
        if new:
            sess, _ = session(bundle.graph("names"), device)
            text = encode(bundle.tokenizer, [tag_words(t) for t in new], head.name_tokens)
            names = {i.name for i in sess.get_inputs()}
            embeddings = sess.run(["embedding"], {k: v for k, v in text.items() if k in names})[0]
        self.candidates = Candidates(
            new, embeddings, pieces, float(head.scale), float(head.unseen_bias), float(head.match), head.new_match
        )
        return [t for t in tags if t in known]
