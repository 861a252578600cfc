"""Counting repeated ids over a run's shards without holding every id: the same answer as a Counter
of all of them."""

from __future__ import annotations

from collections import Counter
from pathlib import PurePath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.store.duplicates import repeated, repeated_ids
from chatspace.store.root import OutputRoot


def _shards(tmp_path, id_lists: list[list[str]]) -> list[PurePath]:
    paths = []
    for i, ids in enumerate(id_lists):
        path = tmp_path / f"shard-{i:05d}.parquet"
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "row": np.arange(len(ids))}), path)
        paths.append(PurePath(path))
    return paths


def test_repeated_ids_are_exactly_those_a_counter_of_every_id_finds(tmp_path):
    rng = np.random.default_rng(7)
    ids = [f"doc-{i}" for i in range(5000)]
    ids += [ids[j] for j in rng.choice(5000, 300)]  # repeats, some of them more than twice
    ids += ["", "é", "doc-1 ", "DOC-1"]  # near misses that are other ids
    rng.shuffle(ids)
    shards = [ids[k : k + 700] for k in range(0, len(ids), 700)]  # repeats across and within shards
    output = OutputRoot(tmp_path)
    want = repeated(Counter(ids))
    assert len(want) > 250 and max(want.values()) > 2
    assert repeated_ids(output, _shards(tmp_path, shards)) == want


def test_shards_without_repeats_give_none(tmp_path):
    output = OutputRoot(tmp_path)
    assert repeated_ids(output, _shards(tmp_path, [["a", "b"], ["c"], []])) == {}
    assert repeated_ids(output, []) == {}
