"""Reading chunk and turn rows back: one vector per source row from a `--long-text chunk` run, and
rows picked by a message's role or turn (`--extract each-turn`).

A chunk row's metadata holds `chunk = {index, count, char_start, char_end}`; a text's chunks are
consecutive rows of one shard. A turn row's metadata holds `turn = {index, role, count}`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import orjson
import pyarrow as pa

from chatspace.errors import UsageError

UNIT_NORM_TOLERANCE = 1e-3


def weighted_mean(vectors: np.ndarray, tokens: list[int], normalize: bool) -> np.ndarray:
    """The chunks' mean, each weighted by the tokens the model embedded for it (unit length if asked)."""
    weights = np.asarray(tokens, dtype=np.float64)
    vector = (vectors.astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
    if normalize:
        norm = np.linalg.norm(vector)
        vector = vector / norm if norm > 0 else vector
    return vector


def _metadata(table: pa.Table) -> list[dict]:
    if "metadata" not in table.column_names:
        raise UsageError("reading chunk or turn rows needs the `metadata` column")
    return [orjson.loads(m) if m else {} for m in table.column("metadata").to_pylist()]


def turn_mask(
    metadata: Iterable[str | dict | None], roles: Iterable[str] | None, turns: Iterable[int] | None
) -> np.ndarray:
    """Per row: a message with one of `roles` (user = human, assistant = gpt) and/or at one of the
    conversation indices `turns`; rows that are not messages are False when either is given."""
    from chatspace.config.data import normalise_role

    wanted_roles = {normalise_role(r) for r in roles} if roles is not None else None
    wanted_turns = {int(t) for t in turns} if turns is not None else None
    keep = []
    for m in metadata:
        m = orjson.loads(m) if isinstance(m, str) else (m or {})
        turn = m.get("turn")
        keep.append(
            isinstance(turn, dict)
            and (wanted_roles is None or turn.get("role") in wanted_roles)
            and (wanted_turns is None or turn.get("index") in wanted_turns)
        )
    return np.asarray(keep, dtype=bool)


def select_turns(table: pa.Table, roles: Iterable[str] | None, turns: Iterable[int] | None) -> pa.Table:
    """The rows of messages with one of `roles` and/or at one of the conversation indices `turns`."""
    if roles is None and turns is None:
        return table
    keep = turn_mask(_metadata(table), roles, turns)
    return table.take(pa.array(np.flatnonzero(keep), type=pa.int64()))


def row_labels(metadata: list[str | None]) -> list[str]:
    """Per row, `[assistant · turn 3 of 12 · chunk 2 of 5] ` for turn and chunk rows, else ``."""
    out = []
    for text in metadata:
        m = orjson.loads(text) if text else {}
        parts = []
        turn, chunk = m.get("turn"), m.get("chunk")
        if isinstance(turn, dict):
            parts += [str(turn.get("role")), f"turn {turn.get('index')} of {turn.get('count')}"]
        if isinstance(chunk, dict):
            parts.append(f"chunk {chunk.get('index', 0) + 1} of {chunk.get('count')}")
        elif m.get("chunks"):
            parts.append(f"mean of {m['chunks']} chunks")
        out.append(f"[{' · '.join(parts)}] " if parts else "")
    return out


def _joined_text(pieces: list[tuple[int, int, str]]) -> str:
    """A text rebuilt from its chunks' [char_start, char_end) pieces: overlaps once, and the blank
    between two chunks (whitespace the cut skipped) as one space."""
    text, end = "", 0
    for start, stop, piece in pieces:
        if not text:
            text, end = piece, stop
        elif start >= end:
            text, end = text + (" " if start > end else "") + piece, stop
        elif stop > end:
            text, end = text + piece[end - start :], stop
    return text


def fold_chunks(table: pa.Table) -> pa.Table:
    """One row per source row: a text's chunk rows become one row with the source id, the rebuilt
    text, `metadata.chunks` and the token-weighted mean of their vectors (unit length when every chunk
    vector is); other rows are kept as they are."""
    for name in ("id", "embedding"):
        if name not in table.column_names:
            raise UsageError(f"chunks='mean' needs the `{name}` column")
    metas = _metadata(table)
    groups: list[list[int]] = []
    for i, m in enumerate(metas):
        chunk = m.get("chunk")
        prev = metas[groups[-1][0]] if groups else None
        joins = (
            isinstance(chunk, dict)
            and chunk.get("index", 0) > 0
            and prev is not None
            and "chunk" in prev
            and prev.get("row") == m.get("row")
            and prev.get("turn") == m.get("turn")
        )
        if joins:
            groups[-1].append(i)
        else:
            groups.append([i])
    if all("chunk" not in metas[g[0]] for g in groups):
        return table
    emb_col = table.column("embedding").combine_chunks()
    if isinstance(emb_col, pa.ChunkedArray):
        emb_col = emb_col.chunks[0]
    dim = emb_col.type.list_size
    vectors = emb_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(emb_col), dim)
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist() if "text" in table.column_names else None
    new_ids, new_texts, new_meta, new_vectors = [], [], [], []
    for g in groups:
        first = metas[g[0]]
        if "chunk" not in first:
            new_ids.append(ids[g[0]])
            new_meta.append(first)
            new_vectors.append(vectors[g[0]])
            if texts is not None:
                new_texts.append(texts[g[0]])
            continue
        part = vectors[g]
        norms = np.linalg.norm(part, axis=1)
        unit = bool(np.all(np.abs(norms - 1) < UNIT_NORM_TOLERANCE))
        new_vectors.append(weighted_mean(part, [metas[i].get("tokens", 1) for i in g], unit))
        new_ids.append(ids[g[0]].rsplit("#", 1)[0])
        m = {k: v for k, v in first.items() if k != "chunk"}
        m["chunks"] = len(g)
        m["tokens"] = int(sum(metas[i].get("tokens", 0) for i in g))
        new_meta.append(m)
        if texts is not None:
            pieces = [(metas[i]["chunk"]["char_start"], metas[i]["chunk"]["char_end"], texts[i]) for i in g]
            new_texts.append(_joined_text(pieces))
    out = table.take(pa.array([g[0] for g in groups], type=pa.int64()))
    value_type = emb_col.type.value_type
    flat = pa.array(np.stack(new_vectors).astype(np.float32).ravel(), type=pa.float32()).cast(value_type)
    replace = {
        "id": pa.array(new_ids, type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        "metadata": pa.array([orjson.dumps(m).decode() for m in new_meta], type=pa.string()),
    }
    if texts is not None:
        replace["text"] = pa.array(new_texts, type=pa.string())
    for name, column in replace.items():
        if name in out.column_names:
            index = out.column_names.index(name)
            out = out.set_column(index, out.schema.field(name), column)
    return out
