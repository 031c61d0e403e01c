"""`hashtagger explain`: one post's top hashtags drawn with the regions and words they rest on."""

from __future__ import annotations

from pathlib import Path

import typer

from hashtagger.bundle.locate import MODEL_HELP
from hashtagger.cli.app import err, fail, need
from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say


def explain(
    image: Path = typer.Argument(..., help="The post's image."),
    caption_file: Path | None = typer.Argument(None, metavar="[CAPTION_FILE]", help="A text file with the caption."),
    caption: str | None = typer.Option(None, help="The caption as text (instead of CAPTION_FILE)."),
    model: Path | None = typer.Option(None, help=MODEL_HELP, show_default=False),
    output: Path = typer.Option(Path("why.png"), "--output", "-o", help="The picture to write (PNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output."),
    top_k: int = typer.Option(3, min=1, help="Hashtags to explain, one panel each."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    features_dir: Path | None = typer.Option(
        None, help="<image stem>.npz region features, for a model trained on precomputed features."
    ),
) -> None:
    """Draw why the post gets its top hashtags: a heat map over the image's regions, the caption's words shaded."""
    need("explain", "explain")
    from hashtagger.tagging.explain import ExplainOptions, explain_into

    try:
        options = ExplainOptions(
            model=model, top_k=top_k, device=device, features_dir=features_dir, overwrite=overwrite
        )
        explanations = explain_into(output, image, caption, caption_file, options)
    except HashtaggerError as e:
        fail(str(e))
    for why in explanations:
        top = ", ".join(w for w, v in sorted(why.words, key=lambda item: -item[1])[:3] if v > 0) or "-"
        share = why.image_share
        wide = f"; wide part: {', '.join(t for t, _ in why.wide_terms)}" if why.wide_terms else ""
        say(err, f"#{why.tag} {why.score:.3f}: image {share:.0%}, caption {1 - share:.0%}; words: {top}{wide}")
    say(err, f"explanation written to {output}")
