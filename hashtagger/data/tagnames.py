"""Hashtags as names: the words a hashtag is made of (`hurricanesandy` -> `hurricane sandy`), how much of a name
a caption holds, the seeded share of a vocabulary held out of training, and candidate hashtags read from a file.
No torch: `tag` imports this.

Words come from the wordsegment package (Grant Jenks; unigram and bigram counts of Google's trillion-word
corpus), after splitting at underscores, case changes and letter / digit boundaries.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from hashtagger.errors import DataError

_PIECES = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_]+", re.UNICODE)
VALID = re.compile(r"^\w+$", re.UNICODE)


@lru_cache(maxsize=1)
def _segmenter():
    import wordsegment

    wordsegment.load()  # reads its frequency lists once per process (a couple of seconds)
    return wordsegment.segment


def tag_words(tag: str) -> str:
    """The hashtag's words, space-separated: 'HurricaneSandy' / 'hurricanesandy' -> 'hurricane sandy'."""
    words = []
    for piece in _PIECES.findall(tag.lstrip("#")):
        if piece.isdigit() or not piece.isascii():
            words.append(piece.lower())  # wordsegment knows English letters only
        else:
            words.extend(_segmenter()(piece) or [piece.lower()])
    return " ".join(words)


NAME_PIECES = 8  # token ids kept of each written form of a hashtag's name


def name_pieces(tokenizer, tags: list[str], width: int = NAME_PIECES) -> np.ndarray:
    """[tags, 2, width] token ids of each hashtag's two written forms, its words ('hurricane sandy') and itself
    ('hurricanesandy'), -1-padded: what caption_match looks for. A `tokenizers.Tokenizer`."""
    forms = [[tag_words(t), t.lstrip("#").lower()] for t in tags]
    # The unknown token is left out: a name the tokenizer cannot spell would match every caption holding any
    # word it cannot spell.
    unknown = tokenizer.token_to_id(getattr(tokenizer.model, "unk_token", None) or "[UNK]")
    ids = [
        [[i for i in tokenizer.encode(text, add_special_tokens=False).ids if i != unknown][:width] for text in pair]
        for pair in forms
    ]
    out = np.full((len(tags), 2, max([len(i) for pair in ids for i in pair], default=1)), -1, np.int64)
    for row, pair in enumerate(ids):
        for form, piece_ids in enumerate(pair):
            out[row, form, : len(piece_ids)] = piece_ids
    return out


def caption_match(input_ids: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """[posts, tags] in [0, 1]: for each hashtag the larger share, over its two written forms, of the form's
    tokens found among the caption's (`#bostonbombing` kept as a word, or `boston` and `bombing`, both give 1).
    The name head adds it, weighted, to its logit; NameHead.caption_match is the same in torch."""
    bag = np.zeros((len(input_ids), max(int(input_ids.max(initial=0)), int(pieces.max(initial=0))) + 1), np.float32)
    np.put_along_axis(bag, input_ids, 1.0, axis=1)
    valid = pieces >= 0
    present = bag[:, np.where(valid, pieces, 0)] * valid
    return (present.sum(-1) / np.maximum(valid.sum(-1), 1)).max(-1)


def hold_out(vocab: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept, held out): a seeded `share` of the vocabulary removed from training, the rest in its own order."""
    if not 0.0 <= share < 1.0:
        raise DataError(f"--hold-out-tags must be at least 0 and below 1, not {share}")
    count = round(share * len(vocab))
    held = set(random.Random(f"hold-out-{seed}").sample(sorted(vocab), count)) if count else set()
    return [t for t in vocab if t not in held], [t for t in vocab if t in held]


def read_candidates(path: Path) -> list[str]:
    """Hashtags from a file, one a line, '#' optional, blank lines skipped; lower-cased, de-duplicated in order.
    A line that is not one hashtag is a DataError naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"candidates file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"candidates file {path} is unreadable ({e})") from None
    tags: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        tag = text[1:] if text.startswith("#") else text
        if not VALID.match(tag) or not any(c.isalnum() for c in tag):
            raise DataError(
                f"{path}, line {number}: '{text}' is not a hashtag (one word of letters, digits or '_', no spaces)"
            )
        tags.setdefault(tag.lower(), None)
    if not tags:
        raise DataError(f"candidates file {path} has no hashtags (one a line, '#' optional)")
    return list(tags)
