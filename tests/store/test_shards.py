"""A shard's metadata column, built column-wise by Arrow, is byte for byte the JSON orjson writes per row."""

from __future__ import annotations

import numpy as np
import orjson

from chatspace.store.shards import metadata_json


def test_metadata_json_is_what_orjson_writes_row_by_row():
    rng = np.random.default_rng(0)
    n = 500
    files = ["data/a.jsonl", 'odd "name"\\ é 漢字\n.parquet', "hf://datasets/x/y/train-0000.parquet"]
    common = {"field": "conversation.0.content", "extract": None}
    rows = rng.integers(0, 10**12, n)
    file_no = rng.integers(0, len(files), n)
    file_row = rng.integers(0, 10**9, n)
    tokens = rng.integers(0, 40000, n)
    truncated = rng.random(n) < 0.3
    text_chars = np.where(truncated & (rng.random(n) < 0.5), rng.integers(0, 10**6, n), -1)
    got = metadata_json(
        orjson.dumps(common).decode()[:-1],
        [orjson.dumps(f).decode() for f in files],
        rows,
        file_no,
        file_row,
        tokens,
        truncated,
        text_chars,
    ).to_pylist()
    want = []
    for i in range(n):
        meta = {"row": int(rows[i]), "file": files[file_no[i]], "file_row": int(file_row[i])}
        meta |= {"tokens": int(tokens[i]), "truncated": bool(truncated[i])}
        if text_chars[i] >= 0:
            meta["text_chars"] = int(text_chars[i])
        want.append(orjson.dumps({**common, **meta}).decode())
    assert got == want
    assert (
        metadata_json(
            "{", [], *[np.zeros(0, np.int64)] * 4, np.zeros(0, bool), np.zeros(0, np.int64)
        ).to_pylist()
        == []
    )
