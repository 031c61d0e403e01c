"""Frozen or fine-tuned: does training the image backbone lift what the image alone says about a post's hashtags?

The default model reads frozen EfficientNet-Lite2 grid features (cached once, so training costs one pass over
the images). This trains the same backbone with a linear hashtag head on the image alone, twice with the same
protocol: the backbone frozen (the head only) and fine-tuned (the head and the backbone; BatchNorm statistics
kept, as batches are small). Targets are each training image's share of posts carrying each hashtag (weighted by
its posts: the post-level BCE). The epoch is chosen on validation F1@2; the chosen epoch's F1@2 on the split is
printed beside the frequency prior with 95% bootstrap intervals over images.

    python scripts/backbone_finetune.py [BUNDLE] [DATA] [--split test] [--epochs 8]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from image_probe import PRIOR, print_against_prior, prior_ranking  # scripts/, beside this one
from torch import nn

from hashtagger.data.batching import examples_by_split
from hashtagger.data.images import load_pixels
from hashtagger.evaluation import metrics
from hashtagger.evaluation.systems import open_bundle
from hashtagger.models.backbones import create_backbone, image_settings


def image_targets(rows, index: dict[str, int], vocab_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(digests, [images, vocab] share of each image's posts carrying each hashtag, [images] post counts)."""
    digests = sorted({d for _, d in rows})
    at = {d: i for i, d in enumerate(digests)}
    shares, counts = np.zeros((len(digests), vocab_size), np.float32), np.zeros(len(digests), np.float32)
    for e, d in rows:
        shares[at[d], [index[t] for t in e.labels if t in index]] += 1
        counts[at[d]] += 1
    return digests, shares / counts[:, None], counts


def augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random horizontal flip and a random crop of 80-100% of the side, resized back."""
    side = pixels.shape[-1]
    crop = int(side * (0.8 + 0.2 * torch.rand(1, generator=generator).item()))
    top, left = (int(torch.randint(0, side - crop + 1, (1,), generator=generator)) for _ in range(2))
    out = pixels[..., top : top + crop, left : left + crop]
    out = nn.functional.interpolate(out, size=(side, side), mode="bilinear", align_corners=False)
    return out.flip(-1) if torch.rand(1, generator=generator).item() < 0.5 else out


def train(
    pixels: dict[str, torch.Tensor], train_set, evaluate_val, vocab_size: int, finetune: bool, epochs: int
) -> tuple[nn.Module, list[float]]:
    """The best epoch's model on validation, and every epoch's validation F1@2."""
    torch.manual_seed(0)
    backbone, _ = create_backbone("efficientnet-lite2")
    head = nn.Linear(backbone.num_features, vocab_size)
    digests, shares, counts = train_set
    prior = (shares * counts[:, None]).sum(0) / counts.sum()
    with torch.no_grad():
        head.bias.copy_(torch.logit(torch.from_numpy(prior).clamp(1e-4, 1 - 1e-4)))
    model = nn.Sequential(backbone, head)
    for p in backbone.parameters():
        p.requires_grad_(finetune)
    groups = [{"params": head.parameters(), "lr": 1e-3}] + ([{"params": backbone.parameters(), "lr": 1e-4}] * finetune)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    weights = torch.from_numpy(counts / counts.mean())
    best, best_f1, history = model, -1.0, []
    for epoch in range(epochs):
        model.eval()  # BatchNorm statistics stay ImageNet's; dropout off, for both runs alike
        order = torch.randperm(len(digests), generator=generator)
        for start in range(0, len(order), 16):
            batch = order[start : start + 16]
            x = augment(torch.stack([pixels[digests[i]] for i in batch]), generator)
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(x), torch.from_numpy(shares[batch.numpy()]), reduction="none"
            ).mean(1)
            optimizer.zero_grad()
            (loss * weights[batch]).mean().backward()
            optimizer.step()
        history.append(evaluate_val(model))
        print(f"  {'fine-tuned' if finetune else 'frozen'} epoch {epoch + 1}: val F1@2 {history[-1]:.3f}", flush=True)
        if history[-1] > best_f1:
            best, best_f1 = copy.deepcopy(model), history[-1]
    return best, history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", default="exported")
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    m = open_bundle(args.bundle, "cpu", 64)
    by_split = {
        name: [(e, d) for e, d in rows if d is not None] for name, rows in examples_by_split(m, args.data).items()
    }
    index = {t: i for i, t in enumerate(m.vocab)}
    settings = image_settings(create_backbone("efficientnet-lite2")[0])
    paths = {d: e.image for rows in by_split.values() for e, d in rows}
    pixels = {d: torch.from_numpy(load_pixels(p, settings)) for d, p in paths.items()}
    print(f"{len(pixels)} images at {settings.size} px; vocabulary {len(m.vocab)}", flush=True)

    @torch.no_grad()
    def f1_at_2(model: nn.Module, split: str) -> tuple[float, list[list[str]]]:
        rows = by_split[split]
        scores = {d: model(pixels[d][None])[0].numpy() for d in {d for _, d in rows}}
        ranked = metrics.rank(np.stack([scores[d] for _, d in rows]), m.vocab, 2)
        return metrics.topk_metrics(ranked, [set(e.labels) for e, _ in rows], (2,))[2]["f1"], ranked

    train_set = image_targets(by_split["train"], index, len(m.vocab))
    rows = by_split[args.split]
    truths = [set(e.labels) for e, _ in rows]
    ranked = {PRIOR: prior_ranking(m.train_counts, m.vocab, len(rows))}
    for finetune in (False, True):
        model, history = train(
            pixels, train_set, lambda mod: f1_at_2(mod, "val")[0], len(m.vocab), finetune, args.epochs
        )
        name = f"{'fine-tuned' if finetune else 'frozen'} (epoch {int(np.argmax(history)) + 1} of {args.epochs})"
        ranked[name] = f1_at_2(model, args.split)[1]
    print_against_prior(args.split, ranked, truths, [d for _, d in rows])


if __name__ == "__main__":
    main()
