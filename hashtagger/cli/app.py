"""The typer app every command module registers on, and the helpers they share: one-line failures, the
missing-extra check. A HashtaggerError is shown as one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from hashtagger.errors import DataError, HashtaggerError
from hashtagger.io.config import as_option, config_path, read_config
from hashtagger.io.console import say
from hashtagger.io.extras import require
from hashtagger.version import __version__

app = typer.Typer(add_completion=True, no_args_is_help=True, help="Recommend hashtags for image + caption posts.")
err = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        print(f"hashtagger {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Recommend hashtags for image + caption posts. Option defaults: ./hashtagger.toml, else
    ~/.config/hashtagger/config.toml, a [command] table each (flags win)."""
    try:
        ctx.default_map = config_defaults(ctx.command)
    except HashtaggerError as e:
        fail(str(e))


def config_defaults(group: Any) -> dict[str, dict[str, Any]] | None:
    """The config file's tables as click's default_map: each command's options (named by their flags, e.g.
    top-k or top_k, format) with the file's values; an unknown command or option is a one-line error naming the
    file."""
    path = config_path()
    if path is None:
        return None
    defaults: dict[str, dict[str, Any]] = {}
    for command, table in read_config(path).items():
        sub = group.commands.get(command)
        if sub is None:
            raise DataError(f"{path}: no command '{command}' (commands: {', '.join(group.commands)})")
        flags = {
            flag.lstrip("-").replace("-", "_"): p.name
            for p in sub.params
            if p.param_type_name == "option"
            for flag in p.opts
            if flag.startswith("--")
        }
        unknown = sorted(set(table) - set(flags))
        if unknown:
            names = ", ".join(f.replace("_", "-") for f in flags if f != "help")
            raise DataError(f"{path}: [{command}] has no option {', '.join(unknown)} (options: {names})")
        paths = path_options(command)
        defaults[command] = {
            flags[key]: as_option(value, path.parent, flags[key] in paths) for key, value in table.items()
        }
    return defaults


def path_options(command: str) -> set[str]:
    """The parameters of `command` that take a path (from its function's annotations)."""
    for info in app.registered_commands:
        function = info.callback
        if function is not None and (info.name or function.__name__.replace("_", "-")) == command:
            hints = typing.get_type_hints(function)
            return {name for name, hint in hints.items() if Path in (hint, *typing.get_args(hint))}
    return set()


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
