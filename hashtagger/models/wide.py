"""A wide part trained jointly with LXMERT4Hashtag (`train --joint-wide`; Cheng et al. 2016, "Wide & Deep
Learning"): a linear layer over the caption's sparse features whose logits are added to the head's before the
sigmoid. Unlike the bundle's wide part (bundle/wide.py, a TF-IDF classifier fitted apart and blended on
probabilities), it is trained by the same loss as the deep model, so each learns what the other does not.

Its features come from the token ids the model already reads, so the exported graph computes them and tagging
needs nothing new: the caption's WordPiece tokens seen in at least two training captions (one row each; special
tokens never) and adjacent pairs of such tokens, hashed into a fixed number of buckets. Each feature counts once
per caption (binary), and the sum of the present features' rows is divided by the square root of their number,
as TF-IDF's L2 normalisation divides binary features; a caption without features, as the image-only ablation's
empty one, gets no wide logits at all.
"""

from __future__ import annotations

from collections import Counter

import torch
from tokenizers import Tokenizer
from torch import nn

BUCKETS = 8192  # rows of the adjacent-pair table: pairs are hashed into it
PRIME = 1_000_003  # the pair hash's multiplier; (rows + 1) * PRIME stays far inside int64
MIN_CAPTIONS = 2  # a token gets a row when at least this many training captions hold it
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenWide(nn.Module):
    """logits [batch, labels] = (sum of the caption's unigram and pair rows) / sqrt(number of them)."""

    def __init__(self, vocab_size: int, n_rows: int, num_labels: int, buckets: int = BUCKETS, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("rows", torch.zeros(vocab_size, dtype=torch.long))  # token id -> row, 0: none
        self.unigrams = nn.Embedding(n_rows + 1, num_labels, padding_idx=0)
        self.pairs = nn.Embedding(buckets, num_labels)
        for table in (self.unigrams, self.pairs):
            nn.init.zeros_(table.weight)  # the deep model's logits alone at the start, as Cheng et al. train it
        self.dropout = dropout  # training only: the share of a caption's features left out, as nn.Dropout draws

    @property
    def n_rows(self) -> int:
        return self.unigrams.num_embeddings - 1

    @property
    def buckets(self) -> int:
        return self.pairs.num_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        rows = self.rows[input_ids] * attention_mask  # [batch, tokens]
        both = (rows[:, :-1] > 0) & (rows[:, 1:] > 0)
        # Integer ops only (Mul, Add, Mod): the exported graph hashes exactly as PyTorch does.
        pairs = (rows[:, :-1] * PRIME + rows[:, 1:]) % self.buckets
        unigram_kept = self._kept(rows, rows > 0)
        pair_kept = self._kept(pairs, both)
        total = (self.unigrams(rows) * unigram_kept.unsqueeze(-1)).sum(1)
        total = total + (self.pairs(pairs) * pair_kept.unsqueeze(-1)).sum(1)
        count = unigram_kept.sum(1, keepdim=True) + pair_kept.sum(1, keepdim=True)
        return total / count.clamp(min=1.0).sqrt()

    def _kept(self, keys: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """1.0 [batch, positions] at each present key's first position in its caption (binary features), less
        those dropped in training."""
        position = torch.arange(keys.shape[1], device=keys.device)
        earlier = position.unsqueeze(0) < position.unsqueeze(1)  # [i, j]: j comes before i
        repeated = ((keys.unsqueeze(2) == keys.unsqueeze(1)) & earlier).any(-1)
        kept = present & ~repeated
        if self.training and self.dropout > 0:
            kept = kept & (torch.rand(kept.shape, device=kept.device) >= self.dropout)
        return kept.to(self.unigrams.weight.dtype)

    def entry(self) -> dict:
        """What a checkpoint stores to rebuild its shape (the row map itself is a buffer among the weights)."""
        return {"n_rows": self.n_rows, "buckets": self.buckets}

    def describe(self) -> dict:
        """bundle.json's note that the model graph holds a wide part."""
        what = "caption WordPiece tokens and adjacent token pairs, trained jointly, logits added to the head's"
        return {"features": what, "token_rows": self.n_rows, "pair_buckets": self.buckets}


def token_rows(texts: list[str], tokenizer: Tokenizer) -> torch.Tensor:
    """[vocab_size] int64: each token id's row (1, 2, ... in id order), 0 for tokens held by fewer than
    MIN_CAPTIONS of `texts` and for special tokens."""
    specials = {i for t in SPECIAL_TOKENS if (i := tokenizer.token_to_id(t)) is not None}
    held = Counter(i for e in tokenizer.encode_batch(list(texts)) for i in set(e.ids) if i not in specials)
    rows = torch.zeros(tokenizer.get_vocab_size(), dtype=torch.long)
    kept = sorted(i for i, n in held.items() if n >= MIN_CAPTIONS)
    rows[kept] = torch.arange(1, len(kept) + 1)
    return rows


def build_wide(texts: list[str], tokenizer: Tokenizer, num_labels: int, dropout: float = 0.0) -> TokenWide:
    """A zero wide part whose unigram rows are the tokens of `texts`, the training split's captions only."""
    rows = token_rows(texts, tokenizer)
    wide = TokenWide(len(rows), int(rows.max()), num_labels, dropout=dropout)
    wide.rows.copy_(rows)
    return wide
