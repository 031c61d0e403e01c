"""Let torchvision import beside a torch whose build its C++ operators were not made for. No torch until then.

The package index's torchvision for torch 2.13 is a CUDA build; beside the CPU build of torch its C++ library
(detection's nms and roi_align: never used here) cannot load, and torchvision 0.28 then fails at import, where
it registers fake kernels for `nms` and `qnms` without checking they exist. transformers imports torchvision
whenever it is installed (timm, our [train] extra, brings it), so that failure would stop every model. A hook
declares the two operators just before torchvision is first imported, when its library cannot load; a
torchvision whose library loads is left alone. Installed by hashtagger.models (the torch floor), never by
importing hashtagger itself.

When to delete this module: once `pip install -c constraints.txt -e '.[train]'` brings a torchvision whose C++
library loads beside the pinned torch (`python -c "import torchvision"` works in a fresh venv without it), or
once timm no longer depends on torchvision.
"""

from __future__ import annotations

import sys
from typing import Any

_declared: list[Any] = []  # the torch.library.Library that holds the declarations: it must stay alive


class _BeforeTorchvision:  # a meta path finder (importlib.abc.MetaPathFinder: not imported, to keep `tag` fast)
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            declare_missing_operators()
        return None  # the usual finders import it


def install() -> None:
    """The hook, where torchvision is installed and not yet imported (the CLI reads the torch-free `--arch`
    registry under models/: a core install, without torchvision, gets no hook)."""
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        return
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        sys.meta_path.insert(0, _BeforeTorchvision())


def declare_missing_operators() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    libraries = [p for p in Path(next(iter(spec.submodule_search_locations))).glob("_C.*") if p.suffix != ".py"]
    try:
        for library in libraries:
            torch.ops.load_library(str(library))
        return
    except (OSError, RuntimeError):
        pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _declared.append(library)
