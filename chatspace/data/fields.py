"""Field names that reach inside a row: `meta.category`, `choices.0.turns`, `conversation.1.content`.

A name is first looked up as a column of its own (a column named "meta.category" wins when it exists);
otherwise it is a dotted path: the longest leading part that is a column, then one step per dot —
a key of a mapping (struct), or an integer index into a list (negative counts from the end).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MISSING = object()


class MissingField(LookupError):
    """The row has no value at this path."""


def columns_for(name: str) -> list[str]:
    """The top-level columns a lookup of `name` may need: the name itself and each dotted prefix."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(len(parts), 0, -1)]


def top_column(name: str, columns: Iterable[str]) -> str | None:
    """The column a lookup of `name` starts from, given the dataset's columns (None: none fits)."""
    cols = set(columns)
    return next((c for c in columns_for(name) if c in cols), None)


def lookup(row: dict, name: str) -> Any:
    """The value at `name` in `row`; raises MissingField when the path leads nowhere."""
    if name in row:
        return row[name]
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:k])
        if head in row:
            value = _walk(row[head], parts[k:])
            if value is _MISSING:
                raise MissingField(name)
            return value
    raise MissingField(name)


def _walk(value: Any, steps: list[str]) -> Any:
    for step in steps:
        if value is None:  # a null part-way down: the value is null, not missing
            return None
        if isinstance(value, dict):
            value = value.get(step, _MISSING)
        elif isinstance(value, list | tuple):
            try:
                value = value[int(step)]
            except (ValueError, IndexError):
                return _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return value
    return value
