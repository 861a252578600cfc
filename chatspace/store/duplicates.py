"""Repeated ids: the ones a run's output holds must be exactly the ones its dataset has.

`--id-field` values come from the data, which may repeat them. At the end of a run the supervisor looks
up every row holding a repeated id in the dataset itself (by the row index each row carries): the id
must be the dataset's at that row, and no row may appear twice. Then it records a digest of the repeated
ids; `verify` recomputes that digest from the shards, so a duplicate added later is still caught.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson

from chatspace.errors import ChatspaceError
from chatspace.store.root import OutputRoot
from chatspace.store.shards import read_shard


def repeated(counts: Counter) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v > 1}


def digest(repeats: dict[str, int]) -> str:
    """A stable digest of (id, count) pairs."""
    return hashlib.sha256(orjson.dumps(sorted(repeats.items()))).hexdigest()


def _id_hashes(output: OutputRoot, path: PurePath) -> tuple[list[str], np.ndarray]:
    """A shard's ids and their (this process's) string hashes."""
    ids = read_shard(output, path, columns=["id"]).column("id").to_pylist()
    return ids, np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


def repeated_ids(output: OutputRoot, paths: Iterable[PurePath]) -> dict[str, int]:
    """Each id the shards hold more than once, with its count.

    Memory follows the shard, not the run: a first pass keeps 8 bytes per row (the ids' hashes), not
    the ids (a Counter of every id is ~100 bytes a row, gigabytes for a large run); only the ids
    whose hash repeats are counted, exactly, in a second pass. Most runs repeat none and stop there.
    """
    paths = list(paths)
    hashes = np.concatenate([_id_hashes(output, p)[1] for p in paths]) if paths else np.zeros(0, np.int64)
    hashes.sort()
    suspects = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    del hashes
    if not suspects.size:
        return {}
    counts: Counter = Counter()
    for path in paths:
        ids, h = _id_hashes(output, path)
        counts.update(ids[i] for i in np.flatnonzero(np.isin(h, suspects)))
    return repeated(counts)


def rows_of(output: OutputRoot, paths: Iterable[PurePath], ids: set[str]) -> dict[str, list[int]]:
    """The dataset row index of every output row whose id is in `ids`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, list[int]] = {}
    wanted = pa.array(sorted(ids), pa.string())
    for path in paths:
        table = read_shard(output, path, columns=["id", "metadata"])
        hit = table.filter(pc.is_in(table.column("id"), value_set=wanted))
        for rid, meta in zip(hit.column("id").to_pylist(), hit.column("metadata").to_pylist(), strict=True):
            out.setdefault(rid, []).append(int(orjson.loads(meta)["row"]))
    return out


def twice_embedded(rows: dict[str, list[int]]) -> list[str]:
    return [
        f"{rid!r} (dataset row {r})" for rid, rs in rows.items() for r in {x for x in rs if rs.count(x) > 1}
    ]


def check_against_source(
    output: OutputRoot, paths: list[PurePath], ids_at: Callable[[list[int]], list[str | None]]
) -> dict[str, Any] | None:
    """What to record about repeated ids (None when there are none); raises when they are not the data's.

    `ids_at` gives the dataset's id at each of some sorted row indices (None where a row has none)."""
    if not paths:
        return None
    repeats = repeated_ids(output, paths)
    if not repeats:
        return None
    rows = rows_of(output, paths, set(repeats))
    twice = twice_embedded(rows)
    if twice:
        raise ChatspaceError(f"rows embedded more than once: {', '.join(twice[:3])}; rerun with --overwrite")
    index = sorted({r for rs in rows.values() for r in rs})
    found = dict(zip(index, ids_at(index), strict=True))
    wrong = [(rid, r) for rid, rs in rows.items() for r in rs if found[r] != rid]
    if wrong:
        rid, r = wrong[0]
        raise ChatspaceError(
            f"{len(wrong)} row(s) hold an id the dataset does not have at their row (e.g. {rid!r} at row "
            f"{r}): the output mixes two versions of the dataset; rerun with --overwrite"
        )
    examples = sorted(repeats, key=lambda k: (-repeats[k], k))[:5]
    return {
        "distinct_ids_repeated": len(repeats),
        "rows": sum(repeats.values()),
        "examples": examples,
        "digest": digest(repeats),
        "checked_against": "dataset",
    }
