"""Near-duplicate rows, found through an ANN index (each row's k nearest neighbours), never all pairs.

Every row of the selected runs is looked up in every run's index (the run's own fresh `chatspace index`
when it has one, else one built in memory for the call), so duplicates are found within and across
runs. Pairs at or above the threshold join rows into groups (connected components). As semantic dedup
(SemDeDup) does, `keep` then keeps one row per group (the first, or the longest text) and drops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from chatspace.errors import UsageError
from chatspace.query import ann
from chatspace.query.vectors import Selection

KEEP_RULES = ("first", "longest")
#: Below this many rows a temporary index is an exact flat scan; above, an HNSW graph.
FLAT_UP_TO = 20_000


@dataclass
class Duplicates:
    """Rows in groups (selection positions), their group, nearest neighbour in the group and its score."""

    positions: np.ndarray
    groups: np.ndarray
    nearest: np.ndarray
    similarity: np.ndarray
    keep: np.ndarray | None = None  # per row in a group: the one its group keeps
    summary: dict[str, Any] = field(default_factory=dict)


def _indexes(selection: Selection, notify) -> list[tuple[int, ann.LoadedIndex]]:
    """(first position, index) per run: its own fresh float index, else a temporary one."""
    faiss = ann.require_faiss()
    out = []
    for run, (manifest_path, manifest) in enumerate(selection.runs):
        shards = [s for s in selection.shards if s.run == run]
        if not shards:
            continue
        rows = sum(s.rows for s in shards)
        index, why_not = ann.load(selection.output, manifest_path, manifest)
        if why_not:
            notify(f"{why_not}: building a temporary index instead")
        if index is None or index.params.quantize == "binary":
            params = ann.IndexParams(kind="flat" if rows <= FLAT_UP_TO else "hnsw").resolved(rows)
            built = ann.build(faiss, params, selection.dimension, rows, lambda s=shards: selection.blocks(s))
            index = ann.LoadedIndex(built, {}, params)
        out.append((shards[0].start, index))
    return out


def find_pairs(
    selection: Selection, threshold: float, k: int, notify, progress=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, similarity) of every pair a < b among each row's k nearest with similarity >= threshold."""
    indexes = _indexes(selection, notify)
    found_a, found_b, found_s = [], [], []
    for shard, vectors in selection.blocks():
        own = np.arange(shard.start, shard.start + shard.rows)
        for start, index in indexes:
            scores, labels = index.search(vectors, k + 1)
            neighbours = np.where(labels >= 0, labels + start, -1)
            hit = (scores >= threshold) & (neighbours >= 0) & (neighbours != own[:, None])
            rows, cols = np.nonzero(hit)
            a, b = own[rows], neighbours[rows, cols]
            found_a.append(np.minimum(a, b))
            found_b.append(np.maximum(a, b))
            found_s.append(scores[rows, cols].astype(np.float32))
        if progress is not None:
            progress(shard.rows)
    if not found_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a, b, s = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)
    pairs, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
    return pairs[:, 0], pairs[:, 1], s[first]


def group_pairs(a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> Duplicates:
    """Connected components of the pairs; groups numbered from 0 by size (largest first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    positions = np.unique(np.concatenate([a, b]))
    if not len(positions):
        empty = np.zeros(0, np.int64)
        return Duplicates(empty, empty, empty, np.zeros(0, np.float32))
    ia, ib = np.searchsorted(positions, a), np.searchsorted(positions, b)
    n = len(positions)
    graph = coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    # Largest first, ties by the group's first row.
    first_row = np.full(len(sizes), np.iinfo(np.int64).max)
    np.minimum.at(first_row, labels, positions)
    order = np.lexsort((first_row, -sizes))
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    # Each row's nearest neighbour: its best-scoring pair, either way round.
    xs, ys = np.concatenate([ia, ib]), np.concatenate([ib, ia])
    scores = np.concatenate([similarity, similarity])
    order = np.lexsort((-scores, xs))
    first = np.ones(len(order), dtype=bool)
    first[1:] = xs[order][1:] != xs[order][:-1]
    chosen = order[first]
    best = np.zeros(n, dtype=np.float32)
    nearest = np.zeros(n, dtype=np.int64)
    best[xs[chosen]] = scores[chosen]
    nearest[xs[chosen]] = positions[ys[chosen]]
    return Duplicates(positions, renumber[labels], nearest, best)


def choose_keep(dups: Duplicates, rule: str, lengths: np.ndarray) -> np.ndarray:
    """Per row in a group: True for the one row its group keeps (`first` position, or `longest` text)."""
    if rule not in KEEP_RULES:
        raise UsageError(f"--keep {rule!r}: one of {', '.join(KEEP_RULES)}")
    key = dups.positions if rule == "first" else -lengths.astype(np.int64)
    order = np.lexsort((dups.positions, key, dups.groups))
    keep = np.zeros(len(dups.positions), dtype=bool)
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = dups.groups[order][1:] != dups.groups[order][:-1]
    keep[order[first_of_group]] = True
    return keep


def groups_table(selection: Selection, dups: Duplicates) -> pa.Table:
    """One row per row in a group: id, group, nearest_id, similarity, and where it comes from."""
    rows = selection.rows_at(dups.positions, ["id", "dataset", "split", "run_id", "text"])
    nearest_ids = selection.rows_at(dups.nearest, ["id"]).column("id")
    columns = {
        "id": rows.column("id"),
        "group": pa.array(dups.groups, pa.int64()),
        "nearest_id": nearest_ids,
        "similarity": pa.array(dups.similarity, pa.float32()),
        "dataset": rows.column("dataset"),
        "split": rows.column("split"),
        "run_id": rows.column("run_id"),
        "text_chars": pa.array([len(t or "") for t in rows.column("text").to_pylist()], pa.int64()),
    }
    if dups.keep is not None:
        columns["keep"] = pa.array(dups.keep)
    order = np.lexsort((dups.positions, dups.groups))
    return pa.table(columns).take(pa.array(order))


def summarize(selection: Selection, dups: Duplicates, table: pa.Table, biggest: int = 5) -> dict[str, Any]:
    n_groups = int(dups.groups.max()) + 1 if len(dups.groups) else 0
    summary: dict[str, Any] = {
        "rows": selection.rows,
        "groups": n_groups,
        "rows_in_groups": len(dups.positions),
        "rows_to_drop": len(dups.positions) - n_groups,
        "biggest": [],
    }
    for group in range(min(biggest, n_groups)):
        members = np.flatnonzero(dups.groups == group)
        first = dups.positions[members].min()
        text = selection.rows_at([first], ["text"]).column("text")[0].as_py()
        summary["biggest"].append(
            {
                "group": group,
                "rows": len(members),
                "min_similarity": float(dups.similarity[members].min()),
                "text": text,
            }
        )
    return summary
