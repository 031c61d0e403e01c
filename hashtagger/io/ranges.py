"""Numeric ranges of a command's options, in one table that typer's min / max and the library's check both read:
`typer.Option(18, min=RANGES["batch_size"].min, max=RANGES["batch_size"].max)` on the CLI, and
`check_ranges(RANGES, values)` in the library."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hashtagger.errors import DataError


@dataclass(frozen=True)
class Range:
    min: float | None = None
    max: float | None = None

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.max is None:
            return f"at least {self.min:g}"
        return f"at most {self.max:g}" if self.min is None else f"between {self.min:g} and {self.max:g}"


def check_ranges(ranges: Mapping[str, Range], values: Mapping[str, Any]) -> None:
    """DataError naming the flag (--batch-size for batch_size) of the first value outside its range; None is unset."""
    for name, allowed in ranges.items():
        value = values.get(name)
        if value is not None and not allowed.holds(value):
            raise DataError(f"--{name.replace('_', '-')} must be {allowed.describe()}, not {value}")
