"""Dataclasses from JSON-ready dicts: the inverse of dataclasses.asdict, for configs stored in JSON.

Nested dataclasses are rebuilt and JSON lists become tuples where the field is a tuple; unknown keys
raise TypeError, as the dataclass itself would.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls(**data)`, with each value converted to its field's declared type where JSON lost it."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: _convert(hints.get(k), v) for k, v in data.items()})


def _convert(tp: Any, value: Any) -> Any:
    if tp is None or value is None:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(arms[0], value) if len(arms) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        return from_dict(tp, value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value
