"""TAB_LSTM, text only: an LSTM over the caption whose states are attended with the caption's topic vector.

Li, Liu, Zhou, Lin and Sun, "Hashtag recommendation with topical attention-based LSTM", COLING 2016, as the
LXMERT4Hashtag paper's "Baseline methods" describes it: the hidden states of an LSTM over the words are
pooled by an attention whose query is a global topic vector of the post, and the pooled vector is
classified into hashtags.

Where the description is vague, the simplest faithful reading:
- The topic model is NMF (scikit-learn) on TF-IDF-weighted token counts of the training captions, fitted
  once before training (`fit_text`), in place of the original LDA; its topic-word matrix is a frozen
  buffer of the model, so the exported graph needs nothing beside the tokens.
- A caption's topic distribution is folded in by projection: theta = normalise(sum over its tokens of
  idf(token) * topic_words[token]), instead of re-solving the factorisation per post.
- The topic vector is theta times a learned topic embedding; it guides additive attention over the LSTM
  states. The attended vector, after dropout, feeds the multi-label head (sigmoid + BCE, as every
  architecture here; the original used a softmax over hashtags).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashtagger.models.baselines.encoders import ArchConfig, Attention, SequenceEncoder, TextImageModel


class TabLstm(TextImageModel):
    def __init__(self, config: ArchConfig):
        super().__init__(config)
        self.lstm = SequenceEncoder(config.embed, config.hidden)
        self.register_buffer("topic_words", torch.zeros(config.vocab_size, config.topics))
        self.topic_embed = nn.Linear(config.topics, config.hidden, bias=False)
        self.attention = Attention(config.hidden, guide_dim=config.hidden)
        self.head = nn.Linear(config.hidden, config.num_labels)

    def topic_distribution(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        loadings = self.topic_words[input_ids] * attention_mask.unsqueeze(-1).to(self.topic_words.dtype)
        total = loadings.sum(1)
        return total / total.sum(-1, keepdim=True).clamp(min=1e-6)

    def forward(self, input_ids, attention_mask, token_type_ids, visual_feats, visual_pos):
        states = self.lstm(self.embed(input_ids), attention_mask)
        topic = self.topic_embed(self.topic_distribution(input_ids, attention_mask))
        pooled = self.attention(states, topic, attention_mask)
        return self.head(self.dropout(pooled))

    def fit_text(self, token_ids: list[list[int]], seed: int = 0) -> None:
        """Fit the topic model on the training captions' token ids and store its topic-word matrix."""
        from scipy.sparse import csr_matrix
        from sklearn.decomposition import NMF
        from sklearn.feature_extraction.text import TfidfTransformer

        rows = np.repeat(np.arange(len(token_ids)), [len(t) for t in token_ids])
        cols = np.concatenate([np.asarray(t, dtype=np.int64) for t in token_ids]) if token_ids else np.zeros(0, int)
        counts = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(token_ids), self.config.vocab_size))
        tfidf = TfidfTransformer().fit(counts)
        # NNDSVD needs at least as many captions and distinct tokens as topics; tiny data starts at random.
        init = "nndsvda" if self.config.topics <= min(counts.shape) else "random"
        nmf = NMF(self.config.topics, init=init, max_iter=300, random_state=seed)
        nmf.fit(tfidf.transform(counts))
        words = nmf.components_.T * tfidf.idf_[:, None]  # [vocab, topics]: a token's idf-weighted loadings
        with torch.no_grad():
            self.topic_words.copy_(torch.from_numpy(words.astype(np.float32)))
