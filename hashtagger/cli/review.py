"""`hashtagger review`: a tag run's output as an HTML sheet to review; or, with --sidecars, a reviewed CSV's
hashtags written next to each image."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from hashtagger.cli.app import err, fail
from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say


def review(
    source: Path = typer.Argument(
        ...,
        metavar="OUTPUT",
        help="A tag run's output (JSON, JSONL, CSV, Parquet, or a --engine ray folder); with --sidecars, the CSV "
        "saved from the sheet.",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="The sheet to write (HTML)."),
    posts: Path | None = typer.Option(
        None, help="The posts the run tagged (the INPUT given to tag); a Ray output folder names its own."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing sheet."),
    page_size: int = typer.Option(50, min=1, help="Posts per page of the sheet."),
    thumb_size: int = typer.Option(128, min=16, max=512, help="Thumbnails' longest side, pixels."),
    sidecars: Literal["skip", "overwrite", "append"] | None = typer.Option(
        None,
        help="Write each post's hashtags of the CSV OUTPUT to <image stem>.tags beside its image (the file train "
        "reads hashtags from); an existing one is kept (skip), replaced (overwrite) or extended (append).",
    ),
    image_column: str = typer.Option("image", help="CSV column with the image path (relative to the CSV's folder)."),
    caption_column: str = typer.Option("caption", help="CSV column with the caption."),
    id_column: str | None = typer.Option(
        None, help="CSV column with the post id (default: post_id or id when present, else the image path)."
    ),
) -> None:
    """Review suggestions in one HTML file (no server), and save what you accept as a training CSV."""
    from hashtagger.data.posts import CsvColumns

    columns = CsvColumns(image=image_column, caption=caption_column, id=id_column)
    if sidecars is not None:
        if output is not None:
            fail("--sidecars writes beside the images and takes no --output")
        _sidecars(source, sidecars, columns)
        return
    if output is None:
        fail("name the sheet to write: -o sheet.html")
    from hashtagger.review.sheet import SheetOptions, build_sheet

    options = SheetOptions(posts, columns, page_size, thumb_size, overwrite=overwrite)
    try:
        summary = build_sheet(source, output, options, err)
    except HashtaggerError as e:
        fail(str(e))
    say(
        err,
        f"{summary.path}: {summary.posts:,} posts ({summary.skipped:,} skipped), {summary.thumbnails:,} thumbnails, "
        f"{summary.no_thumbnail:,} without one, {summary.bytes:,} bytes; open it in a browser",
    )


def _sidecars(source: Path, policy: str, columns) -> None:
    from hashtagger.tagging.sidecars import sidecars_from

    try:
        counts = sidecars_from(source, policy, columns)
    except HashtaggerError as e:
        fail(str(e))
    done = ", ".join(f"{outcome} {n:,}" for outcome, n in counts.most_common()) or "nothing to write"
    say(err, f"sidecars (.tags) from {source}: {done}")
