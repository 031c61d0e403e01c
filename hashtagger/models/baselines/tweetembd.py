"""TweetEmbd_Net: a tweet embedding made of text, image and hashtag components, trained for hashtags.

The LXMERT4Hashtag paper's "Baseline methods" describes it as a task-agnostic tweet-embedding network
whose text, image and hashtag components are combined into one vector. It gives no more detail than that,
so this is the simplest faithful reading, stated here rather than attributed to the original:
- text component: the mean of the caption's word embeddings (a bag of words, no recurrence), tanh-projected;
- image component: the mean of the run's region features, tanh-projected;
- the tweet embedding e = tanh(W [text; image]);
- hashtag component: every hashtag has an embedding in the same space (the head's weight rows), and a
  hashtag's score is e . embedding(h) + bias(h), trained with BCE (sigmoid) on the post's hashtags: the
  hashtags shape the embedding in training and are what it ranks at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from hashtagger.models.baselines.encoders import ArchConfig, TextImageModel, masked_mean


class TweetEmbedding(TextImageModel):
    def __init__(self, config: ArchConfig):
        super().__init__(config)
        h = config.hidden
        self.text_proj = nn.Linear(config.embed, h)
        self.image_proj = nn.Linear(config.visual_feat_dim, h)
        self.embedding = nn.Linear(2 * h, h)
        self.head = nn.Linear(h, config.num_labels)  # weight rows: the hashtag embeddings

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        text = torch.tanh(self.text_proj(masked_mean(self.embed(input_ids), attention_mask)))
        image = torch.tanh(self.image_proj(visual_feats.mean(1)))
        tweet = torch.tanh(self.embedding(torch.cat([text, image], dim=-1)))
        return self.head(self.dropout(tweet))
