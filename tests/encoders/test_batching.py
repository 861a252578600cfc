"""The batch planner: per-bucket queues across chunks and units, budgets, bounded memory, padding."""

from __future__ import annotations

import numpy as np
import pytest

from chatspace.encoders.batching import (
    BatchPlanner,
    length_buckets,
    padding_efficiency,
    simulate,
)


def _long_tailed(n: int, seed: int, cap: int = 512) -> np.ndarray:
    """Token counts shaped like real text: mostly short, a long tail, some at the truncation limit."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(3.4, 1.1, n)).astype(np.int64) + 2, 2, cap)


def _fineweb_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(600), 1.0, n)), 8, 32768).astype(np.int64)


def _units(lengths: np.ndarray, rows_per_shard: int) -> list[np.ndarray]:
    return [lengths[s : s + rows_per_shard] for s in range(0, len(lengths), rows_per_shard)]


def _rows(batches) -> list[tuple[int, int]]:
    return sorted((int(c), int(p)) for b in batches for c, p in zip(b.chunks, b.positions, strict=True))


def _expected_rows(units, chunk_rows) -> list[tuple[int, int]]:
    out, chunk = [], 0
    for lengths in units:
        for s in range(0, len(lengths), chunk_rows):
            out.extend((chunk, p) for p in range(len(lengths[s : s + chunk_rows])))
            chunk += 1
    return sorted(out)


def test_length_buckets_grow_by_ten_percent_up_to_the_limit():
    edges = length_buckets(8, 512)
    assert edges[0] == 8 and edges[-1] == 512
    assert all(b > a for a, b in zip(edges, edges[1:], strict=False))
    assert all(b <= max(a + 1, -(-a * 11 // 10)) for a, b in zip(edges, edges[1:-1], strict=False))
    assert length_buckets(128, 128) == [128]
    assert length_buckets(1, 3) == [1, 2, 3]


@pytest.mark.parametrize("budget", [None, 512, 2048, 131072])
@pytest.mark.parametrize("rows_per_shard", [7, 50, 1000])
def test_every_row_batched_exactly_once_within_budget(budget, rows_per_shard):
    lengths = _long_tailed(3000, rows_per_shard)
    units = _units(lengths, rows_per_shard)
    planner = BatchPlanner(length_buckets(8, 512), budget=budget, batch_size=32)
    batches = simulate(units, planner, chunk_rows=256, starve_every=3)
    assert _rows(batches) == _expected_rows(units, 256)
    assert planner.pending_rows == 0
    for b in batches:
        assert len(b) > 0 and b.length == b.lengths.max()  # padded to its own longest row
        if budget is None:
            assert len(b) <= 32
        elif len(b) > 1:
            assert len(b) * b.length <= budget


def test_batches_fill_across_chunks_and_units():
    """50-row units and a 131072-token budget: batches hold rows of many units, not one chunk's."""
    lengths = _long_tailed(20000, 1)
    planner = BatchPlanner(length_buckets(8, 512), budget=131072, batch_size=32)
    batches = simulate(_units(lengths, 50), planner, chunk_rows=50)
    assert max(len(set(b.chunks.tolist())) for b in batches) > 20
    assert len(lengths) / len(batches) > 4 * 50  # a chunk-bound planner could not pass 50 rows a batch
    assert np.mean([len(b) * b.length for b in batches]) > 12000


@pytest.mark.parametrize("rows_per_shard", [50, 1000, 100000])
@pytest.mark.parametrize(
    "mix", [("long-tailed", _long_tailed(20000, 2), 512), ("fineweb", _fineweb_like(20000, 3), 32768)]
)
def test_padding_efficiency_at_the_headline_budget(rows_per_shard, mix):
    _, lengths, cap = mix
    units = _units(np.minimum(lengths, cap), rows_per_shard)
    planner = BatchPlanner(length_buckets(8, cap), budget=131072, batch_size=32)
    batches = simulate(units, planner, chunk_rows=min(1024, rows_per_shard))
    assert padding_efficiency(batches) >= 0.9
    # A starving input (the oldest bucket flushed after every chunk) costs rows per batch, not padding.
    starved = simulate(
        units,
        BatchPlanner(length_buckets(8, cap), budget=131072, batch_size=32),
        chunk_rows=min(1024, rows_per_shard),
        starve_every=1,
    )
    assert padding_efficiency(starved) >= 0.9


def test_pending_rows_are_bounded_and_the_oldest_bucket_goes_first():
    lengths = _long_tailed(30000, 4)
    planner = BatchPlanner(length_buckets(8, 512), budget=131072, batch_size=32, max_pending_tokens=200_000)
    peak = 0
    first_chunk_done_at = None
    for chunk, s in enumerate(range(0, len(lengths), 100)):
        planner.add(chunk, lengths[s : s + 100])
        batches = planner.full_batches()
        peak = max(peak, planner.pending_tokens)
        if first_chunk_done_at is None and any(0 in b.chunks for b in batches):
            first_chunk_done_at = chunk
        assert planner.pending_tokens <= 200_000
    assert first_chunk_done_at is not None and first_chunk_done_at < 100  # chunk 0 did not wait for ever
    assert peak > 100_000


def test_flush_oldest_takes_the_bucket_of_the_oldest_row():
    planner = BatchPlanner([10, 20, 30], budget=10_000, batch_size=32)
    planner.add(0, np.array([25]))
    planner.add(1, np.array([5, 6, 15]))
    out = planner.flush_oldest()
    assert len(out) == 1 and out[0].bucket == 30 and out[0].chunks.tolist() == [0]
    assert planner.pending_rows == 3


def test_lowered_budget_applies_to_the_bucket_and_longer_ones():
    planner = BatchPlanner([10, 20, 30], budget=1000, batch_size=32)
    assert planner.lower_budget(20, 100) == 100
    assert planner.budget_for(10) == 1000 and planner.budget_for(30) == 100
    planner.add(0, np.full(40, 18))
    for b in planner.full_batches() + planner.flush():
        assert len(b) * b.length <= 100


def test_varlen_batches_count_real_tokens():
    planner = BatchPlanner(length_buckets(8, 512), budget=1000, batch_size=32, varlen=True)
    lengths = _long_tailed(2000, 5)
    batches = simulate([lengths], planner, chunk_rows=500)
    for b in batches:
        assert b.real_tokens <= 1000 or len(b) == 1
    assert padding_efficiency(batches, varlen=True) == 1.0


def test_split_halves_pad_to_their_own_longest_row():
    planner = BatchPlanner([100], budget=None, batch_size=8)
    planner.add(0, np.array([10, 90, 20, 30, 40, 50, 60, 70]))
    (batch,) = planner.full_batches()
    first, second = batch.split()
    assert len(first) + len(second) == 8
    assert first.length == first.lengths.max() < second.length == second.lengths.max()


@pytest.mark.parametrize("left", [False, True])
def test_pad_batch_places_every_row_on_the_tokenizers_side(left):
    from chatspace.encoders.batching import pad_batch

    rng = np.random.default_rng(3)
    ids = [list(map(int, rng.integers(5, 1000, size=n))) for n in (7, 1, 12, 9, 0)]
    types = [[1] * len(ids[0]), None, [0, 1] * 6, [1] * 9, []]
    out = pad_batch(ids, types, 10, 99, left=left)  # 12 tokens in row 2: cut to the batch's length
    for i, (seq, typ) in enumerate(zip(ids, types, strict=True)):
        k = min(len(seq), 10)
        where = slice(10 - k, 10) if left else slice(0, k)
        expect_ids = np.full(10, 99)
        expect_ids[where] = seq[:k]
        expect_types = np.zeros(10, dtype=np.int64)
        expect_types[where] = (typ or [0] * k)[:k]
        assert out["input_ids"][i].tolist() == expect_ids.tolist()
        expect_mask = np.zeros(10, dtype=np.int64)
        expect_mask[where] = 1
        assert out["attention_mask"][i].tolist() == expect_mask.tolist()
        assert out["token_type_ids"][i].tolist() == expect_types.tolist()
    assert all(v.dtype == np.int64 and v.shape == (5, 10) for v in out.values())
    assert "token_type_ids" not in pad_batch(ids, [None] * 5, 10, 0, left=left)


@pytest.mark.parametrize("budget", [16384, 131072])
@pytest.mark.parametrize("rows_per_shard", [1000, 100000])
@pytest.mark.parametrize(
    "mix", [("long-tailed", _long_tailed(200000, 6), 512), ("fineweb", _fineweb_like(60000, 7), 32768)]
)
def test_batches_fill_the_budget_as_a_cuda_worker_plans_them(budget, rows_per_shard, mix):
    """The CUDA planner: mean padded tokens per batch >= 0.75 of the budget, padding >= 0.9."""
    from chatspace.encoders.batching import worker_planner

    _, lengths, cap = mix
    units = _units(np.minimum(lengths, cap), rows_per_shard)
    planner = worker_planner(length_buckets(8, cap), budget=budget, batch_size=32, cuda=True)
    batches = simulate(units, planner, chunk_rows=min(1024, rows_per_shard))
    assert _rows(batches) == _expected_rows(units, min(1024, rows_per_shard))
    assert np.mean([len(b) * b.length for b in batches]) >= 0.75 * budget
    assert padding_efficiency(batches) >= 0.9
    assert all(len(b) * b.length <= budget for b in batches if len(b) > 1)


def test_a_rare_length_waits_a_bounded_number_of_rows():
    """A row whose bucket never fills goes out once MAX_WAIT_ROWS rows have arrived after it, so its
    chunk (and unit) completes though the pending bound is never reached."""
    planner = BatchPlanner(length_buckets(8, 512), budget=131072, batch_size=32, max_wait_rows=5000)
    planner.add(0, np.array([500]))
    done_at = None
    for chunk in range(1, 40):
        planner.add(chunk, np.full(256, 16))  # a full 16-token batch every 32 chunks
        if any(0 in b.chunks.tolist() for b in planner.full_batches()):
            done_at = chunk
            break
    assert done_at is not None and 5000 < done_at * 256 <= 5000 + 256


def test_a_forced_batch_takes_in_neighbouring_buckets():
    """The pending bound forces the oldest row's bucket out with its neighbours' rows: one batch close
    to the budget, still padded tightly, instead of a narrow bucket's few rows."""
    planner = BatchPlanner(length_buckets(8, 512), budget=10_000, batch_size=32, max_pending_tokens=9_000)
    rng = np.random.default_rng(8)
    planner.add(0, rng.integers(90, 110, size=60))  # ~6,000 tokens over three buckets: none full
    planner.add(1, rng.integers(90, 110, size=40))
    (batch,) = planner.full_batches()
    assert len(set(np.searchsorted(planner.buckets, batch.lengths).tolist())) >= 3
    assert len(batch) * batch.length >= 0.75 * 10_000
    assert padding_efficiency([batch]) >= 0.9


def test_the_padding_case_plans_as_a_worker_and_reports_batch_fill():
    import sys

    from tests.helpers import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    from cases import padding

    row = padding.measure(_fineweb_like(20000, 9), 32768, 131072, 1000, cuda=True)
    assert row["planned_as"] == "cuda" and 0 < row["batch_fill"] <= 1.5 and row["eager"] >= 0.9
    planner = padding._planner(32768, 131072, cuda=True)
    assert planner.max_pending_tokens == 16 * 131072 and len(planner.buckets) == len(length_buckets(8, 32768))
