"""CoA: a co-attention network between the caption's LSTM states and the image regions.

Zhang, Wang, Huang and Gong, "Hashtag recommendation for multimodal microblog using co-attention
network", IJCAI 2017, as the LXMERT4Hashtag paper's "Baseline methods" describes it: the text guides an
attention over the image regions, the attended image guides an attention over the words, alternating,
and the two attended vectors are combined and classified.

Simplest faithful reading (one alternation, as the original's final model):
1. word states X from an LSTM; regions V projected to the same width with tanh (the 6x6 grid regions of
   the run's extractor, as the original used a 7x7 VGG map);
2. image attention guided by the mean word state: v = Att(V | mean(X));
3. text attention guided by the attended image: s = Att(X | v);
4. f = tanh(W (v + s)), after dropout, feeds the multi-label head (sigmoid + BCE, as every architecture
   here; the original used a softmax over hashtags).
"""

from __future__ import annotations

import torch
from torch import nn

from hashtagger.models.baselines.encoders import ArchConfig, Attention, SequenceEncoder, TextImageModel, masked_mean


class CoAttention(TextImageModel):
    def __init__(self, config: ArchConfig):
        super().__init__(config)
        h = config.hidden
        self.lstm = SequenceEncoder(config.embed, h)
        self.regions = nn.Linear(config.visual_feat_dim, h)
        self.image_attention = Attention(h, guide_dim=h)
        self.text_attention = Attention(h, guide_dim=h)
        self.joint = nn.Linear(h, h)
        self.head = nn.Linear(h, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        words = self.lstm(self.embed(input_ids), attention_mask)
        regions = torch.tanh(self.regions(visual_feats))
        image = self.image_attention(regions, masked_mean(words, attention_mask))
        text = self.text_attention(words, image, attention_mask)
        return self.head(self.dropout(torch.tanh(self.joint(image + text))))
