"""The user's option defaults: `hashtagger.toml` in the current folder, else `~/.config/hashtagger/config.toml`
($XDG_CONFIG_HOME), one table per command, keys named like its options. No torch.

    [tag]
    model = "~/models/my-bundle"
    top-k = 3                  # or top_k
    exclude = ["sandy", "nyc"] # a list, or "sandy,nyc"
    keep-own = true

Flags on the command line win over the file; the file wins over the built-in defaults. Relative paths in the
file are relative to the file's folder (a `~` is expanded), so one config works from any folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hashtagger.errors import DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10: the tomli backport, a core dependency there)
    import tomli as tomllib

LOCAL = "hashtagger.toml"


def config_path(cwd: Path | None = None) -> Path | None:
    """The config file in effect: ./hashtagger.toml, else the user's; None when there is neither."""
    local = (cwd or Path.cwd()) / LOCAL
    if local.is_file():
        return local
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = home / "hashtagger" / "config.toml"
    return user if user.is_file() else None


def read_config(path: Path) -> dict[str, dict[str, Any]]:
    """{command: {option name (dashes as underscores): value}}; DataError for a file that is not TOML or whose
    top level holds anything but tables."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise DataError(f"cannot read the config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"the config file {path} is not valid TOML: {e}") from None
    tables: dict[str, dict[str, Any]] = {}
    for command, table in data.items():
        if not isinstance(table, dict):
            raise DataError(f"{path}: '{command}' should be a table of options, e.g. [tag] with top-k = 3")
        tables[command] = {key.replace("-", "_"): value for key, value in table.items()}
    return tables


def as_option(value: Any, folder: Path, is_path: bool) -> Any:
    """A config value as the command line would give it: lists joined with commas, paths made absolute against
    the config file's folder."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if is_path and isinstance(value, str):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else folder / path)
    return value
