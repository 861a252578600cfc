"""Batch planning for the local encoder: per-length-bucket queues that fill across chunks and units.

Rows enter as they are tokenized, tagged with the chunk they came from and their position in it; each
waits in the queue of its length bucket (narrow buckets: each ~`growth` times the last) until the
bucket holds a full padded-token budget, so a 131,072-token batch fills even when a unit has only 50
rows. A batch is padded to its own longest row, never to its bucket's edge, so a partial batch (the
end of the input, a starved queue, the pending bound) costs rows per batch, not padding. Results are
joined back by (chunk, position), never by arrival order.

Memory stays bounded: when the queues hold more than `max_pending_tokens`, the bucket holding the
oldest row is flushed, so no unit waits for ever and a worker holds only a few units open.
With unpadded (varlen) attention a batch costs its real tokens, and nothing is padded at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain, repeat

import numpy as np

BUCKET_GROWTH = 1.1  # each bucket ~10% longer than the last: pad-to-longest wastes < ~5% in a bucket


def length_buckets(min_tokens: int, max_tokens: int, growth: float = BUCKET_GROWTH) -> list[int]:
    """Upper edges of the length buckets: min_tokens, then each ~`growth` times (at least one token)
    longer than the last, the last exactly max_tokens."""
    edges = []
    edge = max(1, min(min_tokens, max_tokens))
    while edge < max_tokens:
        edges.append(edge)
        edge = max(edge + 1, math.ceil(round(edge * growth, 6)))
    edges.append(max_tokens)
    return edges


@dataclass
class Batch:
    """One planned batch: which rows (chunk id, position in chunk) and the length they are padded to."""

    chunks: np.ndarray  # chunk id per row
    positions: np.ndarray  # position in its chunk per row
    lengths: np.ndarray  # real tokens per row (truncated to the largest bucket)
    length: int  # padded sequence length: the longest row
    bucket: int  # the bucket's upper edge

    def __len__(self) -> int:
        return len(self.positions)

    def rows_per_chunk(self) -> dict[int, tuple[int, int]]:
        """(rows, real tokens) of this batch per chunk it serves: what progress counts as it comes back."""
        keys, first, counts = np.unique(self.chunks, return_inverse=True, return_counts=True)
        tokens = np.bincount(first, weights=self.lengths, minlength=len(keys))
        return {k: (int(n), int(t)) for k, n, t in zip(keys.tolist(), counts, tokens, strict=True)}

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())

    def split(self) -> tuple[Batch, Batch]:
        """Two halves, each padded to its own longest row (used after running out of memory)."""
        half = len(self) // 2
        parts = []
        for sl in (slice(0, half), slice(half, None)):
            lengths = self.lengths[sl]
            parts.append(Batch(self.chunks[sl], self.positions[sl], lengths, int(lengths.max()), self.bucket))
        return parts[0], parts[1]


@dataclass
class _Queue:
    lengths: list[np.ndarray] = field(default_factory=list)
    chunks: list[np.ndarray] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    rows: int = 0
    tokens: int = 0
    longest: int = 0

    def take_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths, chunks, positions = (np.concatenate(x) for x in (self.lengths, self.chunks, self.positions))
        order = np.argsort(lengths, kind="stable")
        self.lengths, self.chunks, self.positions = [], [], []
        self.rows = self.tokens = self.longest = 0
        return lengths[order], chunks[order], positions[order]

    def put(self, lengths: np.ndarray, chunks: np.ndarray, positions: np.ndarray) -> None:
        if not len(lengths):
            return
        self.lengths.append(lengths)
        self.chunks.append(chunks)
        self.positions.append(positions)
        self.rows += len(lengths)
        self.tokens += int(lengths.sum())
        self.longest = max(self.longest, int(lengths.max()))


class BatchPlanner:
    """Per-bucket queues of rows waiting to be batched under a token budget (or a row count).

    `budget`: padded tokens per batch (rows x longest row; with `varlen`, the real tokens); None
    batches by `batch_size` rows. `max_rows` caps the rows of any batch. `bucket_budgets` lowers
    the budget of a bucket and every longer one (after running out of memory).
    """

    def __init__(
        self,
        buckets: list[int],
        *,
        budget: int | None,
        batch_size: int,
        max_rows: int | None = None,
        varlen: bool = False,
        max_pending_tokens: int | None = None,
    ):
        self.buckets = list(buckets)
        self.budget = budget
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.varlen = varlen
        self.bucket_budgets: dict[int, int] = {}
        unit = budget or batch_size * self.buckets[-1]
        # Four batches' worth: enough to fill batches across many small units, little enough that
        # units keep completing (and shards keep landing) all through a run.
        self.max_pending_tokens = max_pending_tokens or 4 * unit
        self._queues = [_Queue() for _ in self.buckets]
        self._oldest: dict[int, int] = {}  # bucket index -> lowest chunk id waiting there

    # --- state -----------------------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return sum(q.rows for q in self._queues)

    @property
    def pending_tokens(self) -> int:
        return sum(q.tokens for q in self._queues)

    def budget_for(self, bucket: int) -> int | None:
        return self.bucket_budgets.get(bucket, self.budget)

    def lower_budget(self, bucket: int, tokens: int) -> int:
        """Cap the budget of `bucket` and every longer bucket at `tokens` (never below one row)."""
        tokens = max(1, tokens)
        for edge in self.buckets:
            if edge >= bucket:
                current = self.bucket_budgets.get(edge, self.budget or tokens)
                self.bucket_budgets[edge] = min(current, max(tokens, 1))
        return self.bucket_budgets[bucket]

    # --- in --------------------------------------------------------------------------------------

    def add(self, chunk: int, lengths: np.ndarray) -> None:
        """Queue every row of chunk `chunk` (ids increase over time) under its length bucket."""
        lengths = np.minimum(np.asarray(lengths, dtype=np.int64), self.buckets[-1])
        lengths = np.maximum(lengths, 1)
        which = np.minimum(
            np.searchsorted(np.asarray(self.buckets), lengths, side="left"), len(self.buckets) - 1
        )
        positions = np.arange(len(lengths), dtype=np.int64)
        for b in np.unique(which).tolist():
            sel = which == b
            self._queues[b].put(lengths[sel], np.full(int(sel.sum()), chunk, np.int64), positions[sel])
            self._oldest.setdefault(b, chunk)

    # --- out -------------------------------------------------------------------------------------

    def full_batches(self) -> list[Batch]:
        """Every batch that fills its budget, plus whatever the pending bound forces out."""
        out: list[Batch] = []
        for b, q in enumerate(self._queues):
            if q.rows and self._cost(b, q.rows, q.longest, q.tokens) >= self._limit(b):
                out.extend(self._drain(b, keep_partial=True))
        while self.pending_tokens > self.max_pending_tokens:
            out.extend(self._drain(self._oldest_bucket(), keep_partial=False))
        return out

    def flush_oldest(self) -> list[Batch]:
        """The batches of the bucket holding the oldest waiting row (the input is starving)."""
        if not self.pending_rows:
            return []
        return self._drain(self._oldest_bucket(), keep_partial=False)

    def flush(self) -> list[Batch]:
        """Everything still waiting (no more input is coming)."""
        out: list[Batch] = []
        for b, q in enumerate(self._queues):
            if q.rows:
                out.extend(self._drain(b, keep_partial=False))
        return out

    # --- internals -------------------------------------------------------------------------------

    def _cost(self, b: int, rows: int, longest: int, tokens: int) -> int:
        if self.budget_for(self.buckets[b]) is None:
            return rows  # row-count batching
        return tokens if self.varlen else rows * longest

    def _limit(self, b: int) -> int:
        budget = self.budget_for(self.buckets[b])
        return budget if budget is not None else self.batch_size

    def _oldest_bucket(self) -> int:
        return min(self._oldest, key=lambda b: (self._oldest[b], b))

    def _drain(self, b: int, *, keep_partial: bool) -> list[Batch]:
        """Cut bucket b's rows (length order) into batches; the last, partial one stays queued if asked."""
        q = self._queues[b]
        lengths, chunks, positions = q.take_all()
        self._oldest.pop(b, None)
        bucket = self.buckets[b]
        budget = self.budget_for(bucket)
        batches = []
        start = 0
        while start < len(lengths):
            end = self._batch_end(lengths, start, budget)
            tail = lengths[start:end]
            if (
                keep_partial
                and end == len(lengths)
                and self._cost(b, len(tail), int(tail[-1]), int(tail.sum())) < self._limit(b)
            ):
                q.put(lengths[start:], chunks[start:], positions[start:])
                self._oldest[b] = int(chunks[start:].min())
                break
            sl = slice(start, end)
            batches.append(Batch(chunks[sl], positions[sl], lengths[sl], int(lengths[end - 1]), bucket))
            start = end
        return batches

    def _batch_end(self, lengths: np.ndarray, start: int, budget: int | None) -> int:
        """The end of the batch starting at `start`: the most rows whose cost fits the budget (one at
        least). Rows are in ascending length, so the cost grows with every row taken."""
        n = len(lengths) - start
        cap = min(n, self.max_rows) if self.max_rows else n
        if budget is None:
            return start + min(cap, self.batch_size)
        window = lengths[start : start + cap]
        cost = np.cumsum(window) if self.varlen else np.arange(1, len(window) + 1) * window
        return start + max(1, int(np.searchsorted(cost, budget, side="right")))


def pad_batch(ids: list, types: list, length: int, pad_id: int, *, left: bool) -> dict[str, np.ndarray]:
    """input_ids, attention_mask (and token_type_ids) padded to `length`, on the tokenizer's side.

    One boolean-mask scatter of all rows' tokens (a row-major mask visits them in order, left or right
    padded), not a numpy assignment per row: this runs for every batch, on the thread feeding the model."""
    n = len(ids)
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=n)
    np.minimum(lens, length, out=lens)
    total = int(lens.sum())
    columns = np.arange(length)
    mask = columns >= (length - lens)[:, None] if left else columns < lens[:, None]
    input_ids = np.full((n, length), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter(chain.from_iterable(s[:length] for s in ids), np.int64, count=total)
    out = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
    if any(t is not None for t in types):
        rows = (
            t[:length] if t is not None else repeat(0, k) for t, k in zip(types, lens.tolist(), strict=True)
        )
        token_types = np.zeros((n, length), dtype=np.int64)
        token_types[mask] = np.fromiter(chain.from_iterable(rows), np.int64, count=total)
        out["token_type_ids"] = token_types
    return out


def padding_efficiency(batches: list[Batch], *, varlen: bool = False, pad_rows_to: int = 1) -> float:
    """Real tokens / computed tokens over `batches` (rows padded up to a multiple of `pad_rows_to`)."""
    real = sum(b.real_tokens for b in batches)
    if varlen:
        return 1.0 if real else 0.0
    computed = sum(-(-len(b) // pad_rows_to) * pad_rows_to * b.length for b in batches)
    return real / computed if computed else 0.0


def simulate(
    unit_lengths: list[np.ndarray], planner: BatchPlanner, *, chunk_rows: int, starve_every: int = 0
) -> list[Batch]:
    """The batches a worker would run for these units (token counts per row), fed in chunks of
    `chunk_rows` as its reader does; `starve_every` > 0 flushes the oldest bucket after every that
    many chunks, as a worker does when its input runs dry. For the padding benchmark and tests."""
    batches: list[Batch] = []
    chunk = 0
    for lengths in unit_lengths:
        for s in range(0, len(lengths), chunk_rows):
            planner.add(chunk, lengths[s : s + chunk_rows])
            chunk += 1
            batches.extend(planner.full_batches())
            if starve_every and chunk % starve_every == 0:
                batches.extend(planner.flush_oldest())
    batches.extend(planner.flush())
    return batches
