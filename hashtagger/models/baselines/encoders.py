"""What the comparison architectures (arch_*.py) share: their size config, word embeddings over the run's
tokenizer, LSTMs over right-padded token ids, and attention pooling.

Every state a model reads is independent of how much padding its batch has (padded positions are masked,
and a backward LSTM reads each caption reversed in place), so a post scores the same in any batch, and the
exported ONNX graph matches PyTorch with `tag`'s length-grouped batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoModel

from hashtagger.errors import DataError
from hashtagger.io.structs import from_dict
from hashtagger.models.lxmert import ModelSpec, init_head_bias
from hashtagger.models.registry import DEFAULT_SIZE, SIZES, Arch

NEG = -1e4  # masked attention score: finite, so that fp16 / ONNX softmax never sees inf - inf


@dataclass
class ArchConfig:
    """The sizes of a comparison architecture; stored with the checkpoint to rebuild it."""

    arch: str
    vocab_size: int  # the tokenizer's
    num_labels: int
    visual_feat_dim: int
    embed: int = 256  # word-embedding width (the pretrained embeddings' width with --text-init)
    hidden: int = 256  # LSTM states and joint vectors
    dropout: float = 0.1
    topics: int = 0  # TAB-LSTM: topics of the caption topic model
    steps: int = 0  # AMNN: decoder steps (hashtags + the end token)

    def to_dict(self) -> dict:
        return asdict(self)


class TextImageModel(nn.Module):
    """Base of the comparison models: forward(input_ids, attention_mask, token_type_ids, visual_feats,
    visual_pos) -> logits [batch, num_labels], like model.HashtagModel, so that training, export and tagging
    treat every architecture alike."""

    def __init__(self, config: ArchConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.dropout = nn.Dropout(config.dropout)

    def new_parameters(self) -> list[str]:
        """Names of the parameters that did not come from a pretrained checkpoint (see create)."""
        return getattr(self, "_new_parameters", [n for n, _ in self.named_parameters()])

    # The architecture hooks registry.py calls (HashtagModel has the same ones for LXMERT4Hashtag).
    @classmethod
    def create(
        cls, spec: ModelSpec, arch: Arch, text_init: str | None, texts: list[str], tokenizer: Tokenizer, seed: int
    ) -> TextImageModel:
        """A fresh model. With `text_init`, its word embeddings start from that checkpoint's (as LXMERT's language
        side does); `fit_text` sees the training captions' token ids (TAB_LSTM's topic model)."""
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
            **{size: sizes[size] for size in arch.sizes},
        )
        torch.manual_seed(seed)
        model = cls(config)
        pretrained = set()
        if embeddings is not None:
            if embeddings.shape[0] != spec.vocab_size:
                raise DataError(f"{text_init}: its {embeddings.shape[0]} word embeddings do not fit the tokenizer")
            with torch.no_grad():
                model.embed.weight.copy_(embeddings)
            pretrained.add("embed.weight")
        model.fit_text([e.ids for e in tokenizer.encode_batch(texts)], seed)
        model._new_parameters = [n for n, _ in model.named_parameters() if n not in pretrained]
        return model

    @classmethod
    def rebuild(cls, spec: ModelSpec, entry: dict) -> TextImageModel:
        return cls(from_dict(ArchConfig, entry["arch_config"]))

    def config_entry(self) -> dict:
        return {"arch_config": self.config.to_dict()}

    def describe(self) -> dict:
        return self.config.to_dict() | {"hidden_size": self.config.hidden}

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def fit_text(self, token_ids: list[list[int]], seed: int) -> None:
        """Fit what the model learns from the training captions before training (nothing, unless it says)."""

    def init_head_bias(self, label_frequency: torch.Tensor) -> None:
        init_head_bias(self, label_frequency)

    def loss(self, inputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """BCE of the logits against the multi-hot labels."""
        return nn.functional.binary_cross_entropy_with_logits(self(*inputs).float(), labels)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked positions of x [B, T, D] (mask [B, T]); an empty row gives zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def reverse_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's unmasked prefix reversed in place, padding left where it is: [a b c _ _] -> [c b a _ _]."""
    steps = x.shape[1]
    n = mask.sum(1, keepdim=True).long()
    pos = torch.arange(steps, device=x.device).unsqueeze(0)
    index = torch.where(pos < n, n - 1 - pos, pos)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def last_state(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at each row's last unmasked position (the first one for an empty row)."""
    last = (mask.sum(1).long() - 1).clamp(min=0)
    return states.gather(1, last.view(-1, 1, 1).expand(-1, 1, states.shape[-1])).squeeze(1)


class SequenceEncoder(nn.Module):
    """(Bi)LSTM states [B, T, H] of a right-padded sequence, zero at padded positions. Bidirectional: H/2
    per direction, the backward one reading each row reversed in place (never its padding first)."""

    def __init__(self, input_size: int, hidden: int, bidirectional: bool = False):
        super().__init__()
        size = hidden // 2 if bidirectional else hidden
        self.forward_lstm = nn.LSTM(input_size, size, batch_first=True)
        self.backward_lstm = nn.LSTM(input_size, size, batch_first=True) if bidirectional else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.forward_lstm(x)
        if self.backward_lstm is not None:
            back, _ = self.backward_lstm(reverse_padded(x, mask))
            states = torch.cat([states, reverse_padded(back, mask)], -1)
        return states * mask.unsqueeze(-1).to(states.dtype)


class Attention(nn.Module):
    """Additive attention: a_t = softmax_t(w . tanh(W_x x_t + W_g g)); returns sum_t a_t x_t.

    `guide` g [B, G] steers it (another modality, a topic vector); without one a learned query does.
    """

    def __init__(self, dim: int, guide_dim: int | None = None, size: int | None = None):
        super().__init__()
        size = size or dim
        self.key = nn.Linear(dim, size)
        self.guide = nn.Linear(guide_dim, size, bias=False) if guide_dim else None
        self.query = None if guide_dim else nn.Parameter(torch.zeros(size))
        self.score = nn.Linear(size, 1, bias=False)

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        g = self.guide(guide).unsqueeze(1) if self.guide is not None else self.query
        scores = self.score(torch.tanh(self.key(x) + g)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, NEG)
        weights = torch.softmax(scores, dim=-1)
        return (weights.unsqueeze(-1) * x).sum(1)
