"""The joint wide part's tables (`train --joint-wide`, models/wide.py's TokenWide), stored beside model.onnx so
that `explain` can name the caption tokens and token pairs the wide part weighs most for a hashtag. The graph
scores with its own copy of the weights; this one reads them in NumPy and finds the caption's features exactly as
TokenWide does: each token's row (0: none), each adjacent pair of rows hashed into a bucket, a feature counted
at its first position only, and the sum of the present rows divided by the square root of their number.

token_wide.npz holds `rows` [tokenizer vocabulary] int64, `unigrams` [rows + 1, hashtags], `pairs` [buckets,
hashtags] (float16: they are read for explanations, not for scores) and `prime`, the pair hash's multiplier;
bundle.json's model.joint_wide.file names it. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashtagger.errors import BundleError

FILE = "token_wide.npz"


@dataclass
class TokenWideTables:
    rows: np.ndarray  # [tokenizer vocabulary] int64: token id -> unigram row, 0 for none
    unigrams: np.ndarray  # [rows + 1, hashtags]; row 0 is padding (zero)
    pairs: np.ndarray  # [buckets, hashtags]
    prime: int

    def features(self, ids: Sequence[int]) -> tuple[dict[int, int], dict[int, int]]:
        """The caption's unigram rows and pair buckets, each -> the position of its first occurrence. As in
        TokenWide, a pair is left out when its bucket number already came up at an earlier position, even one
        where the pair was not present (a token without a row): the graph does exactly that."""
        rows = self.rows[np.asarray(ids, np.int64)]
        unigrams: dict[int, int] = {}
        for i, r in enumerate(rows.tolist()):
            if r > 0:
                unigrams.setdefault(r, i)
        keys = ((rows[:-1] * self.prime + rows[1:]) % len(self.pairs)).tolist()
        present = ((rows[:-1] > 0) & (rows[1:] > 0)).tolist()
        seen: set[int] = set()
        pairs: dict[int, int] = {}
        for i, (key, here) in enumerate(zip(keys, present, strict=True)):
            if here and key not in seen:
                pairs[key] = i
            seen.add(key)
        return unigrams, pairs

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """[hashtags] float32: the wide part's logits for one caption's token ids (no padding)."""
        unigrams, pairs = self.features(ids)
        total = self.unigrams[list(unigrams)].astype(np.float32).sum(0)
        total = total + self.pairs[list(pairs)].astype(np.float32).sum(0)
        return total / np.sqrt(max(len(unigrams) + len(pairs), 1))

    def top_terms(
        self, ids: Sequence[int], tokens: Sequence[str], hashtag: int, top: int = 3
    ) -> list[tuple[str, float]]:
        """The caption's tokens and token pairs that raise the hashtag's wide logit most: (term, its share of
        the logit), largest first, positive ones only. `tokens`: the WordPiece token of each id."""
        unigrams, pairs = self.features(ids)
        norm = float(np.sqrt(max(len(unigrams) + len(pairs), 1)))
        terms = [(tokens[i], float(self.unigrams[r, hashtag]) / norm) for r, i in unigrams.items()]
        terms += [(_pair(tokens[i], tokens[i + 1]), float(self.pairs[b, hashtag]) / norm) for b, i in pairs.items()]
        terms.sort(key=lambda term: -term[1])
        return [(t, w) for t, w in terms[:top] if w > 0]


def _pair(first: str, second: str) -> str:
    """Two adjacent WordPiece tokens as a reader would write them: "frank" "##enstorm" -> "frankenstorm"."""
    return first + second[2:] if second.startswith("##") else f"{first} {second}"


def save_token_wide(path: Path, rows: np.ndarray, unigrams: np.ndarray, pairs: np.ndarray, prime: int) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(
            f,
            rows=rows.astype(np.int64),
            unigrams=unigrams.astype(np.float16),
            pairs=pairs.astype(np.float16),
            prime=np.int64(prime),
        )


def read_token_wide(file: Path, hashtags: int) -> TokenWideTables:
    """The tables in `file`, for a model scoring `hashtags` (Bundle.token_wide reads a bundle's)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            tables = TokenWideTables(z["rows"], z["unigrams"], z["pairs"], int(z["prime"]))
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"{file}: unreadable wide part tables ({e})") from None
    rows, width = int(tables.rows.max(initial=0)), tables.unigrams.shape[1:]
    if tables.unigrams.shape[0] != rows + 1 or width != (hashtags,) or tables.pairs.shape[1:] != (hashtags,):
        raise BundleError(f"{file}: shapes do not match {rows} token rows and {hashtags} hashtags")
    return tables
