"""The same seed selects the same rows whatever the shard size, device count or streaming; a selection is
held as a description (ranges, counts per block), and runs made before the --n sampler had versions keep
their rows."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from chatspace.data import row_blocks, sampling
from chatspace.data.row_blocks import BLOCK_ROWS, BlockRows, RowRange
from chatspace.data.sampling import keep_with_probability, select_rows
from chatspace.data.units import num_units, plan_units, unit_sizes


def _digest(rows) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").tobytes()).hexdigest()[:16]


def _units(selection, rows_per_shard: int) -> list[np.ndarray]:
    return [np.asarray(u.rows, dtype=np.int64) for u in plan_units(selection, rows_per_shard)]


# Rows the selection gave before it was held as a description (and before --n had versions), computed
# with that code: (select_rows arguments, rows selected, sha256 of the int64 rows, first rows).
RECORDED_SAMPLES = [
    ({"total_rows": 200_000, "n": 30_000, "p": None, "seed": 3}, 30_000, "5425ecf2f40acb47", [6, 10, 13]),
    (
        {"total_rows": 5_000_000, "n": 1000, "p": None, "seed": 11},
        1000,
        "5872fe0e266dcb27",
        [2459, 3942, 10283],
    ),
    ({"total_rows": 300_000, "n": None, "p": 0.05, "seed": 5}, 14_904, "aece7a1502adeef4", [56, 66, 110]),
    (
        {"total_rows": 300_000, "n": None, "p": 0.3, "seed": -9, "row_range": (1000, 250_000)},
        74_624,
        "99cbf2703a91444b",
        [1001, 1002, 1004],
    ),
    (
        {"total_rows": 30_000, "n": 20_000, "p": None, "seed": 0, "row_range": (5, 29_000)},
        20_000,
        "980d2fc8055591f1",
        [5, 6, 7],
    ),
]
# numpy permuted all 5M rows for this one: version 1 only (version 2 draws by blocks there).
RECORDED_PERMUTATION = ({"total_rows": 5_000_000, "n": 200_000, "p": None, "seed": 1}, "da3ab77942d928a6")


@pytest.mark.parametrize(("args", "count", "digest", "first"), RECORDED_SAMPLES)
@pytest.mark.parametrize("sampler", [1, 2])
@pytest.mark.parametrize("limit", [sampling.OLD_DRAW_LIMIT, 0])
def test_recorded_samples_keep_their_rows(monkeypatch, args, count, digest, first, sampler, limit):
    """Version 1, and version 2 whether it holds the sample whole or by blocks (--p at limit 0)."""
    if args["n"] is not None and sampler == 2 and limit == 0:
        pytest.skip("version 2 by blocks draws other rows than version 1 (tested below)")
    monkeypatch.setattr(sampling, "OLD_DRAW_LIMIT", limit)
    sel = select_rows(**args, sampler=sampler)
    assert sel.count == count
    assert _digest(sel.indices) == digest and sel.indices[:3].tolist() == first
    assert _digest(np.concatenate(_units(sel, 4096))) == digest


def test_small_recorded_samples_keep_their_rows():
    assert select_rows(1000, n=12, p=None, seed=7).indices.tolist() == [
        55, 224, 284, 299, 574, 618, 678, 771, 829, 873, 890, 934,
    ]  # fmt: skip
    assert select_rows(50_000, n=9, p=None, seed=42, row_range=(100, 40_100)).indices.tolist() == [
        3537, 3669, 8158, 17418, 17652, 26278, 27994, 31052, 34441,
    ]  # fmt: skip


def test_version_1_keeps_a_permutation_draw_and_version_2_draws_by_blocks():
    args, digest = RECORDED_PERMUTATION
    old = select_rows(**args, sampler=1)
    assert old.sampler == 1 and _digest(old.indices) == digest
    new = select_rows(**args)  # the newest sampler
    assert new.sampler == sampling.SAMPLER_VERSION == 2
    rows = new.indices
    assert len(rows) == 200_000 and np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < 5_000_000
    assert _digest(rows) != digest
    assert isinstance(new.rows(0, 10), BlockRows)  # a description, not a list


def test_n_is_exact_unique_sorted_and_seeded():
    a = select_rows(100_000, n=1000, p=None, seed=42).indices
    b = select_rows(100_000, n=1000, p=None, seed=42).indices
    c = select_rows(100_000, n=1000, p=None, seed=43).indices
    assert len(a) == 1000 and len(np.unique(a)) == 1000
    assert np.all(np.diff(a) > 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.fixture
def blocks_always(monkeypatch):
    """Version 2 draws every --n by blocks (not version 1's draw), so small tests reach that path."""
    monkeypatch.setattr(sampling, "OLD_DRAW_LIMIT", 0)


@pytest.mark.parametrize(
    ("total", "n", "row_range"),
    [
        (300_000, 150_000, None),  # dense: blocks give about half their rows
        (1_000_000, 37, None),  # sparse: most blocks give none
        (400_000, 399_990, (7, 399_999)),  # nearly all of a slice that starts mid-block
        (BLOCK_ROWS * 3, BLOCK_ROWS * 2, None),  # whole blocks
        (70_000, 65_537, (1, 70_000)),
    ],
)
def test_block_sampler_is_exact_and_seeded_and_units_cover_it(blocks_always, total, n, row_range):
    sel = select_rows(total, n=n, p=None, seed=5, row_range=row_range)
    start, end = row_range or (0, total)
    rows = sel.indices
    assert sel.count == len(rows) == n
    assert np.all(np.diff(rows) > 0) and rows[0] >= start and rows[-1] < end
    assert np.array_equal(rows, select_rows(total, n=n, p=None, seed=5, row_range=row_range).indices)
    assert not np.array_equal(rows, select_rows(total, n=n, p=None, seed=6, row_range=row_range).indices)
    for rows_per_shard in (999, BLOCK_ROWS, 100_003, n):
        units = _units(sel, rows_per_shard)
        assert [len(u) for u in units] == unit_sizes(n, rows_per_shard)
        assert np.array_equal(np.concatenate(units), rows)


def test_block_sampler_is_uniform(blocks_always):
    """Each row is drawn with probability n / rows: counted over many seeds, per region of the range."""
    total, n, seeds = 3 * BLOCK_ROWS + 1000, 5000, 200
    hits = np.zeros(total, dtype=np.int64)
    for seed in range(seeds):
        hits[select_rows(total, n=n, p=None, seed=seed).indices] += 1
    expected = seeds * n / total
    for region in np.array_split(hits, 40):  # about 5,000 rows each, across block boundaries
        mean = region.mean()
        assert abs(mean - expected) < 6 * np.sqrt(expected / len(region)), (mean, expected)


def test_hypergeometric_matches_the_law():
    """Inverting the distribution at evenly spread u gives the law's mean and variance, any size."""
    for good, bad, draws in [(65_536, 10**9, 5 * 10**8), (65_536, 2 * 10**10, 3 * 10**9), (500, 700, 300)]:
        us = (np.arange(4000) + 0.5) / 4000
        x = np.array([row_blocks.hypergeometric(good, bad, draws, float(u)) for u in us], dtype=np.float64)
        total = good + bad
        mean = draws * good / total
        var = draws * (good / total) * (bad / total) * (total - draws) / (total - 1)
        assert abs(x.mean() - mean) < 0.05 * np.sqrt(var) + 0.01
        assert abs(x.var() / var - 1) < 0.05
    assert row_blocks.hypergeometric(10, 0, 4, 0.99) == 4  # no rows left out: all drawn rows are good
    assert row_blocks.hypergeometric(0, 10, 4, 0.5) == 0
    assert row_blocks.hypergeometric(10, 5, 15, 0.1) == 10


def test_counts_per_block_add_up(blocks_always):
    counts = row_blocks.drawn_per_block(10 * BLOCK_ROWS + 5, 3 * BLOCK_ROWS, seed=1)
    sizes = [BLOCK_ROWS] * 10 + [5]
    assert counts.sum() == 3 * BLOCK_ROWS and all(0 <= c <= s for c, s in zip(counts, sizes, strict=True))


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


@pytest.mark.parametrize("p", [1e-6, 0.01, 0.5, 0.999999, 1.0])
def test_the_block_mask_is_keep_with_probability(p):
    lo, hi = 2**40 - 5000, 2**40 + 70_000
    rows = np.arange(lo, hi)
    assert np.array_equal(row_blocks.keep_mask(lo, hi, p, 3), keep_with_probability(rows, p, 3))


@pytest.mark.parametrize("held_whole", [True, False])
def test_p_units_cover_the_selection(monkeypatch, held_whole):
    """A sparse --p sample is held whole; a larger one as counts per block: the same rows either way."""
    if not held_whole:
        monkeypatch.setattr(sampling, "OLD_DRAW_LIMIT", 0)
    sel = select_rows(5 * BLOCK_ROWS, n=None, p=0.003, seed=2, row_range=(100, 5 * BLOCK_ROWS - 3))
    rows = np.arange(100, 5 * BLOCK_ROWS - 3)
    expected = rows[keep_with_probability(rows, 0.003, 2)]
    assert sel.count == len(expected) and np.array_equal(sel.indices, expected)
    assert isinstance(sel.rows(0, 10), np.ndarray if held_whole else BlockRows)
    for rows_per_shard in (1, 97, 10_000):
        assert np.array_equal(np.concatenate(_units(sel, rows_per_shard)), expected)


def test_p_one_keeps_everything_and_default_is_all():
    assert len(select_rows(1000, n=None, p=1.0, seed=0).indices) == 1000
    sel = select_rows(1000, n=None, p=None, seed=0)
    assert sel.method == "all" and len(sel.indices) == 1000


def test_ranges_stay_ranges_at_a_billion_rows():
    """all, --max-rows and split slices: the plan carries ranges, whatever the number of rows."""
    sel = select_rows(10**9, n=None, p=None, seed=0)
    assert sel.count == 10**9 and sel.rows(0, 10_000) == RowRange(0, 10_000)
    units = plan_units(sel, 10_000)
    assert next(units).rows == RowRange(0, 10_000) and next(units).rows == RowRange(10_000, 20_000)
    sliced = select_rows(10**9, n=None, p=None, seed=0, row_range=(500, 900), max_rows=300)
    assert [u.rows for u in plan_units(sliced, 128)] == [
        RowRange(500, 628),
        RowRange(628, 756),
        RowRange(756, 800),
    ]
    assert select_rows(10**9, n=10**9 + 1, p=None, seed=0).rows(5, 7) == RowRange(5, 7)


def test_a_units_rows_are_cheap_to_send(blocks_always):
    sel = select_rows(10**7, n=5 * 10**6, p=None, seed=9)
    unit = list(plan_units(sel, 200_000))[3]
    assert len(pickle.dumps(unit.rows)) < 1000  # 200,000 rows described in a few numbers
    rows = np.asarray(pickle.loads(pickle.dumps(unit.rows)), dtype=np.int64)
    assert np.array_equal(rows, sel.indices[600_000:800_000])
    assert [int(unit.rows[0]), int(unit.rows[-1]), len(unit.rows)] == [rows[0], rows[-1], 200_000]
    assert [int(i) for i in unit.rows] == rows.tolist()


def test_units_cover_selection_exactly_for_any_shard_size():
    sel = select_rows(50_000, n=5_000, p=None, seed=42)
    for rows_per_shard in (1, 7, 100, 4999, 5000, 10_000):
        units = list(plan_units(sel, rows_per_shard))
        assert len(units) == num_units(sel.count, rows_per_shard)
        assert [u.size for u in units] == unit_sizes(sel.count, rows_per_shard)
        assert [u.index for u in units] == list(range(len(units)))
        assert np.array_equal(np.concatenate([np.asarray(u.rows) for u in units]), sel.indices)


def test_a_range_unit_reads_as_an_array():
    unit = list(plan_units(select_rows(10**9, n=None, p=None, seed=0, row_range=(7, 10**9)), 10_000))[2]
    rows = np.asarray(unit.rows, dtype=np.int64)
    assert rows.dtype == np.int64 and rows.tolist() == list(range(20_007, 30_007))
    assert (unit.rows[0], unit.rows[-1], len(unit.rows), unit.size) == (20_007, 30_006, 10_000, 10_000)
    assert [int(i) for i in unit.rows][:2] == [20_007, 20_008]
    assert len(pickle.dumps(unit.rows)) < 200
