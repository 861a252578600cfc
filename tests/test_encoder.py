"""The bucketed SentenceTransformer encoder: batch planning, and equality with the plain library call."""

from __future__ import annotations

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.devices import Device
from chatspace.encoders.sentence_transformer import (
    CPU_AUTO_TOKENS_PER_BATCH,
    SentenceTransformerEncoder,
    plan_batches,
    power_of_two_buckets,
)
from chatspace.metrics import WorkerStats
from tests.conftest import cosine_rows

# --- plan_batches --------------------------------------------------------------------------------------


def _long_tailed(n: int, seed: int, cap: int = 512) -> np.ndarray:
    """Token counts shaped like real text: mostly short, a long tail, some at the truncation limit."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(3.4, 1.1, n)).astype(np.int64) + 2, 2, cap)


def _planned_rows(batches) -> list[int]:
    return sorted(r for b in batches for r in b.rows.tolist())


def test_power_of_two_buckets():
    assert power_of_two_buckets(128, 512) == [128, 256, 512]
    assert power_of_two_buckets(128, 384) == [128, 256, 384]
    assert power_of_two_buckets(100, 300) == [128, 256, 300]
    assert power_of_two_buckets(128, 128) == [128]
    assert power_of_two_buckets(16, 100) == [16, 32, 64, 100]


@pytest.mark.parametrize("budget", [None, 256, 2048, 8192])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("pad_multiple", [1, 8])
def test_every_row_planned_exactly_once(budget, static, pad_multiple):
    buckets = power_of_two_buckets(128, 512)
    for seed in range(3):
        lengths = _long_tailed(1000, seed)
        batches = plan_batches(
            lengths, buckets, budget=budget, batch_size=32, static_shapes=static, pad_multiple=pad_multiple
        )
        assert _planned_rows(batches) == list(range(len(lengths)))
        for b in batches:
            assert len(b.rows) > 0
            assert lengths[b.rows].max() <= b.length <= b.bucket  # nothing cut that fits the bucket


@pytest.mark.parametrize("budget", [256, 1000, 2048, 8192])
def test_padded_token_budget_respected(budget):
    buckets = power_of_two_buckets(128, 512)
    lengths = _long_tailed(2000, 7)
    for pad_multiple in (1, 8):
        batches = plan_batches(
            lengths, buckets, budget=budget, batch_size=32, static_shapes=False, pad_multiple=pad_multiple
        )
        for b in batches:
            if len(b.rows) > 1:
                assert len(b.rows) * b.length <= budget
            else:  # a row alone may exceed the budget only when it is longer than the budget itself
                assert b.length <= budget or lengths[b.rows[0]] > budget - pad_multiple
        # Filling is greedy: a batch stops only when the next row would break the budget.
        for b, nxt in zip(batches, batches[1:], strict=False):
            if b.bucket == nxt.bucket:
                next_len = min(b.bucket, -(-int(lengths[nxt.rows[0]]) // pad_multiple) * pad_multiple)
                assert (len(b.rows) + 1) * next_len > budget


def test_budget_overrides_batch_size_and_row_count_without_budget():
    buckets = power_of_two_buckets(128, 256)
    lengths = np.full(500, 10)
    by_rows = plan_batches(lengths, buckets, budget=None, batch_size=32, static_shapes=False)
    assert [len(b.rows) for b in by_rows] == [32] * 15 + [20]  # the partial batch is flushed
    by_tokens = plan_batches(
        lengths, buckets, budget=1600, batch_size=32, static_shapes=False, pad_multiple=1
    )
    assert [len(b.rows) for b in by_tokens] == [160] * 3 + [20]


def test_dynamic_padding_is_to_the_batch_longest_row():
    buckets = power_of_two_buckets(128, 512)
    lengths = _long_tailed(1000, 3)
    exact = plan_batches(lengths, buckets, budget=2048, batch_size=32, static_shapes=False, pad_multiple=1)
    for b in exact:
        assert b.length == lengths[b.rows].max()
    rounded = plan_batches(lengths, buckets, budget=2048, batch_size=32, static_shapes=False, pad_multiple=8)
    for b in rounded:
        longest = int(lengths[b.rows].max())
        assert b.length == min(b.bucket, -(-longest // 8) * 8)
    # Length-sorted batching wastes little: well above the 32-rows-in-input-order baseline.
    real = lengths.sum()
    eff = real / sum(len(b.rows) * b.length for b in exact)
    naive = real / sum(32 * lengths[s : s + 32].max() for s in range(0, len(lengths), 32))
    assert eff > 0.85 and eff > naive + 0.3


@pytest.mark.parametrize("budget", [None, 4096])
def test_static_shapes_for_compile(budget):
    """Compiled models see one shape per bucket: (budget // bucket or batch_size) x bucket."""
    buckets = power_of_two_buckets(128, 512)
    lengths = _long_tailed(1500, 11)
    batches = plan_batches(lengths, buckets, budget=budget, batch_size=32, static_shapes=True)
    for bucket in buckets:
        mine = [b for b in batches if b.bucket == bucket]
        per = budget // bucket if budget else 32
        assert all(b.length == bucket for b in mine)
        assert all(len(b.rows) == per for b in mine[:-1])
        assert mine and 0 < len(mine[-1].rows) <= per
        in_bucket = lengths[np.concatenate([b.rows for b in mine])]
        lower = buckets[buckets.index(bucket) - 1] if bucket != buckets[0] else 0
        assert (in_bucket > lower).all() and (in_bucket <= bucket).all()  # the smallest bucket that fits


def test_lowered_bucket_budget_and_overlong_rows():
    buckets = power_of_two_buckets(128, 256)
    lengths = np.array([300, 5, 250, 130, 129, 7, 256])  # 300: longer than the largest bucket
    batches = plan_batches(
        lengths, buckets, budget=1024, batch_size=32, static_shapes=False, bucket_budgets={256: 256}
    )
    assert _planned_rows(batches) == list(range(len(lengths)))
    for b in batches:
        if b.bucket == 256:
            assert len(b.rows) == 1 and b.length <= 256  # budget 256 at length >128: one row each
    assert plan_batches(np.zeros(0, np.int64), buckets, budget=None, batch_size=8, static_shapes=False) == []


# --- the encoder against SentenceTransformer.encode ----------------------------------------------------


def _encoder(**overrides) -> SentenceTransformerEncoder:
    cfg = RunConfig(dataset="unused", output_root="/tmp/unused", **overrides)
    enc = SentenceTransformerEncoder(cfg, Device("cpu", "cpu:0"), None)
    enc.load(WorkerStats())
    return enc


def _encode(enc: SentenceTransformerEncoder, texts: list[str]) -> tuple[np.ndarray, WorkerStats]:
    stats = WorkerStats()
    prepared = enc.prepare(texts, stats)
    return enc.encode(prepared, stats), stats


@pytest.fixture(scope="module")
def texts200(texts) -> list[str]:
    # Mix the order so that lengths are not sorted in the input (results must come back in input order).
    rng = np.random.default_rng(0)
    picked = texts[:200]
    return [picked[i] for i in rng.permutation(len(picked))]


@pytest.fixture(scope="module")
def reference(st_model, texts200) -> np.ndarray:
    return st_model.encode(texts200, batch_size=32)


@pytest.mark.parametrize(
    "options",
    [
        {},  # CPU defaults: automatic token budget, exact padding
        {"tokens_per_batch": 512},
        {"batch_size": 8},  # an explicit batch size: row-count batches
        {"bucket_min_tokens": 16},
    ],
    ids=["defaults", "tokens512", "rows8", "small-buckets"],
)
def test_float32_equals_sentence_transformer(options, texts200, reference):
    enc = _encoder(**options)
    emb, stats = _encode(enc, texts200)
    assert emb.shape == reference.shape and emb.dtype == np.float32
    cos = cosine_rows(emb, reference)
    assert cos.min() >= 0.99999, f"worst row {int(cos.argmin())}: {cos.min()}"
    assert stats.tokens > 0 and stats.padded_tokens >= stats.tokens
    assert stats.batches > 0
    if not options:
        d = enc.describe()
        assert d["tokens_per_batch"] == CPU_AUTO_TOKENS_PER_BATCH and d["pad_multiple"] == 1
        assert stats.padding_efficiency > 0.7


def test_bfloat16_close_to_float32(texts200, reference):
    enc = _encoder(dtype="bfloat16")
    assert enc.describe()["dtype"] == "bfloat16"
    emb, _ = _encode(enc, texts200)
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    cos = cosine_rows(emb, reference)
    assert cos.min() >= 0.999, f"worst row {int(cos.argmin())}: {cos.min()}"


def test_truncation_is_counted_and_matches(st_model, texts200):
    enc = _encoder(bucket_min_tokens=16, bucket_max_tokens=32)
    assert enc.max_tokens == 32
    stats = WorkerStats()
    prepared = enc.prepare(texts200, stats)
    assert prepared.token_counts.max() <= 32
    assert prepared.truncated.any() and not prepared.truncated.all()
    emb = enc.encode(prepared, stats)
    assert stats.truncated == int(prepared.truncated.sum())
    old = st_model.max_seq_length
    try:
        st_model.max_seq_length = 32
        ref = st_model.encode(texts200, batch_size=32)
    finally:
        st_model.max_seq_length = old
    assert cosine_rows(emb, ref).min() >= 0.99999


def test_out_of_memory_splits_the_batch_and_lowers_the_budget(monkeypatch, texts200, reference):
    """A (faked) CUDA OOM on a big batch: the batch is split, the bucket budget lowered, no row lost."""
    import torch

    enc = _encoder(tokens_per_batch=4096)
    real_run = enc._run_batch
    calls = []

    def run_batch(batch_ids, batch_types, length):
        calls.append((len(batch_ids), length))
        if len(batch_ids) * length > 1024:  # the fake device holds 1024 padded tokens
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return real_run(batch_ids, batch_types, length)

    monkeypatch.setattr(enc, "_run_batch", run_batch)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    emb, stats = _encode(enc, texts200)
    assert stats.oom_splits > 0
    assert enc._bucket_budgets and all(v <= 4096 for v in enc._bucket_budgets.values())
    assert cosine_rows(emb, reference).min() >= 0.99999
    # A second pass plans with the lowered budgets: fewer (or no) failures.
    before = stats.oom_splits
    _, stats2 = _encode(enc, texts200)
    assert stats2.oom_splits < before


def test_empty_input():
    enc = _encoder()
    emb, stats = _encode(enc, [])
    assert emb.shape == (0, enc.dimension)
    assert stats.batches == 0


@pytest.mark.slow
def test_compiled_static_shapes_do_not_recompile(st_model, texts200):
    """--compile-model: warm-up compiles one graph per bucket; the run itself recompiles nothing."""
    pytest.importorskip("torch._inductor")
    enc = _encoder(compile_model=True, bucket_min_tokens=32, bucket_max_tokens=64, tokens_per_batch=512)
    assert enc._compiled_graphs >= len(enc._buckets) == 2
    emb, stats = _encode(enc, texts200[:60])
    assert stats.recompiles == 0
    assert stats.padded_tokens == stats.batches * 512  # every batch has the bucket's static shape
    old = st_model.max_seq_length
    try:
        st_model.max_seq_length = 64
        ref = st_model.encode(texts200[:60], batch_size=32)
    finally:
        st_model.max_seq_length = old
    assert cosine_rows(emb, ref).min() >= 0.99999
