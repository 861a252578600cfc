"""The bucketed SentenceTransformer encoder: equality with the plain library call, streaming across
chunks, out-of-memory recovery, compilation."""

from __future__ import annotations

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.encoders.sentence_transformer import (
    CPU_AUTO_TOKENS_PER_BATCH,
    SentenceTransformerEncoder,
)
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats
from tests.helpers import cosine_rows

# --- the encoder against SentenceTransformer.encode ----------------------------------------------------


def _encoder(**overrides) -> SentenceTransformerEncoder:
    cfg = RunConfig.from_options(dataset="unused", output_root="/tmp/unused", **overrides)
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cpu", "cpu:0"), None)
    enc.load(WorkerStats())
    return enc


def _encode(enc: SentenceTransformerEncoder, texts: list[str]) -> tuple[np.ndarray, WorkerStats]:
    stats = WorkerStats()
    prepared = enc.prepare(texts, stats)
    return enc.encode(prepared, stats), stats


# texts200 (mixed lengths, shuffled) and reference (their SentenceTransformer.encode) come from
# tests/encoders/conftest.py, computed once for every module here.


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
        assert d["tokens_per_batch"] == CPU_AUTO_TOKENS_PER_BATCH
        assert stats.padding_efficiency > 0.9


def test_bfloat16_close_to_float32(texts200, reference):
    import torch

    enc = _encoder(dtype="bfloat16")
    assert enc.describe()["dtype"] == "bfloat16"
    # The model really runs in bfloat16 (a silently ignored flag would leave float32 parameters) ...
    assert {p.dtype for p in enc._model.parameters()} == {torch.bfloat16}
    emb, _ = _encode(enc, texts200)
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
    cos = cosine_rows(emb, reference)
    assert cos.min() >= 0.999, f"worst row {int(cos.argmin())}: {cos.min()}"
    # ... and its vectors differ from float32 by more than float32 rounding, but not by much.
    assert np.abs(emb - reference).max() > 1e-3
    assert cos.mean() < 0.99999


def _fake_cpuinfo(tmp_path, monkeypatch, flags: str) -> None:
    """/proc/cpuinfo as another CPU would write it (the one boundary faked)."""
    from chatspace.hardware import cpu

    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(cpu, "CPUINFO", path)
    cpu.cpu_features.cache_clear()


@pytest.mark.parametrize(
    ("flags", "warned"),
    [("fpu sse2 avx2 fma", True), ("avx2 avx512f avx512_bf16", False), ("avx2 amx_tile amx_bf16", False)],
    ids=["avx2-only", "avx512-bf16", "amx"],
)
def test_bfloat16_on_a_cpu_without_native_bf16_warns_once(tmp_path, monkeypatch, caplog, flags, warned):
    from chatspace.hardware import cpu

    _fake_cpuinfo(tmp_path, monkeypatch, flags)
    try:
        with caplog.at_level("WARNING"):
            _encoder(dtype="bfloat16")
            _encoder(dtype="float32")
    finally:
        cpu.cpu_features.cache_clear()
    lines = [r.getMessage() for r in caplog.records if "bfloat16" in r.getMessage()]
    if warned:
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert "Test CPU" in lines[0] and "--dtype float32" in lines[0]
    else:
        assert lines == []


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


def test_empty_input():
    enc = _encoder()
    emb, stats = _encode(enc, [])
    assert emb.shape == (0, enc.dimension)
    assert stats.batches == 0


def test_chunks_stream_through_one_planner_and_come_back_by_position(texts200, reference):
    """Rows of several chunks share batches; each chunk's embeddings come back in its own order."""
    enc = _encoder(tokens_per_batch=4096)
    stats = [WorkerStats() for _ in range(4)]
    got: dict[int, np.ndarray] = {}
    for i in range(4):
        enc.submit(i, enc.prepare(texts200[i * 50 : (i + 1) * 50], stats[i]), stats[i])
        got.update(enc.poll("full"))
    assert enc.has_pending()
    got.update(enc.poll("all"))
    assert not enc.has_pending() and sorted(got) == [0, 1, 2, 3]
    emb = np.concatenate([got[i] for i in range(4)])
    assert cosine_rows(emb, reference).min() >= 0.99999
    total = sum(stats, WorkerStats())
    assert total.tokens == sum(s.tokens for s in stats) and total.padded_tokens >= total.tokens
    # Fewer batches than planning each chunk on its own with the same buckets and budget would make.
    from chatspace.encoders.batching import BatchPlanner

    per_chunk = 0
    for i in range(4):
        alone = BatchPlanner(enc._buckets, budget=4096, batch_size=32)
        alone.add(0, enc.prepare(texts200[i * 50 : (i + 1) * 50], WorkerStats()).token_counts)
        per_chunk += len(alone.full_batches() + alone.flush())
    assert total.batches < per_chunk


class FakeAllocator:
    """A device of `capacity` padded tokens at the allocator boundary. A forward first takes half its
    activations, then the rest; when the rest does not fit it raises CUDA's OutOfMemoryError with the
    first half still held by its frame, as a real failed forward holds its activations until the
    exception (and its traceback) is gone."""

    def __init__(self, real_launch, capacity: int):
        self.real_launch = real_launch
        self.capacity = capacity
        self.live: list[int] = []  # sizes of blocks alive right now
        self.ooms = 0
        self.ran: list[int] = []
        self.live_at_start: list[int] = []

    def __call__(self, forward, features, *, cuda, **options):
        import torch

        need = int(features["input_ids"].numel())
        self.live_at_start.append(sum(self.live))
        first = _Block(self, need // 2)  # noqa: F841 - held by this frame, as activations would be
        if sum(self.live) + (need - need // 2) > self.capacity:
            self.ooms += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate (fake)")
        self.ran.append(need)
        return self.real_launch(forward, features, cuda=cuda, **options)


class _Block:
    def __init__(self, owner: FakeAllocator, size: int):
        self.owner, self.size = owner, size
        owner.live.append(size)

    def __del__(self):
        self.owner.live.remove(self.size)


def test_out_of_memory_splits_outside_the_handler_and_adapts_the_budget(monkeypatch, texts200, reference):
    from chatspace.encoders import sentence_transformer as st_mod

    enc = _encoder(tokens_per_batch=4096)
    fake = FakeAllocator(st_mod.launch, capacity=1024)
    monkeypatch.setattr(st_mod, "launch", fake)
    rows = 100  # batches of up to 4096 tokens in several buckets, on a device that fits 1024
    emb, stats = _encode(enc, texts200[:rows])
    assert fake.ooms > 0 and stats.oom_splits == fake.ooms
    assert max(fake.ran) <= fake.capacity  # everything that ran fitted the fake device
    # Every attempt started on an empty device: the failed attempt's memory was freed before the
    # retry (a retry inside the `except` block would still hold it through the traceback).
    assert set(fake.live_at_start) == {0}
    assert cosine_rows(emb, reference[:rows]).min() >= 0.99999
    # The budgets adapted: a second pass over the same rows runs out of memory no more.
    ooms = fake.ooms
    emb2, stats2 = _encode(enc, texts200[:rows])
    assert stats2.oom_splits == 0 and fake.ooms == ooms
    assert cosine_rows(emb2, reference[:rows]).min() >= 0.99999


def test_warm_up_out_of_memory_adapts_instead_of_failing(monkeypatch, texts200, reference):
    from chatspace.encoders import sentence_transformer as st_mod

    fake = FakeAllocator(st_mod.launch, capacity=24)  # the warm-up batch is 2 rows x 16 tokens
    monkeypatch.setattr(st_mod, "launch", fake)
    cfg = RunConfig.from_options(dataset="unused", output_root="/tmp/unused", tokens_per_batch=4096)
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cpu", "cpu:0"), None)
    load_stats = WorkerStats()
    enc.load(load_stats)
    assert fake.ooms >= 1 and max(fake.ran) <= 24
    assert enc._planner.bucket_budgets  # lowered during warm-up
    assert load_stats.oom_splits == fake.ooms


def test_a_single_row_that_does_not_fit_is_one_clear_error(monkeypatch, texts200):
    from chatspace.encoders import sentence_transformer as st_mod
    from chatspace.errors import ChatspaceError

    enc = _encoder(tokens_per_batch=4096)
    monkeypatch.setattr(st_mod, "launch", FakeAllocator(st_mod.launch, capacity=4))
    with pytest.raises(ChatspaceError, match="out of memory on a single row"):
        _encode(enc, texts200[:5])


@pytest.mark.slow
def test_compiled_dynamic_shapes_two_graphs_no_recompiles(st_model, texts200):
    """--compile-model: warm-up compiles a dynamic graph and a one-row graph; batches of any shape
    then reuse them (dynamo is told to fail outright if the recompile limit is hit)."""
    pytest.importorskip("torch._inductor")
    import torch

    # A worker compiles in a fresh process; here an earlier test may have left the same model's graphs
    # in dynamo's cache, and reusing them would compile nothing to count.
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        enc = _encoder(compile_model=True, bucket_max_tokens=64, tokens_per_batch=512)
        assert enc.compile_counters.graphs == 2 and enc.compile_counters.graph_breaks == 0
        emb, stats = _encode(enc, texts200[:80])
    assert stats.recompiles == 0 and stats.batches > 5
    assert enc.compile_counters.graphs == 2 and enc.compile_counters.limit_hits == 0
    assert stats.padded_tokens < 1.1 * stats.tokens  # padded like eager: to each batch's longest row
    old = st_model.max_seq_length
    try:
        st_model.max_seq_length = 64
        ref = st_model.encode(texts200[:80], batch_size=32)
    finally:
        st_model.max_seq_length = old
    assert cosine_rows(emb, ref).min() >= 0.99999
