"""`evaluate`'s report: the `Report` record (written as JSON), its tables on the console (metrics, differences
with intervals, thresholded F1) and the plot in the style of the paper's Figure 3."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from hashtagger.data.posts import CsvColumns, posts_input, table_images
from hashtagger.errors import OutputError
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.metrics import metrics_table
from hashtagger.io.claims import Claim, Reads, claim_output
from hashtagger.io.files import atomic_write

DEFINITIONS = {
    "precision": "correct recommended hashtags / recommended hashtags, summed over all posts",
    "recall": "correct recommended hashtags / true hashtags, summed over all posts",
    "f1": "harmonic mean of precision and recall",
    "accuracy": "share of posts with at least one correct hashtag among the k recommended",
    "differences": "F1@k of system - F1@k of baseline on the same posts: [difference, low, high], the 95% "
    "bootstrap interval over images (posts sharing an image are drawn together)",
    "thresholded": "every hashtag at or above its cut-off (not a top k): micro precision, recall and F1, with the "
    "bundle's global threshold and with its per-hashtag thresholds (the global one where none was tuned)",
}


@dataclass
class Report:
    data: str
    split: str  # val | test | all
    model: str  # the bundle or checkpoint folder
    backend: str  # onnx | pytorch
    device: str  # the ONNX Runtime provider or the torch device
    ks: list[int]
    posts: int  # posts evaluated
    oov_posts: int  # of those, posts whose true hashtags are all outside the vocabulary (misses)
    true_hashtags: int  # recall's denominator
    vocab_size: int
    skipped: dict[str, int]  # reason -> posts not evaluated
    systems: dict[str, dict[int, dict[str, float]]]  # system -> k -> metric -> value
    missing_test_images: int = 0  # split test: images of the stored test split not found in DATA
    arch: str = "lxmert"  # the model's architecture (archs.py)
    vocab_id: str = ""  # identity of the hashtag vocabulary: systems compare directly only when equal
    posts_id: str = ""  # identity of the evaluated posts (images and texts)
    notes: list[str] = field(default_factory=list)  # shown under the table (e.g. --compare's vocabularies)
    # [{"system", "baseline", "f1": {k: [difference, low, high]}}], see DIFFERENCES
    differences: list[dict] = field(default_factory=list)
    images: int = 0  # distinct images of the evaluated posts: the bootstrap's units
    resamples: int = intervals.RESAMPLES
    # {"global": {"threshold", "precision", "recall", "f1", "hashtags_per_post"}, "per-hashtag": {... "tuned"}}
    thresholded: dict[str, dict] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))


def skipped_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in skipped.items() if n) or "none"


def report_table(report: Report) -> Table:
    """The metrics of every system at every k, with the post counts underneath."""
    table = metrics_table(
        f"{report.split} split of {report.data}: {report.posts} posts ({report.backend}, {report.device})",
        report.systems,
    )
    notes = [
        f"{report.oov_posts} posts with every true hashtag outside the {report.vocab_size}-hashtag vocabulary "
        "(counted as misses)",
        f"skipped: {skipped_text(report.skipped)}",
    ]
    if report.missing_test_images:
        notes.append(f"{report.missing_test_images} {report.split}-split images not found in the data")
    notes += report.notes
    table.caption = "\n".join(notes)
    return table


def differences_table(report: Report) -> Table | None:
    """The F1@k differences with their bootstrap intervals (None when no pair of systems was scored)."""
    if not report.differences:
        return None
    table = Table(title="F1@k differences on the same posts, 95% bootstrap interval over images", title_justify="left")
    table.add_column("system - baseline")
    for k in report.ks:
        table.add_column(f"ΔF1@{k}", justify="right")
    for row in report.differences:
        cells = (row["f1"][k] for k in report.ks)
        table.add_row(
            f"{row['system']} - {row['baseline']}", *(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in cells)
        )
    table.caption = (
        f"{report.resamples} resamples of the {report.images} images (all of an image's posts drawn together); "
        "an interval that excludes 0 is a difference the posts support"
    )
    return table


def thresholded_table(report: Report) -> Table | None:
    """The F1 of the thresholded output (every hashtag at or above its cut-off), global vs per-hashtag."""
    if not report.thresholded:
        return None
    table = Table(title="thresholded output (every hashtag at or above its cut-off)", title_justify="left")
    for column in ("thresholds", "precision", "recall", "F1", "hashtags / post"):
        table.add_column(column, justify="left" if column == "thresholds" else "right")
    for name, row in report.thresholded.items():
        label = f"global {row['threshold']:.2f}" if name == "global" else f"per hashtag ({row['tuned']} tuned)"
        table.add_row(
            label, *(f"{row[m]:.3f}" for m in ("precision", "recall", "f1")), f"{row['hashtags_per_post']:.2f}"
        )
    return table


@dataclass
class Outputs:
    """evaluate's claimed files: the JSON report and the PNG plot (None: not asked for)."""

    report: Claim | None = None
    plot: Claim | None = None


@contextmanager
def claim_outputs(
    report: Path | None,
    plot: Path | None,
    overwrite: bool = False,
    data: str | Path | None = None,
    models: list[str | Path | None] | None = None,
    columns: CsvColumns | None = None,
) -> Iterator[Outputs]:
    """--report and --plot claimed before the evaluation: never DATA (a CSV and the images it names, read with
    `columns`, or a folder's images and captions) nor a file of the models, an existing file only with
    `overwrite`, JSON into *.json and a PNG into *.png, their folders writable."""
    inputs: list[Path | Reads] = [Reads(Path(m)) for m in models or [] if m is not None]
    # Without DATA, the evaluation reads the posts the model records it was trained on.
    for source in [data] if data is not None else [recorded_data(Path(m)) for m in models or [] if m is not None]:
        if source is not None:
            inputs += [posts_input(source), *table_images(source, columns)]
    if report is not None and plot is not None and report.absolute() == plot.absolute():
        raise OutputError(f"--report and --plot both name {report}; give each its own file")
    with ExitStack() as stack:

        def claim(path: Path | None, suffix: str, what: str) -> Claim | None:
            if path is None:
                return None
            return stack.enter_context(
                claim_output(path, overwrite=overwrite, resumable=False, inputs=inputs, suffixes=(suffix,), what=what)
            )

        yield Outputs(claim(report, ".json", "--report is written as JSON"), claim(plot, ".png", "--plot draws a PNG"))


def recorded_data(model: Path) -> str | None:
    """The training data a bundle (bundle.json) or a checkpoint, run or runs folder (hashtagger.json) records, as
    `evaluate` reads it when no DATA is given; None where there is none to read."""
    places = [("bundle.json", "training"), ("hashtagger.json", "args"), ("best/hashtagger.json", "args")]
    for name, section in places:
        try:
            recorded = json.loads((model / name).read_text()).get(section, {}).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        return recorded if isinstance(recorded, str) else None
    return None


def report_json(report: Any) -> bytes:
    """A report dataclass (Report, UnseenReport) as the JSON --report writes."""
    return json.dumps(asdict(report), indent=1).encode()


def write_report(report: Report, path: str | Path) -> Path:
    return atomic_write(path, report_json(report))


def plot(report: Report, path: str | Path) -> Path:
    """PNG in the style of the paper's Figure 3 (plot_png), written to `path`."""
    return atomic_write(path, plot_png(report))


def plot_png(report: Report) -> bytes:
    """PNG in the style of the paper's Figure 3: a panel per metric, k on the x axis, a line per system."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(metrics.METRICS), 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    axes = fig.subplots(1, len(metrics.METRICS))
    markers = "osD^v<>"
    for ax, metric in zip(axes, metrics.METRICS, strict=True):
        for n, (name, by_k) in enumerate(report.systems.items()):
            ks = sorted(by_k)
            ax.plot(ks, [by_k[k][metric] for k in ks], marker=markers[n % len(markers)], label=name)
        ax.set_title("F1" if metric == "f1" else metric.capitalize())
        ax.set_xlabel("k")
        ax.set_xticks(report.ks)
        ax.set_ylim(0, min(1.0, max(0.05, ax.get_ylim()[1] * 1.05)))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"{report.split} split of {Path(report.data).name}: {report.posts} posts ({report.backend})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
