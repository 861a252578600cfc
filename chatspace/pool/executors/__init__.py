"""Executors by name, imported only when chosen (Ray is a heavy, optional dependency)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chatspace.errors import UsageError

if TYPE_CHECKING:
    from chatspace.pool.executors.base import Executor

EXECUTORS = {
    "local": ("chatspace.pool.executors.local", "LocalExecutor"),
    "ray": ("chatspace.pool.executors.ray", "RayExecutor"),
}


def get_executor_class(name: str) -> type[Executor]:
    """The executor class called `name` (--executor); its module is imported now, not before."""
    try:
        module, attr = EXECUTORS[name]
    except KeyError:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, not {name!r}") from None
    return getattr(importlib.import_module(module), attr)
