"""The typer app every command module registers on, and the helpers they share: one-line failures, the
missing-extra check. A HashtaggerError is shown as one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from hashtagger.errors import HashtaggerError
from hashtagger.io.console import say
from hashtagger.io.extras import require

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Recommend hashtags for image + caption posts.")
err = Console(stderr=True)


class HelpAsWritten(TyperCommand):
    """A command whose --help shows its help strings as written. Typer reads them as rich markup, where
    "[ray]" or "[default: 32 on the CPU, 256 on a GPU]" would vanish: they are escaped while the help is drawn
    (and only then: shell completion shows the strings themselves)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own click types
        texts = [(p, str(p.help)) for p in self.params if getattr(p, "help", None)]  # type: ignore[attr-defined]
        own = self.help
        try:
            for param, text in texts:
                param.help = escape(text)  # type: ignore[attr-defined]
            self.help = escape(own) if own else own
            super().format_help(ctx, formatter)
        finally:
            for param, text in texts:
                param.help = text  # type: ignore[attr-defined]
            self.help = own


def fail(message: str, code: int = 1) -> NoReturn:
    say(err, message, "error")
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
