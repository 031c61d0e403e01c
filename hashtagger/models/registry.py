"""The architectures `hashtagger train --arch` builds: LXMERT4Hashtag (lxmert.py, the default) and the
comparison systems of the method's paper (baselines/), behind one interface, so that data preparation, the
split, the region features and their cache, the head-bias initialisation, checkpoints, resume, export,
tagging and evaluation are shared:

    model(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos) -> logits [batch, hashtags]

whose sigmoid is each hashtag's score. Each architecture is a record here (its name, help line, sizes and the
class that builds it) and its class carries the hooks: `create`, `rebuild`, `config_entry`, `describe`,
`num_labels`, `init_head_bias`, `loss` (TextImageModel has them for every comparison system). This module
imports no torch, so that the CLI's `--arch` help is made from the records; a class is imported when a model
is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hashtagger.errors import DataError

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from torch import nn


class Spec(Protocol):  # lxmert.ModelSpec (not imported: lxmert imports this module)
    arch: str


@dataclass(frozen=True)
class Arch:
    name: str  # --arch's value
    title: str  # the system's name in the paper
    summary: str  # one line: the title, what it does
    model: str  # "module:Class" of its nn.Module, imported only when a model is built
    multimodal: bool = True  # reads the image (tests hold a multimodal system to more than a text-only one)
    sizes: tuple[str, ...] = ()  # ArchConfig sizes beyond embed / hidden that it uses, from SIZES


ARCHS: dict[str, Arch] = {}
DEFAULT = "lxmert"
HEADS = ("linear", "names")  # LXMERT4Hashtag's heads (--head)
POOLINGS = ("cls", "mean")  # what its head reads (--pooling)

# Sizes of the comparison models by --base-model: tiny for tests, else the originals' order (LSTMs of 256).
SIZES = {"tiny": dict(embed=32, hidden=32, topics=4, steps=3)}
DEFAULT_SIZE = dict(embed=256, hidden=256, topics=20, steps=6)  # steps: up to 5 hashtags + the end token


def register(arch: Arch) -> Arch:
    """Add an architecture: --arch, its help, train, export, tag and evaluate all read ARCHS."""
    ARCHS[arch.name] = arch
    return arch


BASELINES = "hashtagger.models.baselines"
register(
    Arch(
        "lxmert",
        "LXMERT4Hashtag",
        "LXMERT4Hashtag: LXMERT's pooled cross-modal output -> multi-label head",
        "hashtagger.models.lxmert:HashtagModel",
    )
)
register(
    Arch(
        "tab-lstm",
        "TAB_LSTM",
        "TAB_LSTM, text only: LSTM states attended with a topic vector",
        f"{BASELINES}.tablstm:TabLstm",
        multimodal=False,
        sizes=("topics",),
    )
)
register(
    Arch(
        "lstm-cnn",
        "Con(LSTM_CNN)",
        "Con(LSTM_CNN): LSTM text vector ++ projected CNN image vector",
        f"{BASELINES}.lstmcnn:LstmCnn",
    )
)
register(
    Arch("coa", "CoA", "CoA: co-attention between LSTM word states and image regions", f"{BASELINES}.coa:CoAttention")
)
register(
    Arch(
        "amnn",
        "AMNN",
        "AMNN: image / text attention encoders + GRU decoder emitting hashtags",
        f"{BASELINES}.amnn:Amnn",
        sizes=("steps",),
    )
)
register(
    Arch(
        "tweetembd",
        "TweetEmbd_Net",
        "TweetEmbd_Net: text + image + hashtag embedding in one space",
        f"{BASELINES}.tweetembd:TweetEmbedding",
    )
)


def arch_help() -> str:
    """`train --arch`'s help, from the records."""
    others = ", ".join(name for name in ARCHS if name != DEFAULT)
    return f"{DEFAULT} ({ARCHS[DEFAULT].title}), or a comparison system of the paper: {others}."


def check_arch(name: str) -> Arch:
    if name not in ARCHS:
        known = ", ".join(f"{n} ({a.summary})" for n, a in ARCHS.items())
        raise DataError(f"unknown --arch '{name}'; known: {known}")
    return ARCHS[name]


def model_class(arch: Arch) -> Any:
    module, _, name = arch.model.partition(":")
    return getattr(importlib.import_module(module), name)


def build(spec: Spec, text_init: str | None, train_texts: list[str], tokenizer: Tokenizer, seed: int = 0):
    """A fresh model of spec.arch. With `text_init`, a comparison model's word embeddings start from that
    checkpoint's (as LXMERT's language side does); TAB_LSTM fits its topic model on `train_texts`."""
    arch = check_arch(spec.arch)
    return model_class(arch).create(spec, arch, text_init, train_texts, tokenizer, seed)


def rebuild(spec: Spec, info: dict) -> nn.Module:
    """An untrained model shaped as a checkpoint's `info` (hashtagger.json) says; load its weights next."""
    return model_class(check_arch(spec.arch)).rebuild(spec, info)


def training_loss(model: nn.Module, inputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The model's own loss: BCE of its logits against the multi-hot labels, unless it trains otherwise (AMNN)."""
    return model.loss(inputs, labels)
