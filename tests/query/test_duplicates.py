"""`chatspace near-duplicates` on a made-up dataset with planted duplicates: exact copies and small edits,
within one run and across two runs, found as an exact all-pairs comparison at the threshold finds them."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import chatspace
from chatspace.store.reader import load_embeddings, to_numpy
from tests.helpers import embed_args, run_cli, write_jsonl

THRESHOLD = 0.95


def _edit(text: str, how: int) -> str:
    """A small edit a scraper or a copy-paste makes."""
    if how == 0:
        return text + " "  # trailing space
    if how == 1:
        return text.replace(".", "!", 1) if "." in text else text + "!"
    if how == 2:
        return text[0].swapcase() + text[1:]
    return "  " + text.replace(" the ", " the the ", 1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, texts):
    """Two runs: `first` (200 distinct texts + 20 copies + 20 edits) and `second` (40 rows, 10 of
    which copy rows of `first`)."""
    folder = tmp_path_factory.mktemp("dups")
    base = [t for t in texts if 40 <= len(t) <= 600][:240]
    distinct, others = base[:200], base[200:]
    first = [{"id": f"a-{i}", "text": t} for i, t in enumerate(distinct)]
    first += [{"id": f"a-copy-{i}", "text": distinct[i]} for i in range(20)]
    first += [{"id": f"a-edit-{i}", "text": _edit(distinct[20 + i], i % 4)} for i in range(20)]
    second = [
        {"id": f"b-{i}", "text": t} for i, t in enumerate(others + [distinct[100 + i] for i in range(10)])
    ]
    out = folder / "out"
    run_cli(
        *embed_args(write_jsonl(folder / "first.jsonl", first), out, "--rows-per-shard", "64"), check=True
    )
    run_cli(*embed_args(write_jsonl(folder / "second.jsonl", second), out), check=True)
    return out


def _exact_rows_with_a_duplicate(root) -> set[str]:
    ids, vectors = to_numpy(load_embeddings(root, columns=["id", "embedding"]))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1)
    return set(ids[(similarity >= THRESHOLD).any(axis=1)].tolist())


def test_planted_duplicates_are_found_as_all_pairs_finds_them(planted, tmp_path):
    out = tmp_path / "groups.parquet"
    proc = run_cli(
        "near-duplicates", str(planted), "--threshold", str(THRESHOLD), "-o", str(out), "--keep", "first"
    )
    assert proc.returncode == 0, proc.stderr
    assert "groups of near-duplicates" in proc.stdout and "group 0:" in proc.stdout
    groups = pq.read_table(out).to_pandas()
    assert {"id", "group", "nearest_id", "similarity"} <= set(groups.columns)
    found, expected = set(groups["id"]), _exact_rows_with_a_duplicate(planted)
    precision = len(found & expected) / len(found)
    recall = len(found & expected) / len(expected)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert (groups["similarity"] >= THRESHOLD - 1e-6).all()

    by_id = groups.set_index("id")
    for i in range(20):  # every copy and edit sits in its original's group
        assert by_id.loc[f"a-copy-{i}", "group"] == by_id.loc[f"a-{i}", "group"]
        assert by_id.loc[f"a-edit-{i}", "group"] == by_id.loc[f"a-{20 + i}", "group"]
    for i in range(10):  # across runs
        assert by_id.loc[f"b-{40 + i}", "group"] == by_id.loc[f"a-{100 + i}", "group"]
        assert by_id.loc[f"b-{40 + i}", "run_id"] != by_id.loc[f"a-{100 + i}", "run_id"]

    kept = set(pq.read_table(tmp_path / "groups-keep.parquet").column("id").to_pylist())
    all_ids = set(load_embeddings(planted, columns=["id"]).column("id").to_pylist())
    dropped = all_ids - kept
    assert len(kept) == len(all_ids) - (len(groups) - groups["group"].nunique())
    assert groups.groupby("group")["keep"].sum().eq(1).all()
    assert dropped == set(groups.loc[~groups["keep"], "id"])
    assert "a-0" in kept and "a-copy-0" in dropped  # `first`: the earliest row of its group


def test_keep_longest_keeps_each_groups_longest_text(planted):
    groups, summary = chatspace.near_duplicates(str(planted), THRESHOLD, keep="longest")
    frame = groups.to_pandas()
    longest = frame.loc[frame.groupby("group")["text_chars"].idxmax(), "text_chars"].to_numpy()
    kept = frame[frame["keep"]].sort_values("group")["text_chars"].to_numpy()
    assert (kept == longest).all()
    assert summary["groups"] == frame["group"].nunique() and summary["rows_in_groups"] == len(frame)


def test_a_fresh_index_is_used_and_finds_the_same_groups(planted):
    before, _ = chatspace.near_duplicates(str(planted), THRESHOLD)
    run_cli("index", str(planted), "--kind", "hnsw", check=True)
    after, _ = chatspace.near_duplicates(str(planted), THRESHOLD)
    assert sorted(before.column("id").to_pylist()) == sorted(after.column("id").to_pylist())


def test_a_threshold_out_of_range_is_a_usage_error(planted, tmp_path):
    proc = run_cli("near-duplicates", str(planted), "--threshold", "1.5", "-o", str(tmp_path / "g.parquet"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
