"""Checkpoint -> ONNX bundle (torch): graphs traced, parity-checked, optimised and written atomically (build)."""

import hashtagger.models  # noqa: F401  (installs the torchvision shim before build.py imports transformers)
