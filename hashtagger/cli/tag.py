"""`hashtagger tag`: recommend hashtags for a folder, CSV or Parquet file of posts, here or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from hashtagger.bundle.locate import MODEL_HELP
from hashtagger.cli.app import err, fail, need
from hashtagger.errors import HashtaggerError
from hashtagger.tagging.writers import format_names, shard_formats

if TYPE_CHECKING:
    from hashtagger.tagging.options import TagOptions
    from hashtagger.tagging.ray.engine import RayOptions
    from hashtagger.tagging.records import TagSummary


def tag(
    input: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="Folder of posts (image + same-stem .txt caption, recursive), a CSV or Parquet file (image, caption), "
        "or one image (with its same-stem .txt, or --caption).",
    ),
    caption: str | None = typer.Option(None, help="The caption of INPUT, one image (instead of its .txt file)."),
    model: Path | None = typer.Option(None, help=MODEL_HELP, show_default=False),
    top_k: int = typer.Option(5, min=1, help="Hashtags per post."),
    threshold: str | None = typer.Option(
        None,
        help="Keep only top-k hashtags scoring at least this (0..1); 'auto': the bundle's tuned thresholds "
        "(each hashtag's own where export tuned one, else the global one).",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help=f"{format_names()} (default: from --output's extension; json on stdout). "
        f"--engine ray: {format_names([f'{shard_formats()[0]} (default)', *shard_formats()[1:]])} shards.",
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
        'then say "seen": true|false. Needs a model trained with --head names, or one holding a names-head '
        "companion (candidates/ inside the bundle: the default model does).",
    ),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Add each hashtag's top words and regions and its image / caption shares (JSON / JSONL; one forward "
        "pass per word and region).",
    ),
    keep_own: bool = typer.Option(
        False,
        "--keep-own",
        help="Also suggest the hashtags a post already carries (in its caption, its .tags file or hashtags column); "
        "by default they are left out.",
    ),
    exclude: str | None = typer.Option(
        None, metavar="TAGS", help="Hashtags never suggested: a comma list ('sandy,nyc') or @file (one a line)."
    ),
    always: str | None = typer.Option(
        None,
        metavar="TAGS",
        help='Hashtags put first on every tagged post, marked "always": true with score 1.0, before the top k: '
        "a comma list or @file.",
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
    sidecars: Literal["skip", "overwrite", "append"] | None = typer.Option(
        None,
        help="Also write each tagged post's hashtags to <image stem>.tags beside its image (one #hashtag a line; "
        "the .txt caption is never touched): skip an image that has one, overwrite it, or append the new hashtags.",
    ),
) -> None:
    """Recommend hashtags for image + caption posts (ONNX Runtime; no torch)."""
    from hashtagger.data.posts import CsvColumns, image_post
    from hashtagger.tagging.options import TagOptions
    from hashtagger.tagging.run import interrupted_message
    from hashtagger.tagging.run import tag as run_tagging

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
        keep_own=keep_own,
        exclude=exclude or (),
        always=always or (),
    )
    if engine == "ray":
        if caption is not None or sidecars is not None:
            fail("--caption and --sidecars are for tagging here; leave out --engine ray")
        need("ray", "tag --engine ray")
        from hashtagger.tagging.ray.engine import RayOptions

        plan = RayOptions(address=address, actors=actors, workers_per_gpu=workers_per_gpu, shard_size=shard_size)
        summary = _tag_on_ray(input, output, fmt, options, plan, overwrite)
    else:
        try:
            posts = [image_post(input, caption)] if caption is not None else input
            summary = run_tagging(posts, output, fmt, options, resume, err, overwrite, sidecars)
        except KeyboardInterrupt:
            fail(interrupted_message(output, fmt), 130)
        except HashtaggerError as e:
            fail(str(e))
    if summary.processed and not summary.tagged:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in summary.skipped.most_common())
        fail(f"none of the {summary.processed} posts could be tagged: {reasons}")


def _tag_on_ray(
    input: Path, output: Path | None, fmt: str | None, options: TagOptions, plan: RayOptions, overwrite: bool
) -> TagSummary:
    """`tag --engine ray`: tag_on_ray, its failures as one line."""
    from hashtagger.tagging.ray.engine import tag_on_ray

    if output is None:
        fail("--engine ray needs --output, the folder its shards go to")
    try:
        return tag_on_ray(input, output, fmt, options, plan, err, overwrite)
    except KeyboardInterrupt:
        fail(f"interrupted: the complete shards are in {output}; rerun the same command to tag the rest", 130)
    except HashtaggerError as e:
        fail(str(e))
