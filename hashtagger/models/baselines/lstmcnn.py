"""Con(LSTM_CNN): an LSTM's caption vector concatenated with a CNN's image vector, then classified.

The LXMERT4Hashtag paper's "Baseline methods": the caption is encoded by an LSTM, the image by a CNN,
both are projected to one size, concatenated and classified into hashtags.

Simplest faithful reading: the caption vector is the LSTM's state at the last token; the CNN vector is the
mean of the run's region features (for the grid extractor, the backbone's global-average-pooled feature
map, which is what a CNN image vector is); each goes through a linear projection to `hidden` with tanh;
the concatenation, after dropout, feeds the multi-label head (sigmoid + BCE, as every architecture here).
"""

from __future__ import annotations

import torch
from torch import nn

from hashtagger.models.baselines.encoders import ArchConfig, SequenceEncoder, TextImageModel, last_state


class LstmCnn(TextImageModel):
    def __init__(self, config: ArchConfig):
        super().__init__(config)
        self.lstm = SequenceEncoder(config.embed, config.hidden)
        self.text_proj = nn.Linear(config.hidden, config.hidden)
        self.image_proj = nn.Linear(config.visual_feat_dim, config.hidden)
        self.head = nn.Linear(2 * config.hidden, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        text = last_state(self.lstm(self.embed(input_ids), attention_mask), attention_mask)
        joint = torch.cat([torch.tanh(self.text_proj(text)), torch.tanh(self.image_proj(visual_feats.mean(1)))], dim=-1)
        return self.head(self.dropout(joint))
