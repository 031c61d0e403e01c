"""Fine-tuning (torch): `train` itself (train) and the data-parallel plumbing for torchrun (distributed)."""

import hashtagger.models  # noqa: F401  (installs the torchvision shim before train.py imports transformers)
