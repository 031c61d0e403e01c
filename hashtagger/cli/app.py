"""The typer app every command module registers on, and the helpers they share: one-line failures, the
missing-extra check. A HashtaggerError is shown as one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from hashtagger.errors import HashtaggerError
from hashtagger.io.extras import require

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Recommend hashtags for image + caption posts.")
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)  # "[train]" is no markup
    raise typer.Exit(code)


def without_option(argv: list[str], name: str) -> list[str]:
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
