"""Hashtags as names: the words a hashtag is made of (`hurricanesandy` -> `hurricane sandy`), the seeded share
of a vocabulary held out of training, and candidate hashtags read from a file. No torch: `tag` imports this.

Words come from the wordsegment package (Grant Jenks; unigram and bigram counts of Google's trillion-word
corpus), after splitting at underscores, case changes and letter / digit boundaries.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

from .errors import DataError

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
