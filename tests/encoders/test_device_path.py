"""The CUDA path's promises, checked on the CPU: no host sync inside a batch's forward, and a starved
poll that never waits for every batch in flight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.encoders.test_encoder import _encode, _encoder
from tests.helpers import cosine_rows

# Ops that read a tensor's value on the host: item(), bool(), int(), float() and the like.
HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}


class HostReads(TorchDispatchMode):
    """Records every op that reads a tensor value on the host (on a GPU: a device sync)."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS or func.overloadpacket in (torch.ops.aten.item,):
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_one_encode_step_reads_no_device_value_on_the_host(texts200, st_model):
    from chatspace.encoders.batching import Batch
    from chatspace.encoders.sentence_transformer import _Chunk
    from chatspace.stats import WorkerStats

    enc = _encoder(tokens_per_batch=4096)
    assert enc.describe()["host_free_masks"] is True
    texts = texts200[:24]  # rows of many lengths: the batch is padded
    stats = WorkerStats()
    prepared = enc.prepare(texts, stats)
    enc._chunks[7] = _Chunk(prepared, stats, np.zeros((len(texts), enc.dimension), np.float32), len(texts))
    lengths = prepared.token_counts
    batch = Batch(np.full(len(texts), 7), np.arange(len(texts)), lengths, int(lengths.max()), 256)
    features = enc._features(batch)
    assert features["attention_mask"].min() == 0  # padded: the stock masks would check it on the host
    with HostReads() as mode, torch.inference_mode():
        emb = enc._embed(features)
    assert mode.reads == []
    ref = st_model.encode(texts, batch_size=32)
    assert cosine_rows(emb.float().numpy(), ref).min() >= 0.99999
    # The check can fail: transformers' stock SDPA masks read the mask on the host in every forward.
    with HostReads() as mode, torch.inference_mode():
        st_model(st_model.preprocess(texts))
    assert mode.reads


def test_a_starved_poll_runs_the_oldest_rows_behind_a_batch_in_flight(texts200, reference):
    """A starved poll launches the oldest waiting rows behind a batch still in flight; the batch in
    flight is collected only once the next one is queued (the device never runs dry waiting)."""
    from chatspace.stats import WorkerStats

    enc = _encoder(tokens_per_batch=100_000)  # nothing fills: every batch is forced out
    in_flight_when_collected = []

    real_launch = enc._launch

    def launch_running(batch, t0):
        """A launched batch whose device work has not finished yet (until it is collected)."""
        flight = real_launch(batch, t0)
        collect = flight.collect
        flight.finished = lambda: False

        def collect_counted():
            in_flight_when_collected.append(len(enc._inflight))
            return collect()

        flight.collect = collect_counted
        return flight

    enc._launch = launch_running
    stats = WorkerStats()
    half = 40  # two chunks of waiting rows: more only repeats the same starved polls
    enc.submit(0, enc.prepare(texts200[:half], stats), stats)
    assert enc.poll("starved") == []
    assert len(enc._inflight) == 1 and in_flight_when_collected == []  # launched, not waited for
    enc.submit(1, enc.prepare(texts200[half : 2 * half], stats), stats)
    enc.poll("starved")
    assert in_flight_when_collected[0] == 1  # the first was collected with the second queued
    done = {}
    while enc.has_pending():
        done.update(enc.poll("all"))
    emb = np.concatenate([done[0], done[1]])
    assert cosine_rows(emb, reference[: 2 * half]).min() >= 0.99999


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    ],
)
def test_a_cuda_library_allocation_failure_splits_the_batch(monkeypatch, texts200, reference, message):
    """cuBLAS/cuDNN allocation failures arrive as a RuntimeError: the batch is split as for torch's
    OutOfMemoryError, and the rows still come back right."""
    from chatspace.encoders import sentence_transformer as st_mod

    enc = _encoder(tokens_per_batch=4096)
    real_launch = st_mod.launch
    failed = []

    def launch_small_batches_only(forward, features, *, cuda, **options):
        if features["input_ids"].numel() > 1024:
            failed.append(features["input_ids"].numel())
            raise RuntimeError(message)
        return real_launch(forward, features, cuda=cuda, **options)

    monkeypatch.setattr(st_mod, "launch", launch_small_batches_only)
    rows = 100  # enough for several batches over the 1024 tokens that fit (64 rows make none)
    emb, stats = _encode(enc, texts200[:rows])
    assert failed and stats.oom_splits == len(failed)
    assert cosine_rows(emb, reference[:rows]).min() >= 0.99999


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    from chatspace.encoders.torch_runtime import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `x`"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_out_of_memory(ValueError("CUBLAS_STATUS_ALLOC_FAILED"))


@pytest.mark.parametrize("max_tokens", [64, 256, 8192, 32768])
@pytest.mark.parametrize("budget", [None, 512, 2048, 16384, 131072])
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("cuda", [False, True])
def test_warm_up_never_needs_more_than_a_real_batch(max_tokens, budget, compiled, cuda):
    """Every warm-up batch is one the planner can make: within the budget (rows x length), or a
    single row no longer than the longest bucket; compiled, the largest shape comes first."""
    from chatspace.encoders.torch_runtime import warm_up_shapes

    shapes = warm_up_shapes(max_tokens=max_tokens, budget=budget, batch_size=32, compiled=compiled, cuda=cuda)
    for rows, length in shapes:
        assert 1 <= length <= max_tokens
        assert rows == 1 or (rows * length <= budget if budget else rows <= 32)
    many_rows = [s for s in shapes if s[0] > 1]
    assert shapes[0] == max(many_rows, key=lambda s: s[0] * s[1] ** 2)  # largest attention first
    if compiled:
        assert {s[0] == 1 for s in shapes} == {True, False}  # the one-row and the many-row graphs


@pytest.mark.slow
def test_compiled_through_the_device_copy_two_graphs_no_recompiles(texts200):
    """--compile-model, the inputs marked dynamic on the copies that enter the model (the CUDA path's
    copy, made on the CPU too): warm-up compiles two graphs, and a run whose batches reach the
    budget's largest shape compiles nothing more."""
    pytest.importorskip("torch._inductor")
    from chatspace.stats import WorkerStats

    # A worker compiles in a fresh process; here an earlier test may have left the same model's graphs
    # in dynamo's cache, and reusing them would compile nothing to count.
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        enc = _encoder(compile_model=True, bucket_max_tokens=64, tokens_per_batch=512)
        assert enc.compile_counters.graphs == 2 and enc.compile_counters.graph_breaks == 0
        shapes = []
        real_launch = enc._launch

        def launch_recorded(batch, t0):
            shapes.append((len(batch), batch.length))
            return real_launch(batch, t0)

        enc._launch = launch_recorded
        stats = WorkerStats()
        enc.encode(enc.prepare(texts200, stats), stats)
    assert (8, 64) in shapes  # the budget's largest shape: 512 tokens as 8 rows of the longest bucket
    assert len(set(shapes)) > 5
    assert stats.recompiles == 0 and enc.compile_counters.graphs == 2
    assert enc.compile_counters.limit_hits == 0


def test_a_causal_decoder_reads_no_mask_value_on_the_host_either():
    """A Qwen3-shaped decoder (causal mask, left padding), tiny and random: the same masks, no host read."""
    from types import SimpleNamespace

    from transformers import Qwen3Config, Qwen3Model

    from chatspace.encoders.torch_runtime import use_host_free_masks

    torch.manual_seed(0)
    config = Qwen3Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=1000,
    )
    model = Qwen3Model(config).eval()
    model.set_attn_implementation("sdpa")
    ids = torch.randint(5, 999, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, :5] = 0  # a left-padded row
    with HostReads() as stock, torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert stock.reads  # transformers' own causal mask checks the padding on the host
    assert use_host_free_masks([SimpleNamespace(model=model)])
    with HostReads() as mode, torch.inference_mode():
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert mode.reads == []
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)
