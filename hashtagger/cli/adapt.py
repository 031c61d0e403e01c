"""`hashtagger adapt`: a bundle whose wide part has learnt from accepted hashtags."""

from __future__ import annotations

from pathlib import Path

import typer

from hashtagger.cli.app import err, fail, need
from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say


def adapt(
    model: Path = typer.Argument(..., help="The bundle to adapt (exported/)."),
    accepted: Path = typer.Argument(..., help="Accepted posts: a folder or CSV (image, caption, hashtags)."),
    output: Path = typer.Option(..., "--output", "-o", help="The adapted bundle to write (a new folder or a bundle)."),
    data: Path | None = typer.Option(None, help="Where the model's training data now lives."),
    force: bool = typer.Option(False, "--force", help="Replace --output even if it is not a bundle."),
) -> None:
    """Refit the bundle's wide part on its training split plus the accepted posts (new hashtags included), with
    no torch; the old hashtags' validation F1@2 before and after is printed."""
    need("train", "adapt")  # scikit-learn fits the wide part
    from hashtagger.evaluation.adapt import adapt as run_adapt

    try:
        result = run_adapt(model, accepted, output, str(data) if data else None, console=err, force=force)
    except HashtaggerError as e:
        fail(str(e))
    fit = result.fit
    err.print(
        f"adapted on {result.accepted} accepted posts ({len(result.new_tags)} new hashtags) in {result.seconds:.0f} s; "
        f"validation F1@2 of the old hashtags: {fit.val_before:.3f} before, {fit.grid[fit.part.weight]:.3f} after",
        highlight=False,
    )
    say(err, f"bundle written to {output}")
