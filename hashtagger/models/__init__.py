"""The PyTorch models (with training/ and export/, the only floors that import torch): LXMERT4Hashtag
(lxmert) and its jointly trained wide part (wide), the architecture registry behind `--arch` (registry), the
paper's comparison systems (baselines/), the grid region extractor (grid), timm image backbones (backbones), where
pretrained weights come from (hub), training checkpoints (checkpoint), and the torchvision shim (torchvision_fix)."""

from hashtagger.models import torchvision_fix

torchvision_fix.install()  # before anything here imports transformers or timm, which import torchvision
