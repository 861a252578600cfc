"""`chatspace.search`: the rows nearest to some texts, by cosine similarity, in the runs under a root.

Each query is embedded by the run's own encoder with the model's query prompt (query_encoder.py). A run
with a fresh ANN index (ann.py) is searched through it; one without, or with a stale one, exactly, one
shard at a time (memory: one shard and k results per query). Results of several runs merge by score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from chatspace.errors import UsageError
from chatspace.query import ann
from chatspace.query.query_encoder import QueryEncoder
from chatspace.query.vectors import RESULT_COLUMNS, Selection, exact_top_k, select, unit_rows

log = logging.getLogger(__name__)
RESULT_FORMATS = ("pandas", "arrow", "polars")


def search(
    root: str,
    queries: str | Sequence[str],
    k: int = 10,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    prompt: str | None = None,
    prompt_name: str | None = None,
    exact: bool = False,
    nprobe: int | None = None,
    as_: str = "pandas",
    notify: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    **filters: Any,
) -> Any:
    """The `k` rows most similar to each query (a text or a list of texts) among the runs under `root`
        (a local path or `s3://...`), selected as `load_embeddings` selects them (model, dataset, split,
        subset, run_id, text_field, extract, run_name).

        One row per (query, rank): query, query_index, rank (1 = best), score (cosine similarity), id,
        dataset, split, text, run_id, and how it was found (`exact`, or the index kind). `prompt` /
        `prompt_name` override the query prompt (default: the model's `query` prompt where it has one).
        `exact=True` ignores indexes. `as_`: "pandas" (default), "arrow" or "polars". `progress(rows)` is
    called as exact search finishes each shard.
    """
    if as_ not in RESULT_FORMATS:
        raise UsageError(f"as_={as_!r} is not one of {', '.join(RESULT_FORMATS)}")
    texts = [queries] if isinstance(queries, str) else list(queries)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise UsageError("every query must be a non-empty text")
    if k <= 0:
        raise UsageError(f"k must be positive, not {k}")
    selection = select(root, model, dataset, split, **filters)
    encoder = QueryEncoder(selection.runs[0][1], prompt, prompt_name)
    try:
        vectors = encoder.encode(texts)
    finally:
        encoder.close()
    check_dimension(selection, vectors)
    scores, positions, methods = nearest(
        selection, vectors, k, exact=exact, nprobe=nprobe, notify=notify, progress=progress
    )
    table = result_table(selection, texts, scores, positions, methods)
    if as_ == "arrow":
        return table
    if as_ == "polars":
        import polars

        return polars.from_arrow(table)
    return table.to_pandas()


def check_dimension(selection: Selection, vectors: np.ndarray) -> None:
    if selection.dimension and vectors.shape[1] != selection.dimension:
        raise UsageError(
            f"the query vectors have {vectors.shape[1]} dimensions, the run's {selection.dimension}: "
            "the model on this machine is not the one the run used"
        )


def nearest(
    selection: Selection,
    vectors: np.ndarray,
    k: int,
    *,
    exact: bool = False,
    nprobe: int | None = None,
    notify: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, selection positions, method per result), each [queries, <= k], best first."""
    notify = notify or log.warning
    queries = unit_rows(vectors)
    found_scores, found_positions, found_methods = [], [], []
    for run, (manifest_path, manifest) in enumerate(selection.runs):
        shards = [s for s in selection.shards if s.run == run]
        if not shards:
            continue
        index, why_not = (
            (None, None) if exact else ann.load(selection.output, manifest_path, manifest, nprobe)
        )
        if why_not:
            notify(f"{why_not}: searching exactly instead; rebuild it with `chatspace index`")
        if index is None:
            scores, positions = exact_top_k(selection, queries, k, shards, progress)
            method = "exact"
        else:
            scores, positions = index_top_k(selection, index, queries, k, shards[0].start)
            method = index.params.kind + (
                "" if index.params.quantize == "none" else f"-{index.params.quantize}"
            )
        found_scores.append(scores)
        found_positions.append(positions)
        found_methods.append(np.full(scores.shape, method, dtype=object))
    scores = np.concatenate(found_scores, axis=1)
    positions = np.concatenate(found_positions, axis=1)
    methods = np.concatenate(found_methods, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (
        np.take_along_axis(scores, order, axis=1),
        np.take_along_axis(positions, order, axis=1),
        np.take_along_axis(methods, order, axis=1),
    )


def index_top_k(
    selection: Selection, index: ann.LoadedIndex, queries: np.ndarray, k: int, start: int
) -> tuple[np.ndarray, np.ndarray]:
    """Through a run's index; a binary index's candidates are re-scored with the stored vectors."""
    wanted = k * ann.BINARY_RERANK if index.params.quantize == "binary" else k
    scores, labels = index.search(queries, wanted)
    positions = np.where(labels >= 0, labels + start, -1)
    if index.params.quantize == "binary":
        scores = rescore(selection, queries, positions)
    scores = np.where(positions >= 0, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(positions, order, axis=1)


def rescore(selection: Selection, queries: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Exact cosine of each query with its candidate rows (read back from the shards)."""
    flat = np.unique(positions[positions >= 0])
    from chatspace.store.reader import to_numpy

    _, stored = to_numpy(selection.rows_at(flat, ["embedding"]))
    stored = unit_rows(stored)
    lookup = {int(p): i for i, p in enumerate(flat)}
    scores = np.full(positions.shape, -np.inf, dtype=np.float32)
    for q in range(len(queries)):
        for j, p in enumerate(positions[q]):
            if p >= 0:
                scores[q, j] = float(stored[lookup[int(p)]] @ queries[q])
    return scores


def result_table(
    selection: Selection,
    texts: list[str],
    scores: np.ndarray,
    positions: np.ndarray,
    methods: np.ndarray,
) -> pa.Table:
    valid = (positions >= 0) & np.isfinite(scores)
    query_index, rank = np.nonzero(valid)
    rows = selection.rows_at(positions[valid], RESULT_COLUMNS)
    return pa.table(
        {
            "query": pa.array([texts[i] for i in query_index], pa.string()),
            "query_index": pa.array(query_index, pa.int32()),
            "rank": pa.array(rank + 1, pa.int32()),
            "score": pa.array(scores[valid], pa.float32()),
            **{name: rows.column(name) for name in RESULT_COLUMNS},
            "found_by": pa.array(methods[valid].tolist(), pa.string()),
        }
    )
