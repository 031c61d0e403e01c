"""Which bundle a command uses: `--model` (the API's `model=`), else $HASHTAGGER_MODEL, else ./exported when it
holds a bundle, else the default model installed with the package (the `hashtagger_default_model` package: the
repository's exported/ folder, shipped inside the wheel; pyproject.toml and setup.py map it)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from hashtagger.bundle.format import is_bundle
from hashtagger.errors import BundleError

ENV = "HASHTAGGER_MODEL"
DEFAULT_PACKAGE = "hashtagger_default_model"
LOCAL = Path("exported")
# Every command's --model help: where the model comes from when the option is left out.
MODEL_HELP = (
    f"Exported model bundle (default: ${ENV}, else ./exported if it holds a bundle, else the installed default)."
)
# evaluate's: the bundle runs with ONNX Runtime, and --checkpoint replaces it.
EVALUATE_MODEL_HELP = MODEL_HELP.replace("(default:", "run with ONNX Runtime (default, unless --checkpoint is given:")
NO_MODEL = (
    f"no model found (no --model, no ${ENV}, no ./exported bundle, no installed default): reinstall hashtagger from "
    "its repository or wheel, which ship the default model, pass --model BUNDLE, or train and export your own "
    "(hashtagger train DATA --preset cpu, then hashtagger export RUN)"
)


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    origin: str  # "--model", "$HASHTAGGER_MODEL", "./exported" or "installed default"

    @property
    def is_default(self) -> bool:
        return self.origin == "installed default"


def installed_default() -> Path | None:
    """The bundle installed with the package, or None (a source checkout without an install, a trimmed wheel)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if is_bundle(Path(folder)):
            return Path(folder)
    return None


def find_model(model: str | Path | None = None) -> ModelChoice:
    """The bundle to open, and where it was found; BundleError (saying how to get one) when there is none.
    A given `model` or $HASHTAGGER_MODEL is taken as it is: read_bundle says what is wrong with it."""
    if model is not None and str(model) != "":
        return ModelChoice(Path(model), "--model")
    if os.environ.get(ENV):
        return ModelChoice(Path(os.environ[ENV]), f"${ENV}")
    if is_bundle(LOCAL):
        return ModelChoice(LOCAL, "./exported")
    default = installed_default()
    if default is None:
        raise BundleError(NO_MODEL)
    return ModelChoice(default, "installed default")
