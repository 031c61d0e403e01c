"""The exported bundle: what `tag` needs, and nothing that imports torch.

exported/
    bundle.json      format version, files, preprocessing, text options, thresholds (global; per hashtag in
                     newer bundles: thresholds.py), metrics, and written_by: the hashtagger, onnxruntime and
                     torch versions (older bundles lack it)
    manifest.json    SHA-256 of every other file (README.md, the model card, excepted)
    extractor.onnx   pixel_values [B, 3, S, S] -> visual_feats [B, 36, D], visual_pos [B, 36, 4]
    model.onnx       input_ids, attention_mask, token_type_ids [B, T]; visual_feats, visual_pos -> probs [B, L]
    tokenizer.json   tokenizers format
    hashtags.json    the vocabulary (index order) and each hashtag's training count
    split.json       image digests of the training run's train / val / test posts (for `evaluate`)
    background.npz   region features of 16 validation images: the absent image of `explain`
    wide.npz         optional wide part (bundle/wide.py): TF-IDF n-grams, their idf and one logistic regression
                     per hashtag, blended with the model's probabilities by bundle.json's "wide.weight"
    token_wide.npz   a `--joint-wide` model's wide part tables (token_wide.py), for `explain`; model.onnx holds
                     its own copy
    names.onnx       name-head models: hashtag words -> unit vector (model.onnx then also outputs `projected`)
    model.int8.onnx / model.fp16.onnx   optional variants (graphs "int8", "fp16")
    extractor.int8.onnx                 optional static-int8 extractor (graph "extractor_int8"); export.variants
                                        holds each variant's agreement with fp32 on validation (runtime.choose_graphs)
    candidates/      optional companion of a linear-head bundle: a whole names-head bundle (its own manifest; the
                     parent's lists none of its files), used only to rank `tag --candidates` (for_candidates)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from hashtagger.bundle.thresholds import cutoff_vector
from hashtagger.bundle.token_wide import TokenWideTables, read_token_wide
from hashtagger.bundle.wide import FILE as WIDE_FILE
from hashtagger.bundle.wide import WidePart, read_wide
from hashtagger.data.images import ImageSettings
from hashtagger.data.prep import PrepOptions
from hashtagger.data.regions import REGIONS
from hashtagger.data.text import CleaningOptions
from hashtagger.errors import BundleError, OutputError
from hashtagger.io.claims import Inputs, check_folder
from hashtagger.io.files import atomic_write, sha256_file, user_cache
from hashtagger.io.structs import from_dict

FORMAT_VERSION = 1
UNCHECKED = {"manifest.json", "README.md"}
COMPANION = "candidates"  # a linear-head bundle's names-head companion folder (for_candidates)


@dataclass(frozen=True)
class TextInfo:
    max_length: int  # tokens per caption, [CLS] and [SEP] included
    cleaning: CleaningOptions


@dataclass(frozen=True)
class ExtractorInfo:
    kind: str = "grid"  # grid | precomputed (no extractor graph: the posts bring region features)
    backbone: str | None = None
    feature_dim: int = 0  # 0: not recorded
    regions: int = REGIONS  # region features per image
    weights: str | None = None  # where a timm backbone's pretrained weights came from


@dataclass(frozen=True)
class HeadInfo:
    kind: str = "linear"  # linear | names (a name head can rank hashtags outside the vocabulary)
    scale: float = 1.0  # a name head's constants, for `tag --candidates`
    unseen_bias: float = 0.0
    match: float = 0.0  # the caption-match weight (0 in bundles from before it)
    # Added to `match` for hashtags never seen in training (export --new-match, chosen on validation with
    # evaluate --unseen --new-match); 0: they are matched as the seen ones are.
    new_match: float = 0.0
    name_tokens: int = 32


@dataclass(frozen=True)
class WideInfo:
    """bundle.json's "wide" section, as tagging reads it (the rest records how it was fitted)."""

    file: str = WIDE_FILE
    weight: float = 0.0  # w in (1 - w) * p_deep + w * p_wide


@dataclass(frozen=True)
class TrainingInfo:
    """Where the model's training posts are and how they were prepared (for `evaluate --model`)."""

    data: str | None = None
    columns: dict | None = None
    prep: PrepOptions | None = None


@dataclass(frozen=True)
class ScopeInfo:
    """What the model knows (bundle/scope.py); a bundle exported before it has none of it."""

    description: str | None = None  # what the vocabulary was learnt from, e.g. "2012-2015 news tweets, ..."
    prior: list[str] = field(default_factory=list)  # the 5 most frequent training hashtags, best first
    top2_same_as_prior: float | None = None  # validation posts whose top 2 was the prior's (a collapse: >= 0.9)


@dataclass(frozen=True)
class BundleInfo:
    """bundle.json as this package reads it, read once by read_bundle. The defaults are what a bundle exported
    before an entry existed means: this class is the one place that says so."""

    graphs: dict[str, str]  # role -> file: "model", "extractor", "names", variants ("int8", "fp16", "extractor_int8")
    image: ImageSettings
    text: TextInfo
    threshold: float
    hashtag_thresholds: dict[str, float] | None = None  # tuned per hashtag at export; None: from before them
    extractor: ExtractorInfo = field(default_factory=ExtractorInfo)
    head: HeadInfo = field(default_factory=HeadInfo)
    arch: str = "lxmert"
    training: TrainingInfo = field(default_factory=TrainingInfo)
    background: str | None = None  # region features of reference images, for `explain`
    variants: dict[str, dict] = field(default_factory=dict)  # each variant's agreement with fp32 (export.variants)
    scope: ScopeInfo = field(default_factory=ScopeInfo)
    wide: WideInfo | None = None  # the wide part (wide.py); None: the deep model alone
    token_wide: str | None = None  # the joint wide part's tables (token_wide.py); None: none, or not stored
    raw: dict = field(default_factory=dict)  # bundle.json as written: metrics, the export report, versions

    @classmethod
    def from_json(cls, info: dict) -> BundleInfo:
        per_hashtag, wide = info.get("hashtag_thresholds"), info.get("wide")
        return cls(
            graphs=dict(info["graphs"]),
            image=from_dict(ImageSettings, info["image"]),
            text=from_dict(TextInfo, info["text"]),
            threshold=float(info["threshold"]),
            hashtag_thresholds=dict(per_hashtag["values"]) if per_hashtag is not None else None,
            extractor=from_dict(ExtractorInfo, info.get("extractor", {})),
            head=from_dict(HeadInfo, info.get("head", {})),
            arch=info.get("model", {}).get("arch", "lxmert"),
            training=from_dict(TrainingInfo, info.get("training", {})),
            background=info.get("background"),
            variants=info.get("export", {}).get("variants", {}),
            scope=from_dict(ScopeInfo, info.get("scope", {})),
            wide=None if wide is None else WideInfo(wide.get("file", WIDE_FILE), float(wide["weight"])),
            token_wide=info.get("model", {}).get("joint_wide", {}).get("file"),
            raw=info,
        )


@dataclass
class Bundle:
    path: Path
    info: BundleInfo
    vocab: list[str]
    tokenizer: Tokenizer

    @property
    def image(self) -> ImageSettings:
        return self.info.image

    @property
    def cleaning(self) -> CleaningOptions:
        return self.info.text.cleaning

    @property
    def max_length(self) -> int:
        return self.info.text.max_length

    @property
    def threshold(self) -> float:
        return self.info.threshold

    @property
    def hashtag_thresholds(self) -> dict[str, float]:
        """The per-hashtag cut-offs tuned at export ({} in bundles exported before they existed)."""
        return self.info.hashtag_thresholds or {}

    def cutoffs(self) -> np.ndarray:
        """`--threshold auto`: each vocabulary hashtag's own cut-off where tuned, the global one elsewhere."""
        return cutoff_vector(self.vocab, self.threshold, self.hashtag_thresholds)

    def wide_part(self) -> WidePart | None:
        """The wide part blended with the model's scores (wide.py); None for a bundle without one."""
        wide = self.info.wide
        return None if wide is None else read_wide(self.path / wide.file, wide.weight, len(self.vocab))

    @cached_property
    def token_wide(self) -> TokenWideTables | None:
        """The joint wide part's tables (token_wide.py), read once, when first explained; None for a bundle
        without them."""
        file = self.info.token_wide
        return None if file is None else read_token_wide(self.path / file, len(self.vocab))

    def graph(self, name: str) -> Path:
        """Path of a graph by role: "extractor", "model", or a variant ("int8", "fp16", "extractor_int8")."""
        files = self.info.graphs
        if name not in files:
            have = ", ".join(sorted(files))
            raise BundleError(
                f"{self.path}: the bundle has no '{name}' graph (it has: {have}); re-export with that option"
            )
        return self.path / files[name]


def is_bundle(folder: Path) -> bool:
    """A folder that `export` wrote (it may be outdated or damaged: it is still ours to replace)."""
    return (folder / "bundle.json").is_file() and (folder / "manifest.json").is_file()


def for_candidates(bundle: Bundle) -> Bundle:
    """The bundle that ranks `--candidates` for `bundle`: itself when its head ranks names (or when it holds no
    companion: Runner.add_candidates then says why it cannot), else its names-head companion (candidates/),
    opened and verified like any bundle."""
    companion = bundle.path / COMPANION
    if bundle.info.head.kind == "names" or not is_bundle(companion):
        return bundle
    return read_bundle(companion)


def check_bundle_target(output: Path, force: bool = False, inputs: Inputs = ()) -> None:
    """A command that writes a bundle (export, fit_wide) replaces a bundle or an empty folder; anything else only
    with `force`; never one of its `inputs` (claims.check_folder)."""
    check_folder(output, force, ours=is_bundle, inputs=inputs, force="--force")


def write_manifest(folder: Path) -> None:
    # Files only: a companion folder (candidates/) has its own manifest, and the parent's lists nothing of it.
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in UNCHECKED)
    manifest = {p.name: sha256_file(p) for p in files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open and check a bundle: known format version, every listed file present and unchanged."""
    path = Path(path)
    if path.is_file():
        raise BundleError(
            f"{path} is a file; --model takes the bundle's folder (the one holding bundle.json), e.g. {path.parent}"
        )
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist (run `hashtagger export` or pass --model)")
    info = _read_json(path / "bundle.json")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path / 'bundle.json'}: bundle format version {version!r} is not supported "
            f"(this hashtagger reads version {FORMAT_VERSION}); re-export the model with this version"
        )
    manifest = _read_json(path / "manifest.json")
    if verify:
        verify_files(path, manifest)
    _check_info(info, path / "bundle.json")
    try:
        typed = BundleInfo.from_json(info)
    except (TypeError, KeyError, ValueError) as e:  # an entry _check_info does not look into (hand-edited)
        raise BundleError(f"{path / 'bundle.json'}: unexpected content ({e})") from None
    wide = [typed.wide.file] if typed.wide is not None else []
    wide += [typed.token_wide] if typed.token_wide is not None else []
    for name in [*list(typed.graphs.values()), "tokenizer.json", "hashtags.json", *wide]:
        if name not in manifest:
            raise BundleError(f"{path / name}: needed by bundle.json but not in the manifest")
    hashtags = _read_json(path / "hashtags.json")
    vocab = hashtags.get("vocab") if isinstance(hashtags, dict) else None
    if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
        raise BundleError(f"{path / 'hashtags.json'}: 'vocab' must be a non-empty list of hashtags")
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise BundleError(f"{path / 'tokenizer.json'}: not a valid tokenizer ({e})") from None
    return Bundle(path, typed, vocab, tokenizer)


def _check_info(info: dict, file: Path) -> None:
    """Every section and value `tag` reads from bundle.json, so that a hand-edited one fails here, in one line."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise BundleError(f"{file}: {what}")

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    for section in ("graphs", "image", "text"):
        need(isinstance(info.get(section), dict), f"section '{section}' is missing or not an object")
    graphs, image, text = info["graphs"], info["image"], info["text"]
    need("model" in graphs and all(isinstance(v, str) for v in graphs.values()), "'graphs' must name a 'model' file")
    need(isinstance(image.get("size"), int) and image["size"] > 0, "'image.size' must be a positive integer")
    for key in ("mean", "std"):
        value = image.get(key)
        need(isinstance(value, list) and len(value) == 3 and all(map(number, value)), f"'image.{key}' needs 3 numbers")
    need(isinstance(image.get("max_pixels"), int) and image["max_pixels"] > 0, "'image.max_pixels' must be positive")
    need(isinstance(text.get("max_length"), int) and text["max_length"] > 1, "'text.max_length' must be an integer > 1")
    known = set(CleaningOptions.__dataclass_fields__)
    cleaning = text.get("cleaning")
    need(
        isinstance(cleaning, dict) and set(cleaning) <= known,
        f"'text.cleaning' may only hold {', '.join(sorted(known))}",
    )
    need(number(info.get("threshold")) and 0 <= info["threshold"] <= 1, "'threshold' must be a number in 0..1")
    wide = info.get("wide", {"weight": 0.0})
    need(
        isinstance(wide, dict) and number(wide.get("weight")) and 0 <= wide["weight"] <= 1,
        "'wide.weight' must be a number in 0..1",
    )
    model = info.get("model", {})
    joint = model.get("joint_wide", {}) if isinstance(model, dict) else None
    need(
        isinstance(joint, dict) and isinstance(joint.get("file", ""), str),
        "'model.joint_wide.file' must be a file name",
    )
    per_hashtag = info.get("hashtag_thresholds", {"values": {}})
    values = per_hashtag.get("values") if isinstance(per_hashtag, dict) else None
    need(
        isinstance(values, dict) and all(number(v) and 0 <= v <= 1 for v in values.values()),
        "'hashtag_thresholds.values' must map hashtags to numbers in 0..1",
    )


def check_graph_shapes(
    bundle: Bundle, model_inputs: dict, model_outputs: dict, extractor: tuple[dict, dict] | None
) -> None:
    """The graphs against the bundle's own files: hashtags scored = vocabulary, image size and region
    features as the extractor makes them. Each argument maps a graph's input / output names to shapes
    (dimension names for dynamic axes, numbers for fixed ones)."""

    def fixed(shape):  # the last axis, when the graph fixes it
        dim = shape[-1] if shape else None
        return dim if isinstance(dim, int) and dim > 0 else None

    scores = fixed(model_outputs.get("probs"))
    if scores is not None and scores != len(bundle.vocab):
        raise BundleError(
            f"{bundle.path / 'hashtags.json'}: {len(bundle.vocab)} hashtags, but the model scores {scores}; "
            "the vocabulary does not belong to this model"
        )
    if extractor is None:
        return
    inputs, outputs = extractor
    side = fixed(inputs.get("pixel_values"))
    if side is not None and side != bundle.image.size:
        raise BundleError(
            f"{bundle.path / 'bundle.json'}: image size {bundle.image.size}, but the extractor takes {side} pixels"
        )
    made, taken = fixed(outputs.get("visual_feats")), fixed(model_inputs.get("visual_feats"))
    if made is not None and taken is not None and made != taken:
        raise BundleError(
            f"{bundle.path}: the extractor makes {made}-wide region features, but the model takes {taken}"
        )


def verify_files(folder: Path, manifest: dict[str, str]) -> None:
    """Every file of the manifest present with its SHA-256. Hashing a base-size bundle's graphs takes seconds,
    so a file that matched is remembered in the user's cache by what any write changes (size, mtime, ctime,
    device, inode) and not hashed again until one of them changes: a changed file is still refused."""
    cache = _verified_cache(folder)
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    seen = {}
    for name, digest in manifest.items():
        file = folder / name
        if not file.is_file():
            raise BundleError(f"{file}: file listed in the manifest is missing")
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino, digest]
        if known.get(name) != stamp and sha256_file(file) != digest:
            raise BundleError(f"{file}: SHA-256 does not match the manifest (file changed or corrupt)")
        seen[name] = stamp
    if seen != known:
        with contextlib.suppress(OutputError):  # a read-only cache only costs the hashing next time
            atomic_write(cache, json.dumps(seen).encode())


def _verified_cache(folder: Path) -> Path:
    return user_cache("verified") / (hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16] + ".json")


def _read_json(file: Path) -> dict:
    """A bundle's JSON file, which holds an object (a list or a number there is a damaged bundle)."""
    try:
        value = json.loads(file.read_text())
    except FileNotFoundError:
        raise BundleError(f"{file}: file is missing from the bundle") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{file}: unreadable ({e})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{file}: holds a JSON {type(value).__name__}, not an object; re-export the model")
    return value
