"""Checkpoint -> ONNX bundle (torch): the graphs traced (graphs), optimised, quantised and compacted (optimise),
checked against PyTorch (parity), and the bundle written atomically in named steps (build)."""

import hashtagger.models  # noqa: F401  (installs the torchvision shim before this folder loads the models)
