"""Why a post got a hashtag: which caption words and image regions its score depends on. No torch.

The method is erasure (occlusion): a part's weight is how much the hashtag's probability drops when that part
is removed and the post is scored again (Zeiler & Fergus 2014 for image regions; Li, Monroe & Jurafsky 2016,
"Understanding Neural Networks through Representation Erasure", for words). How the score divides between the
image and the caption as wholes is their exact Shapley value in the two-player game of image and caption
(Shapley 1953): each one's mean marginal contribution over both orders, so the two add up to
p(post) - p(neither).

What "removed" means: a word is deleted from the caption, which is re-tokenised; the caption as a whole becomes
empty. An image cannot be blanked without a reference — zeroed features are an input the model never saw and
may read as a colour of their own — so, as interventional SHAP does (Lundberg & Lee 2017; Janzing et al. 2020),
an absent image is the average over a background set of real images: the bundle's `background.npz`, region
features of validation images stored by `export`. A removed region takes the background's mean for that
region. Bundles exported without a background fall back to zeroed features.

It runs on an exported bundle's own graphs through ONNX Runtime: one forward pass per word and region, plus
two per background image, batched. A bundle with a wide part (bundle/wide.py) is explained as it tags: every
variant's score is the blend, and each hashtag also names the caption terms its wide part weighs most; so does
a `--joint-wide` model's (its tables, bundle/token_wide.py), whose wide part is inside the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashtagger.bundle.format import Bundle
from hashtagger.bundle.runtime import Runner
from hashtagger.data.text import encode
from hashtagger.errors import BundleError


@dataclass
class Explanation:
    """One hashtag of one post. Weights are drops in the hashtag's probability (negative: removing helps)."""

    tag: str
    score: float
    image: float  # Shapley value of the image (probability units)
    text: float  # Shapley value of the caption
    words: list[tuple[str, float]]  # the model's caption words in order, each with its erasure weight
    regions: np.ndarray  # [regions] erasure weight of each region
    boxes: np.ndarray  # [regions, 4] normalised (x1, y1, x2, y2)
    # A bundle with a wide part: the caption's terms that raise its logit for the hashtag most, largest first
    # (fitted part: coef x tf-idf; joint part: the token or pair's row / sqrt(features))
    wide_terms: list[tuple[str, float]] = field(default_factory=list)

    @property
    def image_share(self) -> float:
        """The image's part of the score's dependence on the post, 0..1 (0.5 when neither matters)."""
        total = abs(self.image) + abs(self.text)
        return abs(self.image) / total if total > 0 else 0.5

    def record(self, top: int = 3) -> dict:
        """The JSON form `tag --explain` writes: modality shares, the `top` words and regions by weight."""
        words = sorted(enumerate(self.words), key=lambda item: -item[1][1])[:top]
        regions = np.argsort(-self.regions, kind="stable")[:top]
        return {
            "image_share": round(self.image_share, 3),
            "text_share": round(1 - self.image_share, 3),
            "words": [{"word": w, "position": i, "weight": round(float(v), 4) + 0.0} for i, (w, v) in words],
            "regions": [
                {
                    "region": int(r),
                    "box": [round(float(x), 3) for x in self.boxes[r]],
                    "weight": round(float(self.regions[r]), 4) + 0.0,
                }
                for r in regions
            ],
        } | (
            {"wide_terms": [{"term": t, "weight": round(v, 4)} for t, v in self.wide_terms]} if self.wide_terms else {}
        )


def explain(
    runner: Runner,
    bundle: Bundle,
    text: str,
    feats: np.ndarray,
    boxes: np.ndarray,
    tags: list[int] | None = None,
    top_k: int = 3,
    batch_size: int = 64,
) -> list[Explanation]:
    """Explanations of one post (its cleaned caption `text`, region features [N, D] and boxes [N, 4]) for the
    hashtags `tags` (indices into runner.labels: the vocabulary, then any candidates; default: the post's `top_k`
    best), in that order."""
    words = text.split()
    background = read_background(bundle, np.asarray(feats, np.float32), np.asarray(boxes, np.float32))
    rows = _variants(words, len(feats), len(background[0]))
    probs = _score(
        runner, bundle, rows, np.asarray(feats, np.float32), np.asarray(boxes, np.float32), background, batch_size
    )
    k = len(background[0])
    full, no_text = probs[0], probs[1]
    no_image, neither = probs[2 : 2 + k].mean(0), probs[2 + k : 2 + 2 * k].mean(0)
    word_probs = probs[2 + 2 * k : 2 + 2 * k + len(words)]
    region_probs = probs[2 + 2 * k + len(words) :]
    if tags is None:
        tags = [int(i) for i in np.argsort(-full, kind="stable")[:top_k]]
    labels = runner.labels(bundle.vocab)
    wide_terms = _wide_terms(runner, bundle, text, tags)
    out = []
    for t, terms in zip(tags, wide_terms, strict=True):
        out.append(
            Explanation(
                tag=labels[t],
                score=float(full[t]),
                image=float(0.5 * ((full[t] - no_image[t]) + (no_text[t] - neither[t]))),
                text=float(0.5 * ((full[t] - no_text[t]) + (no_image[t] - neither[t]))),
                words=[(w, float(full[t] - p)) for w, p in zip(words, word_probs[:, t], strict=True)],
                regions=(full[t] - region_probs[:, t]).astype(np.float32),
                boxes=np.asarray(boxes, np.float32),
                wide_terms=terms,
            )
        )
    return out


def _wide_terms(
    runner: Runner, bundle: Bundle, text: str, tags: list[int], top: int = 3
) -> list[list[tuple[str, float]]]:
    """For each hashtag of `tags`, the caption terms that raise its logit most in the bundle's wide parts: the
    fitted one's (wide.npz) and the joint one's (token_wide.npz), whichever it has (both: the `top` of the two
    lists). The caption is tokenised once for all of them."""
    wide, joint = runner.wide, bundle.token_wide
    if joint is not None:
        ids = encode(bundle.tokenizer, [text], bundle.max_length)["input_ids"][0]
        tokens = [bundle.tokenizer.id_to_token(int(i)) or "" for i in ids]
    out = []
    for t in tags:
        terms = wide.top_terms(text, t, top) if wide is not None and t < wide.hashtags else []
        if joint is not None and t < joint.unigrams.shape[1]:
            terms += joint.top_terms(ids, tokens, t, top)
        out.append(sorted(terms, key=lambda term: -term[1])[:top])
    return out


BACKGROUND_FILE = "background.npz"


def write_background(folder: Path, feats: np.ndarray, boxes: np.ndarray) -> str:
    """Store region features [K, N, D] and boxes [K, N, 4] of K reference images in a bundle folder."""
    np.savez(folder / BACKGROUND_FILE, features=feats.astype(np.float32), boxes=boxes.astype(np.float32))
    return BACKGROUND_FILE


def read_background(bundle: Bundle, feats: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's background images' (features [K, N, D], boxes [K, N, 4]); one all-zero image shaped like the
    post's when the bundle has none (or one of another shape: a precomputed-feature post with fewer boxes)."""
    name = bundle.info.background
    if name and not isinstance(name, str):
        raise BundleError(f"{bundle.path / 'bundle.json'}: 'background' must name a file")
    if name:
        try:
            with np.load(bundle.path / name, allow_pickle=False) as z:
                bg_feats, bg_boxes = z["features"].astype(np.float32), z["boxes"].astype(np.float32)
        except Exception as e:  # np.load raises OSError, ValueError, KeyError, BadZipFile, EOFError... on bad bytes
            raise BundleError(f"{bundle.path / name}: not a background file of region features ({e})") from None
        if bg_feats.ndim == 3 and bg_feats.shape[1:] == feats.shape and bg_boxes.shape[:2] == bg_feats.shape[:2]:
            return bg_feats, bg_boxes
    return np.zeros_like(feats)[None], boxes[None]


def _variants(words: list[str], regions: int, background: int) -> list[tuple[str, str, int]]:
    """(caption, image kind, index) of every scored variant, in order: the post; without its caption; without its
    image (once per background image); without both (likewise); without each word; without each region."""
    text = " ".join(words)
    rows = [(text, "post", 0), ("", "post", 0)]
    rows += [(text, "background", k) for k in range(background)] + [("", "background", k) for k in range(background)]
    rows += [(" ".join(words[:i] + words[i + 1 :]), "post", 0) for i in range(len(words))]
    return rows + [(text, "without region", j) for j in range(regions)]


def _score(
    runner: Runner,
    bundle: Bundle,
    rows: list[tuple[str, str, int]],
    feats: np.ndarray,
    boxes: np.ndarray,
    background: tuple[np.ndarray, np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """Probabilities [variants, hashtags], a batch at a time (only one batch's copies of the features exist)."""
    mean_region = background[0].mean(0)
    out = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        visual = np.repeat(feats[None], len(part), axis=0)
        places = np.repeat(boxes[None], len(part), axis=0)
        for row, (_, kind, index) in enumerate(part):
            if kind == "background":
                visual[row], places[row] = background[0][index], background[1][index]
            elif kind == "without region":
                visual[row, index] = mean_region[index]
        encoded = encode(bundle.tokenizer, [text for text, _, _ in part], bundle.max_length)
        out.append(runner.blend(runner.probabilities(encoded, visual, places), [text for text, _, _ in part]))
    return np.concatenate(out)
