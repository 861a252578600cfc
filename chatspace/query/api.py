"""The Python entry points, loaded lazily by `chatspace.__getattr__`: search, near_duplicates, cluster."""

from __future__ import annotations

from chatspace.query.search import search

__all__ = ["search"]
