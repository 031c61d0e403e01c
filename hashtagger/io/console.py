"""What runs show on the console (stderr): `say`, the one way a message reaches it, the one progress-bar layout
every command uses, and the data-preparation table. No torch."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

LEVELS = {"": "", "warning": "[yellow]warning:[/yellow] ", "error": "[red]error:[/red] "}


def say(console: Console, message: str, level: str = "") -> None:
    """Print `message` exactly as written: paths, captions and bracketed words ("install the [gpu] extra",
    `out[v1].json`) are text, never rich markup; `level` ("warning", "error") adds its coloured prefix. Not
    highlighted, and not wrapped (a long path stays one line for copying)."""
    console.print(LEVELS[level] + escape(message), highlight=False, soft_wrap=True)


def plain(value: object) -> Text:
    """A table cell shown as written (a path with brackets is no markup)."""
    return Text(str(value))


def progress_bar(
    console: Console, *columns: ProgressColumn, transient: bool = False, disable: bool = False
) -> Progress:
    """description, bar, done/total, then `columns`, then the time remaining; `disable`: nothing drawn."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


def count(progress: Progress, task: TaskID, n: int = 1) -> None:
    """Advance `task` by n, noting when (for PostsPerSecond)."""
    progress.update(task, advance=n, counted_at=progress.get_time())


class PostsPerSecond(ProgressColumn):
    """Posts/s from the start to the last `count`: posts arrive a batch at a time, so an instant rate jumps, and
    an average up to now sinks while the next batch is scored. Steady between counts."""

    def render(self, task) -> Text:
        at = task.fields.get("counted_at")
        if at is None or task.start_time is None or not task.completed or at <= task.start_time:
            return Text("- posts/s", style="progress.data.speed")
        return Text(f"{task.completed / (at - task.start_time):,.1f} posts/s", style="progress.data.speed")


def preparation_table(rows: list[tuple[str, int]]) -> Table:
    """Posts loaded, then what each preparation rule dropped, then what remains."""
    table = Table(title="Data preparation")
    table.add_column("rule")
    table.add_column("posts", justify="right")
    remaining = rows[0][1]
    table.add_row(rows[0][0], str(rows[0][1]))
    for rule, dropped in rows[1:]:
        remaining -= dropped
        table.add_row(f"dropped: {rule}", str(dropped))
    table.add_row("[bold]remaining", f"[bold]{remaining}")
    return table


@contextmanager
def quiet_logger(name: str = "", level: int = logging.ERROR) -> Iterator[None]:
    """Records of the logger `name` (default: the root logger) below `level` left out for the block: a library's
    advice or tracebacks that would be stray lines beside this package's own message."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
