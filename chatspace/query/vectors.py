"""The selected runs' vectors, streamed shard by shard: memory holds one shard (plus what a caller keeps),
never the dataset. Rows are addressed by their position in the selection (runs in `select_runs`' order,
each run's shards in unit order), so a winner's text and provenance are read back only for the winners.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa

from chatspace.errors import ChatspaceError
from chatspace.store.reader import RunFilters, open_runs, to_numpy
from chatspace.store.root import OutputRoot
from chatspace.store.shards import read_shard

#: What a result row carries besides its score (read back for the winners only).
RESULT_COLUMNS = ("id", "dataset", "split", "text", "run_id")


@dataclass(frozen=True)
class ShardRef:
    path: PurePath
    rows: int
    start: int  # position of the shard's first row in the selection
    run: int  # index into Selection.runs


@dataclass
class Selection:
    """The runs a query reads: the root, each run's (manifest path, manifest) and every shard in order."""

    output: OutputRoot
    runs: list[tuple[PurePath, dict[str, Any]]]
    shards: list[ShardRef]

    @property
    def rows(self) -> int:
        return self.shards[-1].start + self.shards[-1].rows if self.shards else 0

    @property
    def dimension(self) -> int:
        m = self.runs[0][1]
        return int(m.get("model", {}).get("dimension") or m.get("config", {}).get("dimensions") or 0)

    def read(self, shard: ShardRef, columns: Sequence[str]) -> pa.Table:
        if not self.output.is_file(shard.path):
            raise ChatspaceError(
                f"{self.output.url(shard.path)} is listed in a manifest but missing; run `chatspace verify`"
            )
        table = read_shard(self.output, shard.path, columns=list(columns))
        if table.num_rows != shard.rows:
            raise ChatspaceError(
                f"{self.output.url(shard.path)} holds {table.num_rows} rows, its manifest says "
                f"{shard.rows}; run `chatspace verify`"
            )
        return table

    def blocks(self, shards: Sequence[ShardRef] | None = None) -> Iterator[tuple[ShardRef, np.ndarray]]:
        """(shard, unit-length float32 vectors) for each shard in order."""
        for shard in self.shards if shards is None else shards:
            _, vectors = to_numpy(self.read(shard, ["embedding"]))
            yield shard, unit_rows(vectors)

    def rows_at(self, positions: Sequence[int], columns: Sequence[str] = RESULT_COLUMNS) -> pa.Table:
        """The rows at these selection positions, in the order given (each shard read once)."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        starts = np.array([s.start for s in self.shards])
        which = np.searchsorted(starts, positions, side="right") - 1
        pieces, order = [], []
        for index in np.unique(which):
            shard = self.shards[index]
            picked = np.flatnonzero(which == index)
            table = self.read(shard, columns).take(pa.array(positions[picked] - shard.start))
            pieces.append(table)
            order.append(picked)
        table = pa.concat_tables(pieces)
        return table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


def select(root: str, model=None, dataset=None, split=None, **filters: RunFilters) -> Selection:
    """The runs under `root` that match (the same rules and errors as `load_embeddings`)."""
    output, runs = open_runs(root, model, dataset, split, filters)
    shards, start = [], 0
    for run, (_, _, run_shards) in enumerate(runs):
        for path, rows in run_shards:
            shards.append(ShardRef(path, rows, start, run))
            start += rows
    return Selection(output, [(p, m) for p, m, _ in runs], shards)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine similarity becomes a dot product); zero rows stay zero."""
    vectors = np.array(vectors, dtype=np.float32, copy=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def exact_top_k(
    selection: Selection,
    queries: np.ndarray,
    k: int,
    shards: Sequence[ShardRef] | None = None,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions), each [queries, k'] with k' = min(k, rows), best first: cosine similarity
    against every row (of `shards`, default all), one shard at a time, keeping the running top k."""
    queries = unit_rows(queries)
    n_queries = len(queries)
    best_scores = np.full((n_queries, 0), -np.inf, dtype=np.float32)
    best_positions = np.zeros((n_queries, 0), dtype=np.int64)
    for shard, vectors in selection.blocks(shards):
        scores = queries @ vectors.T  # [queries, shard rows]
        positions = np.broadcast_to(np.arange(shard.start, shard.start + shard.rows), scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        positions = np.concatenate([best_positions, positions], axis=1)
        if scores.shape[1] > k:
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, keep, axis=1)
            positions = np.take_along_axis(positions, keep, axis=1)
        best_scores, best_positions = scores, positions
        if progress is not None:
            progress(shard.rows)
    if best_scores.size:
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_positions = np.take_along_axis(best_positions, order, axis=1)
    return best_scores, best_positions
