"""What a model knows, said where users look: its vocabulary and the posts it learnt from (bundle.json's "scope",
written by export; older bundles fall back to what they record), and whether its suggestions are only the
frequency prior's (the most frequent training hashtags, the same for every post).

bundle.json "scope":
    description          what the vocabulary was learnt from, e.g. "2012-2015 news tweets, MediaEval 2016"
    prior                the 5 most frequent training hashtags, best first
    top2_same_as_prior   share of validation posts whose top 2 was the prior's top 2 (the checkpoint export read)
"""

from __future__ import annotations

import json
from pathlib import Path

from hashtagger.bundle.format import Bundle

# A model whose top 2 is the prior's on this share of validation posts learnt nothing but the frequencies.
COLLAPSED = 0.9
# A tagging run warns when more than this share of its posts got the prior's top 2.
PRIOR_LIKE = 0.8
ADVICE = "more epochs, more posts, `hashtagger train DATA --preset cpu`, or a bigger --base-model"


def learnt_from(data: str | None) -> str:
    """The default description, from the training data's path: a file's folder and name (posts.csv alone says
    little), a folder's name."""
    if not data:
        return "its training posts"
    path = Path(data)
    return f"the posts in {'/'.join(path.parts[-2:]) if path.suffix else path.name}"


def description(bundle: Bundle) -> str:
    """What the vocabulary was learnt from: the bundle's own words, else its recorded training data."""
    return bundle.info.scope.description or learnt_from(bundle.info.training.data)


def describe(bundle: Bundle, default: bool) -> str:
    """`tag`'s summary line: which model, its vocabulary size and where it came from; for the installed default,
    the advice that a model of one's own posts suggests one's own hashtags."""
    name = "default" if default else str(bundle.path)
    line = f"model: {name} ({len(bundle.vocab)} hashtags of {description(bundle)})"
    return line + ("; train on your own posts for yours" if default else "")


def prior(bundle: Bundle, k: int = 2) -> list[str]:
    """The frequency prior's top `k`: bundle.json's, else hashtags.json's training counts (order of the
    vocabulary among equals, as evaluation.metrics.frequency_prior ranks them); [] when neither is there."""
    if bundle.info.scope.prior:
        return bundle.info.scope.prior[:k]
    try:
        counts = json.loads((bundle.path / "hashtags.json").read_text()).get("train_counts")
    except (OSError, ValueError):
        return []
    if not counts or len(counts) != len(bundle.vocab) or not any(counts):
        return []
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    return [bundle.vocab[i] for i in order[:k]]


def prior_like(hashtags: list[str], top: list[str]) -> bool:
    """A post's suggestions are the prior's: its top 2 is the prior's top 2."""
    return bool(top) and set(hashtags[: len(top)]) == set(top)


def collapse_share(recorded: float | None, history: list[dict]) -> float | None:
    """The best epoch's share of validation posts whose top 2 was the prior's: a checkpoint's own record (its
    meta's top2_same_as_prior), else its history's best epoch by F1@2; None for a run that never validated."""
    if recorded is not None:
        return float(recorded)
    epochs = [h for h in history if h.get("top2_same_as_prior") is not None]
    if not epochs:
        return None
    best = max(epochs, key=lambda h: (h.get("val_f1@2", 0.0), -h.get("val_loss", 0.0)))
    return float(best["top2_same_as_prior"])


def collapse_warning(share: float | None, where: str) -> str | None:
    """The warning for a model that learnt only the prior, or None."""
    if share is None or share < COLLAPSED:
        return None
    return (
        f"{where} learnt only the frequency prior: its top 2 is the most frequent training hashtags on "
        f"{share:.0%} of validation posts, whatever the post; retrain with {ADVICE}"
    )


def bundle_collapse_warning(bundle: Bundle) -> str | None:
    return collapse_warning(bundle.info.scope.top2_same_as_prior, f"the model {bundle.path}")
