"""`hashtagger export`: a checkpoint written as a self-contained ONNX bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from hashtagger.cli.app import err, fail, need
from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say


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
    wide: bool = typer.Option(
        False,
        "--wide",
        help="Also fit a wide part (TF-IDF + logistic regression over the caption, on the training split) and blend "
        "it with the model, its weight chosen on the validation split.",
    ),
    new_match: float = typer.Option(
        0.0,
        help="Name-head models: extra weight on the caption match of hashtags never seen in training, for "
        "tag --candidates (choose it on validation: evaluate --unseen --split val --new-match 0,2,4).",
    ),
    data: Path | None = typer.Option(
        None, help="Where the checkpoint's training data now lives (for the parity posts)."
    ),
    description: str | None = typer.Option(
        None,
        help="What the vocabulary was learnt from, shown in tag's summary as 'N hashtags of DESCRIPTION' "
        "(default: the posts in <training data's name>).",
    ),
) -> None:
    """Write a trained checkpoint as a self-contained ONNX bundle."""
    need("train", "export")
    from hashtagger.export.build import ExportOptions
    from hashtagger.export.build import export as run_export

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
                description=description,
                wide=wide,
                new_match=new_match,
            ),
            err,
        )
    except HashtaggerError as e:
        fail(str(e))
    say(err, f"bundle written to {path}")
