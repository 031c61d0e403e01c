"""Hashtag probabilities for samples, batch by batch, from either backend: a scorer maps a numpy batch to
probabilities [posts, labels]. The ONNX scorer needs no torch; the PyTorch one imports it when made."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tokenizers import Tokenizer

from hashtagger.bundle.runtime import Runner
from hashtagger.data.batching import MODEL_INPUTS, TEXT_INPUTS, Sample, make_batch
from hashtagger.data.regions import FeatureStore
from hashtagger.evaluation import metrics

Scorer = Callable[[dict[str, np.ndarray]], np.ndarray]


def predict(
    score: Scorer,
    samples: list[Sample],
    tokenizer: Tokenizer,
    features: FeatureStore,
    num_labels: int,
    max_length: int,
    batch_size: int = 64,
    blank: str | None = None,
) -> np.ndarray:
    """Probabilities [posts, labels]; `blank` = "text" or "image" removes that stream (the ablations)."""
    out = []
    for i in range(0, len(samples), batch_size):
        batch = make_batch(samples[i : i + batch_size], tokenizer, features, num_labels, max_length, blank)
        out.append(score(batch))
    return np.concatenate(out) if out else np.zeros((0, num_labels), np.float32)


def onnx_scorer(runner: Runner) -> Scorer:
    def score(batch: dict[str, np.ndarray]) -> np.ndarray:
        return runner.probabilities({k: batch[k] for k in TEXT_INPUTS}, batch["visual_feats"], batch["visual_pos"])

    return score


def torch_scorer(model, device: str = "cpu") -> Scorer:
    """A HashtagModel (model.py) as a scorer, in eval mode without gradients."""
    import torch

    def score(batch: dict[str, np.ndarray]) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            logits = model(*(torch.from_numpy(batch[k]).to(device) for k in MODEL_INPUTS)).float()
        return torch.sigmoid(logits).cpu().numpy()

    return score


def sample_metrics(probs: np.ndarray, samples: list[Sample], vocab: list[str]) -> dict[int, dict[str, float]]:
    """The top-k metrics of probabilities against the samples' labels."""
    truths = [{vocab[i] for i in s.labels} for s in samples]
    return metrics.topk_metrics(metrics.rank(probs, vocab, 5), truths)
