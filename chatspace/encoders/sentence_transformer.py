"""The local encoder: a SentenceTransformer fed by per-length-bucket queues under a token budget.

Tokenization uses the model's own `preprocess` (so truncation, prompts and special tokens are exactly
what `SentenceTransformer.encode` does) but unpadded. Rows then wait in the batch planner's queues
(chatspace/encoders/batching.py), across chunks and units, until a bucket fills a batch; each batch is
padded to its own longest row (or not at all with unpadded flash attention), run with two batches in
flight (chatspace/encoders/torch_runtime.py), and its rows are joined back to their chunks by position.

Batch composition defaults: --tokens-per-batch when given; else --batch-size rows when given; else a
padded-token budget: CPU_AUTO_TOKENS_PER_BATCH on the CPU (activations stay in cache),
CUDA_AUTO_TOKENS_PER_BATCH on CUDA (a fixed row count at a 32k-token bucket would need tens of GB).
Compiled models (--compile-model) trace the batch and sequence dimensions as dynamic, so they pad
exactly like eager ones and compile two graphs (one for one-row batches) instead of one per shape.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from chatspace.config import SentenceTransformerConfig
from chatspace.encoders.backends import (
    RuntimeForward,
    check_device,
    export_cache_dir,
    exported_onnx,
    fused_onnx,
    input_names,
    model_key,
)
from chatspace.encoders.base import Encoder, Prepared
from chatspace.encoders.batching import Batch, BatchPlanner, length_buckets, pad_batch, worker_planner
from chatspace.encoders.encode_options import (
    ResolvedPrompt,
    check_truncate_dim,
    finish_embeddings,
    resolve_prompt,
)
from chatspace.encoders.loading import load_sentence_transformer
from chatspace.encoders.locate import resolve_model_path
from chatspace.encoders.tokenize import cut_bound, tokenize, use_tokenizer_threads
from chatspace.encoders.torch_runtime import (
    CompileCounters,
    InFlight,
    free_device_memory,
    is_out_of_memory,
    launch,
    peak_allocated_gib,
    set_compile_threads,
    use_host_free_masks,
    warm_up_shapes,
)
from chatspace.errors import ChatspaceError
from chatspace.hardware.cpu import slow_dtype_warning
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats

log = logging.getLogger(__name__)

# The CPU default budget (padded tokens per batch). Measured with all-MiniLM-L6-v2 on a 2-core AMX
# Xeon: batches of 1-4k tokens run 20-30% faster per token than 32 rows of 256 tokens (8k tokens: the
# activations leave the caches) and than 32 rows of 16 tokens (per-batch overhead), in float32 and
# bfloat16 alike; on the bench corpus this beats 32-row batches by ~20% (float32).
CPU_AUTO_TOKENS_PER_BATCH = 2048
# The CUDA default: text-embeddings-inference's default max_batch_tokens. Memory then grows with the
# tokens in a batch, not with rows x the longest bucket.
CUDA_AUTO_TOKENS_PER_BATCH = 16384
DEFAULT_BATCH_SIZE = 32  # rows per batch without a token budget (SentenceTransformer.encode's default)


@dataclass
class _Chunk:
    """A prepared chunk whose rows are waiting in (or coming back from) the batch planner."""

    prepared: Prepared
    stats: WorkerStats
    out: np.ndarray
    left: int


class SentenceTransformerEncoder(Encoder):
    def __init__(
        self,
        cfg: SentenceTransformerConfig,
        device: Device,
        threads: int | None,
        *,
        export_cache: Path | None = None,
    ):
        self.cfg = cfg
        self.export_cache = export_cache or export_cache_dir(None)  # where --backend onnx/openvino exports
        self.device = device
        self.threads = threads
        self.model_name = cfg.model
        self._model = None
        self._forward = None
        self._max_tokens = 0
        self._dim = 0
        self._buckets: list[int] = []
        self._dtype_name = ""
        self._attn = None
        self._varlen = False  # unpadded (flash-attention varlen) batches
        self._host_free_masks = False  # SDPA masks built without reading them on the host
        self._collator = None
        self._planner: BatchPlanner | None = None
        self._chunks: dict[Any, _Chunk] = {}
        self._inflight: deque[InFlight] = deque()
        self._done: list[Any] = []
        self._own_keys = 0  # negative chunk keys for warm-up and one-off encode() calls
        self._compile_base = CompileCounters()
        self.compile_counters = CompileCounters()  # graphs etc. compiled by warm-up
        self.gpu_busy_seconds = 0.0
        self._prompt = ResolvedPrompt(None, None, "none", None)
        self._cut_at: int | None = None  # texts longer than this are cut before tokenizing

    # --- loading ---------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def _cuda(self) -> bool:
        return self.device.kind == "cuda"

    def load(self, stats: WorkerStats) -> None:
        t0 = time.perf_counter()  # importing torch is part of getting the model ready
        use_tokenizer_threads(self.threads)
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        set_compile_threads(self.threads)
        torch_device = "cuda:0" if self._cuda else "cpu"
        dtype_name = self.cfg.dtype or ("bfloat16" if self._cuda else "float32")
        self._dtype_name = dtype_name
        backend = self.cfg.backend
        check_device(backend, self.device.kind)
        slow = None if self._cuda or backend != "torch" else slow_dtype_warning(dtype_name)
        if slow:
            log.warning(slow)
        # Other backends run an export of the float32 model (OpenVINO in the precision asked for).
        torch_dtype = dtype_name if backend == "torch" else "float32"
        model, self._attn = load_sentence_transformer(self.cfg, torch_device, torch_dtype)
        model_max = int(model.max_seq_length or 512)
        self._max_tokens = min(self.cfg.bucket_max_tokens or model_max, model_max)
        model.max_seq_length = self._max_tokens
        self._cut_at = cut_bound(model.tokenizer, self._max_tokens)
        self._buckets = length_buckets(min(self.cfg.bucket_min_tokens, self._max_tokens), self._max_tokens)
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dim = check_truncate_dim(self.cfg.truncate_dim, int(get_dim()))
        self._prompt = resolve_prompt(model, self.cfg.prompt, self.cfg.prompt_name)
        self._model = self.model = model  # `model`: what --long-text reads (encoders.chunking)
        self._forward = model if backend == "torch" else self._runtime_forward(model)
        self._take_over_flattening(model)
        # Unpadded (varlen) batches carry no mask; padded ones get one that needs no host check.
        self._host_free_masks = backend == "torch" and not self._varlen and use_host_free_masks(model)
        budget = self._budget()
        self._planner = worker_planner(
            self._buckets, budget=budget, batch_size=self._batch_size, varlen=self._varlen, cuda=self._cuda
        )
        stats.load_seconds += time.perf_counter() - t0

        t1 = time.perf_counter()
        if self.cfg.compile_model:
            self._compile_base = CompileCounters.now()
            mode = {"mode": self.cfg.compile_mode} if self.cfg.compile_mode else {}
            self._forward = torch.compile(model, dynamic=None, **mode)
        stats.oom_splits += self._warm_up()
        if self.cfg.compile_model:
            self.compile_counters = CompileCounters.now() - self._compile_base
        stats.warmup_seconds += time.perf_counter() - t1

    def _runtime(self) -> RuntimeForward | None:
        return self._forward if isinstance(self._forward, RuntimeForward) else None

    def _runtime_forward(self, model) -> RuntimeForward:
        """The model's transformer exported to ONNX (once, into the output root's cache) and run by
        ONNX Runtime or OpenVINO; pooling and what follows stay the library's modules."""
        names = input_names(model)
        key = model_key(model, resolve_model_path(self.cfg.model), self.cfg.revision)
        path = exported_onnx(model, self.export_cache, key, names, self.cfg.quantize)
        if self.cfg.backend == "onnx" and not self.cfg.quantize:
            path = fused_onnx(model, path, names)
        return RuntimeForward(
            self.cfg.backend, path, model, names, threads=self.threads, dtype=self._dtype_name
        )

    def _take_over_flattening(self, model) -> None:
        """With flash attention, sentence-transformers 6 flattens a whole `preprocess` call into one
        row (`input_ids` of shape (1, total)), so per-text lengths would be lost. Tokenize unflattened
        and flatten each planned batch here instead, with the library's own collator: unpadded
        (varlen) batches, in which no padding is computed at all."""
        first = model[0] if len(model) else None
        if first is None or not getattr(first, "can_flatten_inputs", False):
            return
        self._varlen = True
        self._collator = first.data_collator
        self._position_offset = int(getattr(first, "_flatten_position_offset", 0) or 0)
        first.can_flatten_inputs = False  # prepare() sees one row per text again

    def _warm_up(self) -> int:
        """Run the shapes the run will see before the clock starts (warm_up_shapes: largest first,
        none beyond what a real batch of the budget needs), through the same guarded path as real
        batches, so running out of memory here lowers the budget instead of failing the worker.
        Returns the out-of-memory splits it took."""
        pad = self._pad_id
        shapes = warm_up_shapes(
            max_tokens=self._max_tokens,
            budget=self._budget(),
            batch_size=self._batch_size,
            compiled=self.cfg.compile_model,
            cuda=self._cuda,
        )
        sample = self._model.preprocess(
            ["warm-up"], processing_kwargs={"common": {"return_tensors": None}, "text": {"padding": False}}
        )
        has_types = sample.get("token_type_ids") is not None
        warm_stats = WorkerStats()
        for rows, length in shapes:
            ids = [[pad] * length for _ in range(rows)]
            if rows > 1 and length > 1:
                ids[0] = ids[0][: max(1, length // 2)]  # a padded row, as most batches have
            lengths = np.array([len(x) for x in ids], dtype=np.int64)
            payload = {"input_ids": ids, "token_type_ids": [[0] * len(x) for x in ids] if has_types else None}
            prepared = Prepared([""] * rows, lengths, np.zeros(rows, bool), {}, payload)
            key = self._own_key()
            self._chunks[key] = _Chunk(prepared, warm_stats, np.zeros((rows, self._dim), np.float32), rows)
            # One batch exactly, whatever the planner would do: the shape is the point.
            batch = Batch(np.full(rows, key), np.arange(rows), lengths, int(lengths.max()), self._buckets[-1])
            self._run_batches([batch])
            self._collect_all()
            self._done.clear()
            self._chunks.pop(key, None)
        return warm_stats.oom_splits

    def _own_key(self) -> int:
        self._own_keys -= 1
        return self._own_keys

    def _budget(self) -> int | None:
        """The padded-token budget per batch: --tokens-per-batch; when neither it nor --batch-size
        is given, the device's default; otherwise none (row counts)."""
        if self.cfg.tokens_per_batch:
            return self.cfg.tokens_per_batch
        if self.cfg.batch_size is None:
            return CUDA_AUTO_TOKENS_PER_BATCH if self._cuda else CPU_AUTO_TOKENS_PER_BATCH
        return None

    @property
    def _batch_size(self) -> int:
        return self.cfg.batch_size or DEFAULT_BATCH_SIZE

    @cached_property  # asked per batch; the tokenizer's attribute lookups are slow
    def _pad_id(self) -> int:
        tok = self._model.tokenizer
        return int(next((t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0))

    def describe(self) -> dict[str, Any]:
        budget = self._budget()
        source = None
        if self.cfg.tokens_per_batch:
            source = "option"
        elif budget:
            source = f"{self.device.kind}-default"
        return {
            "model": self.model_name,
            "model_path": resolve_model_path(self.cfg.model),
            "dimension": self._dim,
            "max_tokens": self._max_tokens,
            "dtype": runtime.precision if (runtime := self._runtime()) else self._dtype_name,
            "backend": self.cfg.backend,
            "quantize": self.cfg.quantize,
            "backend_model": str(runtime.onnx_path) if runtime else None,
            "attn_implementation": self._attn,
            "unpadded_batches": self._varlen,
            "host_free_masks": self._host_free_masks,
            "compiled": self.cfg.compile_model,
            "compiled_graphs": self.compile_counters.graphs if self.cfg.compile_model else None,
            "graph_breaks": self.compile_counters.graph_breaks if self.cfg.compile_model else None,
            "buckets": len(self._buckets),
            "tokens_per_batch": budget,
            "tokens_per_batch_source": source,
            "batch_size": None if budget else self._batch_size,
            "device": self.device.label,
            "threads": self.threads,
            "tokenizer_threads": self.threads,
            "cut_texts_over_chars": self._cut_at,
            "prompt": self._prompt.text,
            "prompt_name": self._prompt.name,
            "prompt_source": self._prompt.source,
            "prompt_tokens": self._prompt.length,
            "normalize": self.cfg.normalize,
            "truncate_dim": self.cfg.truncate_dim,
            "revision": self.cfg.revision,
        }

    def device_stats(self) -> dict[str, float]:
        if not self._cuda:
            return {}
        out = {"gpu_busy_seconds": self.gpu_busy_seconds}
        peak = peak_allocated_gib()
        if peak is not None:
            out["peak_allocated_gib"] = peak
        return out

    # --- tokenizing ------------------------------------------------------------------------------

    def prepare(self, texts: list[str], stats: WorkerStats) -> Prepared:
        with stats.busy("tokenize"):
            return tokenize(
                self._model, texts, prompt=self._prompt.text, max_tokens=self._max_tokens, cut_at=self._cut_at
            )

    # --- encoding: rows in, batches planned across chunks, rows joined back by position ------------

    def submit(self, key: Any, prepared: Prepared, stats: WorkerStats) -> None:
        n = len(prepared.texts)
        self._chunks[key] = _Chunk(prepared, stats, np.zeros((n, self._dim), np.float32), n)
        stats.tokens += int(prepared.token_counts.sum())
        stats.truncated += int(prepared.truncated.sum())
        if n == 0:
            self._done.append(key)
            return
        self._planner.add(key, prepared.token_counts)

    def poll(self, flush: str = "full") -> list[tuple[Any, np.ndarray]]:
        """Run what is ready; return the chunks whose rows are all back, as (key, embeddings).

        flush: "full" runs only batches that fill their budget; "starved" (no input is waiting) also
        runs one batch around the oldest waiting row at once, behind whatever is in flight (or, with
        no row waiting, waits for the oldest batch in flight); "all" (no more input is coming) runs
        and collects everything."""
        self._run_batches(self._planner.full_batches())
        if flush == "all":
            self._run_batches(self._planner.flush())
            self._collect_all()
        elif flush == "starved":
            while self._inflight and self._inflight[0].finished():
                self._collect(self._inflight.popleft())
            if self._planner.pending_rows:
                self._run_batches(self._planner.flush_oldest())
            elif self._inflight:
                self._collect(self._inflight.popleft())
        done, self._done = self._done, []
        out = []
        for key in done:
            chunk = self._chunks.pop(key)
            out.append((key, chunk.out))
        return out

    def has_pending(self) -> bool:
        return bool(self._planner.pending_rows or self._inflight or self._done)

    def encode(self, prepared: Prepared, stats: WorkerStats) -> np.ndarray:
        """One chunk on its own, start to finish (the streaming path is submit/poll)."""
        key = self._own_key()
        self.submit(key, prepared, stats)
        results = dict(self.poll("all"))
        return results[key]

    def _run_batches(self, batches: list[Batch]) -> None:
        """Launch each batch, keeping two in flight: batch i is collected only after i+1 is queued."""
        for batch in batches:
            for part in self._launch_adapting(batch):
                self._inflight.append(part)
                while len(self._inflight) > 1:
                    self._collect(self._inflight.popleft())

    def _launch_adapting(self, batch: Batch):
        """Launch `batch`; when it runs out of memory, split it in halves and lower the budget of its
        bucket (and longer ones) to what a half costs, so later batches are planned to fit. The retry
        happens after the `except` block is left, so the failed attempt's tensors are already freed."""
        work = [batch]
        while work:
            part = work.pop()
            t = time.perf_counter()
            try:
                yield self._launch(part, t)
                continue
            except Exception as e:  # noqa: BLE001 - only out-of-memory is handled; the rest re-raises
                if not is_out_of_memory(e):
                    raise
            # Out of the handler: the traceback (and the failed attempt's activations) are gone.
            self._collect_all()
            free_device_memory()
            self._stats_for(part).oom_splits += 1
            if len(part) == 1:
                raise ChatspaceError(
                    f"out of memory on a single row of {part.length} tokens on {self.device.label}; "
                    "lower --bucket-max-tokens or use a device with more memory"
                )
            first, second = part.split()
            cost = first.real_tokens if self._varlen else len(first) * first.length
            lowered = self._planner.lower_budget(part.bucket, cost)
            log.warning(
                "out of memory on a batch of %d rows x %d tokens; split in two, and batches of rows up to "
                "%d tokens now stay within %d tokens",
                len(part),
                part.length,
                part.bucket,
                lowered,
            )
            work.extend([second, first])

    def _launch(self, batch: Batch, t0: float) -> InFlight:
        features = self._features(batch)
        result, started, done = launch(self._embed, features, cuda=self._cuda, dynamic=self.cfg.compile_model)
        return InFlight(batch, result, done, started, t0, time.perf_counter() - t0)

    def _embed(self, features: dict[str, Any]):
        """The model's sentence embeddings for one batch (on its device), as encode() would finish them."""
        result = self._forward(features)["sentence_embedding"]
        return finish_embeddings(result, truncate_dim=self.cfg.truncate_dim, normalize=self.cfg.normalize)

    def _collect(self, flight: InFlight) -> None:
        t = time.perf_counter()
        emb, gpu_seconds = flight.collect()
        self.gpu_busy_seconds += gpu_seconds
        batch = flight.batch
        host_seconds = flight.launch_seconds + (time.perf_counter() - t)
        computed = batch.real_tokens if self._varlen else len(batch) * batch.length
        keys = batch.chunks.tolist()
        # Attribute the batch to the chunks it served, by their share of its rows.
        counted = set()
        for i, key in enumerate(keys):
            chunk = self._chunks.get(key)
            if chunk is None:
                continue
            pos = int(batch.positions[i])
            chunk.out[pos] = emb[i]
            chunk.left -= 1
            if chunk.left == 0:
                self._done.append(key)
            if key not in counted:
                counted.add(key)
                share = keys.count(key) / len(keys)
                chunk.stats.add_busy("encode", host_seconds * share)
                chunk.stats.padded_tokens += round(computed * share)
        for key, (rows, tokens) in batch.rows_per_chunk().items():  # progress moves per batch
            self.rows_back(key, rows, tokens)
        first = self._chunks.get(keys[0])
        if first is not None:
            first.stats.batches += 1
        if first is not None and self.cfg.compile_model:
            counters = CompileCounters.now() - self._compile_base
            first.stats.recompiles += max(0, counters.graphs - self.compile_counters.graphs)
            self.compile_counters = counters

    def _collect_all(self) -> None:
        while self._inflight:
            self._collect(self._inflight.popleft())

    def _stats_for(self, batch: Batch) -> WorkerStats:
        chunk = self._chunks.get(batch.chunks[0])
        return chunk.stats if chunk is not None else WorkerStats()

    def _features(self, batch: Batch) -> dict[str, Any]:
        """The model inputs of a batch: padded to its longest row, or flattened (varlen)."""
        import torch

        rows = [self._chunks[k].prepared.payload for k in batch.chunks.tolist()]
        positions = batch.positions.tolist()
        # No row is longer than the batch's length (its longest row): taken as they are, not copied.
        ids = [payload["input_ids"][p] for payload, p in zip(rows, positions, strict=True)]
        types = [
            payload["token_type_ids"][p] if payload.get("token_type_ids") is not None else None
            for payload, p in zip(rows, positions, strict=True)
        ]
        if self._varlen:
            samples = [{"input_ids": x} for x in ids]
            features = self._collator(samples)
            features.pop("labels", None)
            if self._position_offset:
                features["position_ids"] = features["position_ids"] + self._position_offset
            features = {k: v for k, v in features.items()}
        else:
            features = pad_batch(ids, types, batch.length, self._pad_id, left=self._left_padding)
        features["modality"] = "text"
        if self._prompt.length:
            features["prompt_length"] = self._prompt.length  # pooling may leave the prompt out
        return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in features.items()}

    @cached_property
    def _left_padding(self) -> bool:
        return getattr(self._model.tokenizer, "padding_side", "right") == "left"
