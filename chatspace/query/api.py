"""The Python entry points, loaded lazily by `chatspace.__getattr__`: search, near_duplicates, cluster."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from chatspace.errors import UsageError
from chatspace.query.duplicates import choose_keep, find_pairs, group_pairs, groups_table, summarize
from chatspace.query.search import search
from chatspace.query.vectors import select

__all__ = ["search", "near_duplicates", "cluster"]
log = logging.getLogger(__name__)


def near_duplicates(
    root: str,
    threshold: float = 0.95,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    k: int = 16,
    keep: str | None = None,
    output: str | Path | None = None,
    keep_output: str | Path | None = None,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    **filters: Any,
) -> tuple[pa.Table, dict[str, Any]]:
    """Groups of near-duplicate rows (cosine similarity >= `threshold` to another row of the group),
    within and across the selected runs, through each row's `k` nearest neighbours.

    Returns (groups, summary): one row per row that has a near-duplicate (id, group, nearest_id,
    similarity, dataset, split, run_id, text_chars, and `keep` with `keep="first"|"longest"`), and
    counts plus the biggest groups. `output` writes the groups as Parquet; with `keep`, `keep_output`
    (default: beside `output`, `-keep.parquet`) lists the id of every row to keep: rows in no group and
    one row per group.
    """
    if not 0 < threshold <= 1:
        raise UsageError(f"threshold must be in (0, 1], not {threshold}")
    if k <= 0:
        raise UsageError(f"k must be positive, not {k}")
    selection = select(root, model, dataset, split, **filters)
    a, b, similarity = find_pairs(selection, threshold, k, notify or log.warning, progress)
    dups = group_pairs(a, b, similarity)
    if keep is not None:
        lengths = np.array(
            [len(t or "") for t in selection.rows_at(dups.positions, ["text"]).column("text").to_pylist()]
        )
        dups.keep = choose_keep(dups, keep, lengths)
    table = groups_table(selection, dups)
    summary = summarize(selection, dups, table)
    if output is not None:
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        summary["output"] = str(output)
    if keep is not None and (keep_output or output):
        keep_output = keep_output or _beside(output, "-keep.parquet")
        summary["kept_rows"] = _write_keep(selection, dups, keep_output)
        summary["keep_output"] = str(keep_output)
    return table, summary


def _beside(path: str | Path, suffix: str) -> Path:
    p = Path(path)
    return p.with_name(p.name.removesuffix(".parquet") + suffix)


def _write_keep(selection, dups, path: str | Path) -> int:
    """The ids of every row to keep, shard by shard (memory: one shard's ids)."""
    import pyarrow.parquet as pq

    dropped = np.sort(dups.positions[~dups.keep])
    kept = 0
    with pq.ParquetWriter(str(path), pa.schema([("id", pa.string())])) as writer:
        for shard in selection.shards:
            ids = selection.read(shard, ["id"]).column("id")
            positions = np.arange(shard.start, shard.start + shard.rows)
            mask = ~np.isin(positions, dropped, assume_unique=True)
            table = pa.table({"id": ids.filter(pa.array(mask))})
            writer.write_table(table)
            kept += table.num_rows
    return kept


def cluster(
    root: str,
    k: int,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    output: str | Path,
    iterations: int = 20,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """k-means clusters of the selected runs' rows, labelled by their most distinctive terms (c-TF-IDF).

    Writes `output` (Parquet: id, cluster, label, similarity to the centre, dataset, run_id, one row per
    row) and a sidecar JSON beside it (each cluster's size, label and top terms), which it returns.
    """
    import orjson

    from chatspace.query.topics import ClusterParams, sidecar_path
    from chatspace.query.topics import cluster as run_clustering

    selection = select(root, model, dataset, split, **filters)
    info = run_clustering(selection, ClusterParams(k, iterations, seed), output, progress)
    sidecar = sidecar_path(output)
    sidecar.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return {**info, "output": str(output), "sidecar": str(sidecar)}
