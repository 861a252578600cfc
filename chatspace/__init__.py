"""chatspace: sample a dataset reproducibly, embed it on every device, keep vectors with provenance.

Importing the package is cheap: heavy libraries (torch, transformers, datasets) load only where used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_embeddings",
    "list_runs",
    "connect",
    "sql",
    "search",
    "near_duplicates",
    "cluster",
]


def __getattr__(name: str):
    # Lazy so `import chatspace` stays light for the CLI.
    if name in ("load_embeddings", "list_runs"):
        from chatspace.store import reader

        return getattr(reader, name)
    if name in ("connect", "sql"):
        from chatspace.store import sql

        return getattr(sql, name)
    if name in ("search", "near_duplicates", "cluster"):
        from chatspace.query import api

        return getattr(api, name)
    raise AttributeError(name)
