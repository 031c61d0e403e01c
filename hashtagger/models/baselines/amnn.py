"""AMNN: attention encoders for image and text, and a GRU decoder that emits hashtags in order.

Yang, Wang, Zhang, Qi, Hu and Xu, "AMNN: Attention-based multimodal neural network model for hashtag
recommendation", IEEE Transactions on Computational Social Systems 2020, as the LXMERT4Hashtag paper's
"Baseline methods" describes it: a CNN feature map read by an LSTM with attention, the text read by a
BiLSTM with attention, the two vectors concatenated, and a GRU decoder generating the post's hashtags one
after another until an end token.

Simplest faithful reading:
- image: an LSTM reads the run's 36 region features in raster order; attention with a learned query pools
  its states. Text: a BiLSTM over the word embeddings, pooled the same way. c = tanh(W [image; text]).
- decoder: a GRU cell started at c, fed at each step the embedding of the previous hashtag (a start token
  first) and c, with a softmax over the hashtags and an end token. The target sequence is the post's
  hashtags in vocabulary order (most frequent first: the multi-hot labels carry no order and a fixed one is
  learnable) then the end token, cut at `steps`; the loss is teacher-forced cross-entropy.
- ranking for top-k (the shared interface wants one score per hashtag): the decoder runs greedily for
  `steps` steps, never repeating a hashtag, and a hashtag's score is the highest probability any step
  gives it while the sequence is still open (before the end token is emitted). The hashtags of the greedy
  sequence come first, in order; first-step probabilities rank most of the rest. Sigmoid-of-logit of that
  score is what forward returns, so export, thresholds and evaluation treat it as the other models' probs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hashtagger.models.baselines.encoders import NEG, ArchConfig, Attention, SequenceEncoder, TextImageModel


class Amnn(TextImageModel):
    def __init__(self, config: ArchConfig):
        super().__init__(config)
        h, labels = config.hidden, config.num_labels
        self.image_lstm = SequenceEncoder(config.visual_feat_dim, h)
        self.image_attention = Attention(h)
        self.text_lstm = SequenceEncoder(config.embed, h, bidirectional=True)
        self.text_attention = Attention(h)
        self.context = nn.Linear(2 * h, h)
        self.tag_embed = nn.Embedding(labels + 2, h)  # hashtags, end (= labels), start (= labels + 1)
        self.decoder = nn.GRUCell(2 * h, h)
        self.head = nn.Linear(h, labels + 1)  # hashtags and the end token

    @property
    def end(self) -> int:
        return self.config.num_labels

    def encode(self, input_ids, attention_mask, visual_feats) -> torch.Tensor:
        regions = torch.ones(visual_feats.shape[:2], dtype=attention_mask.dtype, device=visual_feats.device)
        image = self.image_attention(self.image_lstm(visual_feats, regions), mask=regions)
        text = self.text_attention(self.text_lstm(self.embed(input_ids), attention_mask), mask=attention_mask)
        return torch.tanh(self.context(self.dropout(torch.cat([image, text], dim=-1))))

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        """Logits whose sigmoid is each hashtag's score (see the module's docstring)."""
        context = self.encode(input_ids, attention_mask, visual_feats)
        batch = context.shape[0]
        state = context
        previous = torch.full((batch,), self.end + 1, dtype=torch.long, device=context.device)
        emitted = torch.zeros(batch, self.end, dtype=context.dtype, device=context.device)
        open_ = torch.ones(batch, 1, dtype=context.dtype, device=context.device)
        best = torch.zeros(batch, self.end, dtype=context.dtype, device=context.device)
        for _ in range(self.config.steps):
            state = self.decoder(torch.cat([self.tag_embed(previous), context], dim=-1), state)
            logits = self.head(self.dropout(state)) + F.pad(emitted, (0, 1)) * NEG  # no hashtag twice
            probs = torch.softmax(logits, dim=-1)
            best = torch.maximum(best, probs[:, : self.end] * open_)
            previous = logits.argmax(-1)
            emitted = emitted + F.one_hot(previous, self.end + 1)[:, : self.end].to(context.dtype)
            open_ = open_ * (previous != self.end).to(context.dtype).unsqueeze(-1)
        best = best.clamp(1e-6, 1 - 1e-6)
        return torch.log(best) - torch.log1p(-best)

    def loss(self, inputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of the post's hashtag sequence (vocabulary order) and the end token."""
        input_ids, attention_mask, _, visual_feats, _ = inputs
        context = self.encode(input_ids, attention_mask, visual_feats)
        targets = self.target_sequences(labels)
        previous = torch.cat([torch.full_like(targets[:, :1], self.end + 1), targets[:, :-1]], dim=1)
        state, total = context, 0.0
        for t in range(targets.shape[1]):
            state = self.decoder(torch.cat([self.tag_embed(previous[:, t].clamp(min=0)), context], dim=-1), state)
            logits = self.head(self.dropout(state)).float()
            total = total + F.cross_entropy(logits, targets[:, t], ignore_index=-1, reduction="sum")
        return total / (targets >= 0).sum().clamp(min=1)

    def target_sequences(self, labels: torch.Tensor) -> torch.Tensor:
        """[B, steps]: each row's hashtag indices in vocabulary order, the end token, then -1 (ignored)."""
        steps = self.config.steps
        order = torch.arange(self.end, device=labels.device).expand_as(labels)
        keyed = torch.where(labels > 0, order, torch.full_like(order, self.end + steps))
        tags = keyed.sort(dim=1).values[:, :steps]  # present hashtags first, in vocabulary order
        count = (labels > 0).sum(1, keepdim=True)
        pos = torch.arange(steps, device=labels.device).unsqueeze(0)
        return torch.where(pos < count, tags, torch.where(pos == count, self.end, -1))

    def init_head_bias(self, label_frequency: torch.Tensor) -> None:
        """Softmax prior: each hashtag's bias at the log of its training frequency, the end token's at log 1
        (every post ends once), so that the decoder starts at the label frequencies (DESIGN.md)."""
        with torch.no_grad():
            self.head.bias[: self.end].copy_(torch.log(label_frequency.clamp(min=1e-6)))
            self.head.bias[self.end] = 0.0
