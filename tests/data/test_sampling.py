"""The same seed selects the same rows whatever the shard size, device count or streaming."""

from __future__ import annotations

import numpy as np

from chatspace.data.sampling import keep_with_probability, select_rows
from chatspace.pool.plan import num_units, plan_units


def test_n_is_exact_unique_sorted_and_seeded():
    a = select_rows(100_000, n=1000, p=None, seed=42).indices
    b = select_rows(100_000, n=1000, p=None, seed=42).indices
    c = select_rows(100_000, n=1000, p=None, seed=43).indices
    assert len(a) == 1000 and len(np.unique(a)) == 1000
    assert np.all(np.diff(a) > 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_n_larger_than_dataset_takes_all(caplog):
    sel = select_rows(10, n=50, p=None, seed=1)
    assert np.array_equal(sel.indices, np.arange(10))
    assert "more than the 10 rows" in caplog.text


def test_p_is_a_pure_function_of_index_and_seed():
    sel = select_rows(200_000, n=None, p=0.1, seed=7).indices
    assert 0.09 < len(sel) / 200_000 < 0.11
    # Streaming the same rows in arbitrary chunks selects the same ones.
    chunks = [np.arange(s, min(s + 777, 200_000)) for s in range(0, 200_000, 777)]
    streamed = np.concatenate([c[keep_with_probability(c, 0.1, 7)] for c in chunks])
    assert np.array_equal(sel, streamed)
    assert not np.array_equal(sel, select_rows(200_000, n=None, p=0.1, seed=8).indices)


def test_p_one_keeps_everything_and_default_is_all():
    assert len(select_rows(1000, n=None, p=1.0, seed=0).indices) == 1000
    sel = select_rows(1000, n=None, p=None, seed=0)
    assert sel.method == "all" and len(sel.indices) == 1000


def test_units_cover_selection_exactly_for_any_shard_size():
    sel = select_rows(50_000, n=5_000, p=None, seed=42).indices
    for rows_per_shard in (1, 7, 100, 4999, 5000, 10_000):
        units = list(plan_units(sel, rows_per_shard))
        assert len(units) == num_units(len(sel), rows_per_shard)
        assert [u.index for u in units] == list(range(len(units)))
        assert np.array_equal(np.concatenate([u.rows for u in units]), sel)
