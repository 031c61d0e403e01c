"""Optional extras: the modules each one brings, and the one-line error of a command that needs a missing one.

The core install is what `tag` needs; `[train]` brings the PyTorch side, `[gpu]` ONNX Runtime's CUDA build,
`[parquet]` pyarrow and `[ray]` Ray Data (pyproject.toml). A command checks its extra with `require` before
importing anything heavy, so a user without it reads which extra to install instead of a traceback.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from hashtagger.errors import MissingExtraError

DISTRIBUTION = "lxmert-hashtagger"  # pyproject.toml's name: "hashtagger" on the index is another project
# The top-level modules that each extra installs (by import name), as listed in pyproject.toml.
MODULES = {
    "train": frozenset({"torch", "transformers", "safetensors", "onnx", "matplotlib", "sklearn", "timm"}),
    "explain": frozenset({"matplotlib"}),
    "parquet": frozenset({"pyarrow"}),
    "ray": frozenset({"ray", "pyarrow"}),
}


def install_command(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


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
