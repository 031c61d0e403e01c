"""Optional extras: the modules each one brings, and the one-line error of a command that needs a missing one.

The core install is what `tag` needs; `[train]` brings the PyTorch side, `[gpu]` ONNX Runtime's CUDA build,
`[parquet]` pyarrow and `[ray]` Ray Data (pyproject.toml). A command checks its extra with `require` before
importing anything heavy, so a user without it reads which extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hashtagger.errors import MissingExtraError

DISTRIBUTION = "lxmert-hashtagger"  # pyproject.toml's name: "hashtagger" on the index is another project
# constraints.txt's pins (a test keeps them equal): an open torch range pulls a multi-GB CUDA build from the index.
PINS = {"torch": "torch==2.13.0", "torchvision": "torchvision==0.28.0"}
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The top-level modules that each extra installs (by import name), as listed in pyproject.toml.
MODULES = {
    "train": frozenset({"torch", "transformers", "safetensors", "onnx", "matplotlib", "sklearn", "timm"}),
    "explain": frozenset({"matplotlib"}),
    "parquet": frozenset({"pyarrow"}),
    "ray": frozenset({"ray", "pyarrow"}),
}


def install_command(extra: str) -> str:
    """A pip command that installs `extra` for this hashtagger (the distribution is not on the package index).
    Installed from a folder (the repository, editable or not): that folder with the extra, under its
    constraints.txt, which pins torch. Else (a wheel): the extra's own requirements, torch pinned, and where the
    CPU-only torch comes from."""
    source = install_source()
    if source is not None:
        folder, editable = source
        constraints = folder / "constraints.txt"
        pinned = f"-c {shlex.quote(str(constraints))} " if constraints.is_file() else ""
        return f"pip install {pinned}{'-e ' if editable else ''}{shlex.quote(f'{folder}[{extra}]')}"
    requirements = extra_requirements(extra)
    if not requirements:  # no metadata (a source tree on sys.path): the extra by name
        return f"pip install '{DISTRIBUTION}[{extra}]'"
    command = "pip install " + " ".join(shlex.quote(r) for r in requirements)
    if any(r.startswith("torch=") for r in requirements):
        command += f" (add --extra-index-url {CPU_TORCH_INDEX} for the CPU-only torch)"
    return command


def install_source() -> tuple[Path, bool] | None:
    """The local folder this distribution was installed from, and whether editably (pip's direct_url.json);
    None for a wheel or index install, or no install at all."""
    # Every record of the name, not just the first: setuptools leaves an .egg-info (no direct_url.json) in the
    # source folder of an editable install, which comes first on sys.path when Python runs from that folder.
    texts = [d.read_text("direct_url.json") for d in metadata.distributions(name=DISTRIBUTION)]
    try:
        record = json.loads(next((t for t in texts if t), "null"))
    except ValueError:
        return None
    if not isinstance(record, dict) or "dir_info" not in record or not record.get("url", "").startswith("file:"):
        return None
    return Path(unquote(urlsplit(record["url"]).path)), bool(record["dir_info"].get("editable", False))


def extra_requirements(extra: str) -> list[str]:
    """The requirements `extra` adds, from this distribution's metadata, torch and torchvision pinned."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    found = [r.split(";")[0].strip() for r in requires if ";" in r and marker.search(r.split(";", 1)[1])]
    return [PINS.get(re.split(r"[\s<>=!~\[]", r, maxsplit=1)[0].lower(), r) for r in found]


def require(extra: str, purpose: str) -> None:
    """Raise MissingExtraError, "<purpose> needs the [<extra>] extra ...", unless every module of `extra` is there.

    Checked before a command imports anything heavy, without importing it (a spec lookup is enough).
    """
    missing = sorted(m for m in MODULES[extra] if importlib.util.find_spec(m) is None)
    if missing:
        raise MissingExtraError(
            f"{purpose} needs the [{extra}] extra ({', '.join(missing)} not installed): {install_command(extra)}"
        )


def gpu_hint() -> str:
    """How to get a working CUDA provider, for the error of `--device cuda` on an onnxruntime without it."""
    try:
        metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return f"install the [gpu] extra: {install_command('gpu')}, then see README, 'GPU'"
    # Both builds install the same `onnxruntime` module; the CPU one's files were written last.
    return (
        "onnxruntime-gpu is installed but the CPU onnxruntime's files shadow it: "
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]'"
    )
