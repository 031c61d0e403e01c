"""`hashtagger evaluate`: the paper's top-k metrics for a model, its ablations and baselines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from hashtagger.bundle.locate import EVALUATE_MODEL_HELP
from hashtagger.cli.app import err, fail, need
from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say

if TYPE_CHECKING:
    from hashtagger.evaluation.options import EvaluateOptions
    from hashtagger.evaluation.report import Outputs


def evaluate(
    data: Path | None = typer.Argument(
        None,
        help="Posts (folder or CSV). --split test or val: the training data (default: the path the model records); "
        "--split all: any posts with hashtags.",
    ),
    model: Path | None = typer.Option(None, help=EVALUATE_MODEL_HELP),
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
    report: Path | None = typer.Option(None, help="Write the metrics as JSON to this file (*.json)."),
    plot: Path | None = typer.Option(
        None, help="Write a PNG (*.png): one panel per metric, k on the x axis, one line per system."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --report or --plot."),
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
    new_match: str | None = typer.Option(
        None,
        "--new-match",
        help="With --unseen: also rank with each of these extra caption-match weights for new hashtags (e.g. "
        "0,2,4), a row each; choose on --split val, then export --new-match W.",
    ),
) -> None:
    """Precision, recall, F1 and accuracy at top-k: the model, text-only, image-only, TF-IDF and the frequency prior;
    bootstrap intervals for their F1 differences; the F1 of the bundle's thresholded output."""
    if checkpoint:
        need("train", "evaluate --checkpoint")
    if plot:
        need("explain", "evaluate --plot")  # matplotlib only; before the evaluation, not after it
    if unseen and (checkpoint is not None or plot is not None):
        fail("--unseen evaluates an exported bundle (--model) and writes no plot")
    if new_match is not None and not unseen:
        fail("--new-match goes with --unseen")
    weights = _weights(new_match) if new_match is not None else ()
    if compare and (model or checkpoint):
        fail("give --compare alone, or --model / --checkpoint, not both")
    from hashtagger.bundle.locate import find_model
    from hashtagger.data.posts import CsvColumns
    from hashtagger.evaluation.evaluate import COMPARE_KS, parse_ks
    from hashtagger.evaluation.options import EvaluateOptions
    from hashtagger.evaluation.report import claim_outputs

    columns = None
    if image_column or caption_column or hashtags_column:
        columns = CsvColumns(
            image=image_column or "image", caption=caption_column or "caption", hashtags=hashtags_column or "hashtags"
        )
    try:
        default_ks = ",".join(map(str, COMPARE_KS)) if compare else "1..5"
        options = EvaluateOptions(split, parse_ks(k or default_ks), device, batch_size, cache_dir, columns)
        models: list[str | Path | None] = [model, checkpoint, *(compare or [])]
        if not any(models):  # the default model, whose recorded training data is read when DATA is not given
            models = [find_model(None).path]
        # the outputs claimed before the evaluation: a run must not fail at its end
        with claim_outputs(report, plot, overwrite, data, models, columns) as outputs:
            if unseen:
                _unseen(data, model, options, outputs, weights)
            else:
                _evaluate(data, model, checkpoint, compare, options, outputs)
    except HashtaggerError as e:
        fail(str(e))


def _weights(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        weights = (math.nan,)
    if not all(math.isfinite(w) for w in weights):
        fail(f"--new-match takes numbers separated by commas (0,2,4), not '{text}'")
    return weights


def _unseen(
    data: Path | None, model: Path | None, options: EvaluateOptions, outputs: Outputs, weights: tuple[float, ...]
) -> None:
    from rich.console import Console as StdoutConsole

    from hashtagger.evaluation.unseen import evaluate_unseen, unseen_table

    result = evaluate_unseen(data, model, options, err, weights)
    StdoutConsole().print(unseen_table(result))
    _write(outputs, result)


def _write(outputs: Outputs, result: Any) -> None:
    """The claimed --report and --plot (a plot only of an evaluation's Report)."""
    from hashtagger.evaluation.report import plot_png, report_json
    from hashtagger.io.files import write_claimed

    if outputs.report:
        write_claimed(outputs.report, report_json(result))
        say(err, f"report written to {outputs.report.path}")
    if outputs.plot:
        write_claimed(outputs.plot, plot_png(result))
        say(err, f"plot written to {outputs.plot.path}")


def _evaluate(
    data: Path | None,
    model: Path | None,
    checkpoint: Path | None,
    compare: list[Path] | None,
    options: EvaluateOptions,
    outputs: Outputs,
) -> None:
    from rich.console import Console as StdoutConsole

    from hashtagger.evaluation.evaluate import compare as run_comparison
    from hashtagger.evaluation.evaluate import evaluate as run_evaluation
    from hashtagger.evaluation.report import differences_table, report_table, thresholded_table

    if compare:
        result = run_comparison(data, compare, options=options, console=err)
    else:
        result = run_evaluation(data, model=model, checkpoint=checkpoint, options=options, console=err)
    out = StdoutConsole()
    for table in (report_table(result), differences_table(result), thresholded_table(result)):
        if table is not None:
            out.print(table)
    _write(outputs, result)
