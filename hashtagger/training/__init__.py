"""Fine-tuning (torch): `train` itself (train), its options and range checks (config), `--preset` recipes
(presets, no torch), what a run needs before its first step: data, model, optimiser (setup), the epoch loop with
validation and best/last checkpoints (trainer), and the data-parallel plumbing for torchrun (distributed)."""

import hashtagger.models  # noqa: F401  (installs the torchvision shim before setup.py imports transformers)
