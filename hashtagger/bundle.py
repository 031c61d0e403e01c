"""The exported bundle: what `tag` needs, and nothing that imports torch.

exported/
    bundle.json      format version, files, preprocessing, text options, thresholds, metrics, and
                     written_by: the hashtagger, onnxruntime and torch versions (older bundles lack it)
    manifest.json    SHA-256 of every other file (README.md, the model card, excepted)
    extractor.onnx   pixel_values [B, 3, S, S] -> visual_feats [B, 36, D], visual_pos [B, 36, 4]
    model.onnx       input_ids, attention_mask, token_type_ids [B, T]; visual_feats, visual_pos -> probs [B, L]
    tokenizer.json   tokenizers format
    hashtags.json    the vocabulary (index order) and each hashtag's training count
    split.json       image digests of the training run's train / val / test posts (for `evaluate`)
    background.npz   region features of 16 validation images: the absent image of `explain`
    names.onnx       name-head models: hashtag words -> unit vector (model.onnx then also outputs `projected`)
    model.int8.onnx / model.fp16.onnx   optional variants
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import BundleError, OutputError
from .files import atomic_write, sha256_file
from .structs import from_dict
from .text import CleaningOptions
from .vision import ImageSettings

FORMAT_VERSION = 1
UNCHECKED = {"manifest.json", "README.md"}


@dataclass
class Bundle:
    path: Path
    info: dict
    vocab: list[str]
    tokenizer: Tokenizer

    @property
    def image(self) -> ImageSettings:
        return from_dict(ImageSettings, self.info["image"])

    @property
    def cleaning(self) -> CleaningOptions:
        return from_dict(CleaningOptions, self.info["text"]["cleaning"])

    @property
    def max_length(self) -> int:
        return self.info["text"]["max_length"]

    @property
    def threshold(self) -> float:
        return self.info["threshold"]

    def graph(self, name: str) -> Path:
        """Path of a graph by role: "extractor", "model", or a variant ("int8", "fp16")."""
        files = self.info["graphs"]
        if name not in files:
            have = ", ".join(sorted(files))
            raise BundleError(
                f"{self.path}: the bundle has no '{name}' graph (it has: {have}); re-export with that option"
            )
        return self.path / files[name]


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in UNCHECKED)
    manifest = {p.name: sha256_file(p) for p in files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open and check a bundle: known format version, every listed file present and unchanged."""
    path = Path(path)
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
    for name in [*list(info["graphs"].values()), "tokenizer.json", "hashtags.json"]:
        if name not in manifest:
            raise BundleError(f"{path / name}: needed by bundle.json but not in the manifest")
    hashtags = _read_json(path / "hashtags.json")
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise BundleError(f"{path / 'tokenizer.json'}: not a valid tokenizer ({e})") from None
    return Bundle(path, info, hashtags["vocab"], tokenizer)


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
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hashtagger" / "verified"
    return root / (hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16] + ".json")


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise BundleError(f"{file}: file is missing from the bundle") from None
    except (OSError, ValueError) as e:
        raise BundleError(f"{file}: unreadable ({e})") from None
