"""The architectures `hashtagger train --arch` builds: LXMERT4Hashtag (model.py, the default) and the
comparison systems of the method's paper (arch_*.py), behind one interface, so that data preparation, the
split, the region features and their cache, the head-bias initialisation, checkpoints, resume, export,
tagging and evaluation are shared:

    model(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos) -> logits [batch, hashtags]

whose sigmoid is each hashtag's score. A model may define `loss(inputs, labels)` (AMNN's decoder trains on
sequences) and `init_head_bias(frequency)`; otherwise BCE and model.init_head_bias apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoModel, LxmertConfig

from hashtagger.errors import DataError
from hashtagger.io.structs import from_dict
from hashtagger.models.baselines.amnn import Amnn
from hashtagger.models.baselines.coa import CoAttention
from hashtagger.models.baselines.encoders import ArchConfig
from hashtagger.models.baselines.lstmcnn import LstmCnn
from hashtagger.models.baselines.tablstm import TabLstm
from hashtagger.models.baselines.tweetembd import TweetEmbedding
from hashtagger.models.lxmert import HashtagModel, ModelSpec, build_model
from hashtagger.models.lxmert import init_head_bias as init_bias_log_odds


@dataclass(frozen=True)
class Arch:
    model: type[nn.Module] | None  # None: LXMERT4Hashtag, built by model.build_model
    summary: str
    multimodal: bool = True


ARCHS: dict[str, Arch] = {
    "lxmert": Arch(None, "LXMERT4Hashtag: LXMERT's pooled cross-modal output -> multi-label head"),
    "tab-lstm": Arch(TabLstm, "TAB_LSTM, text only: LSTM states attended with a topic vector", multimodal=False),
    "lstm-cnn": Arch(LstmCnn, "Con(LSTM_CNN): LSTM text vector ++ projected CNN image vector"),
    "coa": Arch(CoAttention, "CoA: co-attention between LSTM word states and image regions"),
    "amnn": Arch(Amnn, "AMNN: image / text attention encoders + GRU decoder emitting hashtags"),
    "tweetembd": Arch(TweetEmbedding, "TweetEmbd_Net: text + image + hashtag embedding in one space"),
}

# Sizes of the comparison models by --base-model: tiny for tests, else the originals' order (LSTMs of 256).
SIZES = {"tiny": dict(embed=32, hidden=32, topics=4, steps=3)}
DEFAULT_SIZE = dict(embed=256, hidden=256, topics=20, steps=6)  # steps: up to 5 hashtags + the end token


def check_arch(name: str) -> Arch:
    if name not in ARCHS:
        known = ", ".join(f"{n} ({a.summary})" for n, a in ARCHS.items())
        raise DataError(f"unknown --arch '{name}'; known: {known}")
    return ARCHS[name]


def build(spec: ModelSpec, text_init: str | None, train_texts: list[str], tokenizer: Tokenizer, seed: int = 0):
    """A fresh model of spec.arch. With `text_init`, a comparison model's word embeddings start from that
    checkpoint's (as LXMERT's language side does); TAB_LSTM fits its topic model on `train_texts`."""
    arch = check_arch(spec.arch)
    if arch.model is None:
        return build_model(spec, text_init)
    if spec.head != "linear":
        raise DataError(f"--head {spec.head} is LXMERT4Hashtag's; --arch {spec.arch} has its own output layer")
    sizes = SIZES.get(spec.base_model, DEFAULT_SIZE)
    embeddings = AutoModel.from_pretrained(text_init).get_input_embeddings().weight if text_init else None
    config = ArchConfig(
        arch=spec.arch,
        vocab_size=spec.vocab_size,
        num_labels=spec.num_labels,
        visual_feat_dim=spec.visual_feat_dim,
        embed=embeddings.shape[1] if embeddings is not None else sizes["embed"],
        hidden=sizes["hidden"],
        dropout=spec.dropout,
        topics=sizes["topics"] if arch.model is TabLstm else 0,
        steps=sizes["steps"] if arch.model is Amnn else 0,
    )
    torch.manual_seed(seed)
    model = arch.model(config)
    pretrained = set()
    if embeddings is not None:
        if embeddings.shape[0] != spec.vocab_size:
            raise DataError(f"{text_init}: its {embeddings.shape[0]} word embeddings do not fit the tokenizer")
        with torch.no_grad():
            model.embed.weight.copy_(embeddings)
        pretrained.add("embed.weight")
    if isinstance(model, TabLstm):
        model.fit_topics([e.ids for e in tokenizer.encode_batch(train_texts)], seed)
    model._new_parameters = [n for n, _ in model.named_parameters() if n not in pretrained]
    return model


def config_entry(model: nn.Module) -> dict:
    """What a checkpoint stores to rebuild the model's shape."""
    if isinstance(model, HashtagModel):
        return {"lxmert_config": model.config.to_dict()}
    return {"arch_config": model.config.to_dict()}


def rebuild(spec: ModelSpec, info: dict) -> nn.Module:
    """An untrained model shaped as a checkpoint's `info` (hashtagger.json) says; load its weights next."""
    arch = check_arch(spec.arch)
    if arch.model is None:
        return HashtagModel(
            LxmertConfig.from_dict(info["lxmert_config"]),
            spec.num_labels,
            spec.dropout,
            head=spec.head,
            pooling=spec.pooling,
        )
    return arch.model(from_dict(ArchConfig, info["arch_config"]))


def describe(model: nn.Module) -> dict:
    """The model's shape for bundle.json."""
    if isinstance(model, HashtagModel):
        c = model.config
        return {
            "arch": "lxmert",
            "hidden_size": c.hidden_size,
            "layers": {"language": c.l_layers, "cross": c.x_layers, "object": c.r_layers},
        }
    return model.config.to_dict() | {"hidden_size": model.config.hidden}


def num_labels(model: nn.Module) -> int:
    return model.config.num_labels if isinstance(model.config, ArchConfig) else model.head.out_features


def init_head_bias(model: nn.Module, label_frequency: torch.Tensor) -> None:
    """Start the head at the label frequencies (model.init_head_bias), or as the model itself says."""
    if hasattr(model, "init_head_bias"):
        model.init_head_bias(label_frequency)
    else:
        init_bias_log_odds(model, label_frequency)


def training_loss(model: nn.Module, inputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The model's own loss where it has one, else BCE of its logits against the multi-hot labels."""
    if hasattr(model, "loss"):
        return model.loss(inputs, labels)
    return nn.functional.binary_cross_entropy_with_logits(model(*inputs).float(), labels)
