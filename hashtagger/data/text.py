"""Caption cleaning (the paper's rules) and tokenisation. No torch: `tag` imports this."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

HASHTAG = re.compile(r"(?<![\w&])#(\w+)", re.UNICODE)
MENTION = re.compile(r"(?<!\w)@\w+")
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# A retweet marker at the start of a post ("RT @user:", "RT:"), the re-post rule's test.
RETWEET = re.compile(r"^\s*(?:RT|MT)\b[\s:]*(?:@\w+)?", re.IGNORECASE)
_ALPHA_WORD = re.compile(r"^[^\W\d_]+(?:['’][^\W\d_]+)*$", re.UNICODE)
_EDGE_PUNCT = ".,;:!?\"'()[]{}…“”‘’«»-–—*"


@dataclass(frozen=True)
class CleaningOptions:
    """How a caption becomes model text. Defaults follow the paper; each can be switched off."""

    drop_mentions: bool = True
    drop_urls: bool = True
    drop_non_alpha: bool = True
    drop_trailing_hashtags: bool = True  # the block of hashtags that ends a caption carries the labels
    keep_inline_hashtag_words: bool = True  # "#boston is safe" -> "boston is safe"
    lowercase: bool = False  # the tokenizer lower-cases; kept for tokenizers that do not


def extract_hashtags(caption: str) -> list[str]:
    """The post's hashtags, lower-cased, without '#', de-duplicated in order of appearance."""
    seen: dict[str, None] = {}
    for tag in HASHTAG.findall(caption or ""):
        seen.setdefault(tag.lower(), None)
    return list(seen)


def parse_tag_list(value: str) -> list[str]:
    """Hashtags given as 'a b', 'a,b' or '#a #b' -> ['a', 'b']."""
    tags = (t.strip().lstrip("#").lower() for t in re.split(r"[\s,;]+", value or ""))
    return list(dict.fromkeys(t for t in tags if t))


def is_repost(caption: str) -> bool:
    return bool(RETWEET.match(caption or ""))


CHARS_PER_TOKEN = 16  # a caption prefix of max_length * this many characters holds max_length tokens' worth


def caption_prefix(caption: str, max_length: int) -> str:
    """The part of a caption the model can see, with room to spare: cleaning and tokenizing a 5 MB caption
    whole costs seconds and gigabytes for tokens truncation then throws away. Cut at a space when one is near."""
    limit = max(1, max_length) * CHARS_PER_TOKEN
    if len(caption) <= limit:
        return caption
    cut = caption[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > limit // 2 else cut


def clean_caption(caption: str, options: CleaningOptions = CleaningOptions()) -> str:
    """Apply the paper's text rules; the result is what the tokenizer sees."""
    text = html.unescape(caption or "")  # tweets arrive with &amp; / &gt; escapes
    if options.drop_urls:
        text = URL.sub(" ", text)
    if options.drop_mentions:
        text = MENTION.sub(" ", text)
    text = RETWEET.sub(" ", text)
    tokens = text.split()
    if options.drop_trailing_hashtags:
        # Only hashtags (and leftover punctuation) after the last ordinary word form the trailing block.
        while tokens and _is_tag_or_punct(tokens[-1]):
            tokens.pop()
    words = []
    for token in tokens:
        tag = HASHTAG.fullmatch(token.strip(_EDGE_PUNCT))
        if tag:
            if not options.keep_inline_hashtag_words:
                continue
            token = tag.group(1)
        if options.drop_non_alpha:
            token = token.strip(_EDGE_PUNCT)
            if not _ALPHA_WORD.match(token):
                continue
        words.append(token)
    text = " ".join(words)
    return text.lower() if options.lowercase else text


def _is_tag_or_punct(token: str) -> bool:
    core = token.strip(_EDGE_PUNCT)
    return not core or bool(HASHTAG.fullmatch(core))


def count_words(text: str) -> int:
    return len(text.split())


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int = 128) -> dict[str, np.ndarray]:
    """Token ids, attention mask and token types, padded to the longest text in the batch (<= max_length)."""
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    ids.fill(pad_id)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        ids[row, :n] = e.ids
        mask[row, :n] = 1
        types[row, :n] = e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def train_wordpiece(texts: list[str], vocab_size: int) -> Tokenizer:
    """A BERT-uncased-style WordPiece tokenizer whose vocabulary comes from the training texts.

    Used when no pretrained tokenizer is given. The vocabulary is every character (alone and as a
    '##' continuation) plus the most frequent whole words, ties broken alphabetically: unlike the
    tokenizers trainer, whose ties fall differently from run to run, the same texts always give the
    same ids, so a seeded run is reproducible.
    """
    from collections import Counter

    from tokenizers import models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + [f"##{c}" for c in chars]
    frequent = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    vocab += frequent[: max(0, vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.BertProcessing(
        ("[SEP]", vocab.index("[SEP]")), ("[CLS]", vocab.index("[CLS]"))
    )
    return tokenizer
