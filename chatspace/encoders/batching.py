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
# A batch forced out before its bucket is full takes in neighbouring buckets' rows while at least this
# share of its padded tokens stays real.
MERGE_EFFICIENCY = 0.92
MERGE_SLACK = 0.1  # ... or while it pads at most this share of its budget (a few short rows ride along)
END_SLACK = 0.05  # the same at the end of the input, where nothing else would fill the batches anyway
# Rows may wait, over all buckets, up to this many budgets' worth of tokens (unless told otherwise): with
# ~10% buckets, 16 budgets let forced batches fill to ~0.8-0.95 of the budget on long-tailed text.
PENDING_BUDGETS = 16
# No row waits while more than this many rows, or budgets' worth of tokens, are added after it: a rare
# length cannot hold its chunk (and the unit around it) open for ever while other buckets keep filling.
MAX_WAIT_ROWS = 65536
MAX_WAIT_BUDGETS = 32


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
    in_order: bool = False  # one array, in ascending length

    def sorted_lengths(self) -> np.ndarray:
        """The waiting rows' lengths in ascending order (the queue is kept in that order from now on)."""
        if not self.in_order:
            lengths, chunks, positions = self.take_all()
            self.put(lengths, chunks, positions)
            self.in_order = True
        return self.lengths[0]

    def take_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths, chunks, positions = (np.concatenate(x) for x in (self.lengths, self.chunks, self.positions))
        order = np.argsort(lengths, kind="stable")
        self.lengths, self.chunks, self.positions = [], [], []
        self.rows = self.tokens = self.longest = 0
        return lengths[order], chunks[order], positions[order]

    def put(self, lengths: np.ndarray, chunks: np.ndarray, positions: np.ndarray) -> None:
        if not len(lengths):
            return
        self.in_order = False
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

    A bucket that fills its budget goes out as full batches. A bucket forced out before it is full
    (the pending bound, a starving input, the end of the input) takes rows of its neighbouring
    buckets along while the batch keeps `merge_efficiency` of its padded tokens real, so a forced
    batch is still close to full rather than one narrow bucket's few rows.
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
        merge_efficiency: float = MERGE_EFFICIENCY,
        merge_slack: float = MERGE_SLACK,
        end_slack: float = END_SLACK,
        max_wait_rows: int = MAX_WAIT_ROWS,
    ):
        self.buckets = list(buckets)
        self.budget = budget
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.varlen = varlen
        self.merge_efficiency = merge_efficiency
        self.merge_slack, self.end_slack = merge_slack, end_slack
        self.bucket_budgets: dict[int, int] = {}
        unit = budget or batch_size * self.buckets[-1]
        self.max_pending_tokens = max_pending_tokens or PENDING_BUDGETS * unit
        self._queues = [_Queue() for _ in self.buckets]
        self._oldest: dict[int, int] = {}  # bucket index -> lowest chunk id waiting there
        self.max_wait_rows = max_wait_rows
        self.max_wait_tokens = MAX_WAIT_BUDGETS * unit
        self._added = (0, 0)  # rows, tokens added so far
        self._arrival: dict[int, tuple[int, int]] = {}  # chunk id -> rows, tokens added before it

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
        self._arrival.setdefault(chunk, self._added)
        self._added = (self._added[0] + len(lengths), self._added[1] + int(lengths.sum()))
        for b in np.unique(which).tolist():
            sel = which == b
            self._queues[b].put(lengths[sel], np.full(int(sel.sum()), chunk, np.int64), positions[sel])
            self._oldest.setdefault(b, chunk)

    # --- out -------------------------------------------------------------------------------------

    def full_batches(self) -> list[Batch]:
        """Every batch that fills its budget, plus whatever the pending bound forces out (the rows
        of the bucket holding the oldest row, with its neighbours')."""
        out: list[Batch] = []
        for b, q in enumerate(self._queues):
            if q.rows and self._cost(b, q.rows, q.longest, q.tokens) >= self._limit(b):
                out.extend(self._drain(b, keep_partial=True))
        while self.pending_tokens > self.max_pending_tokens or self._waited_too_long():
            out.extend(self._forced(self._oldest_bucket(), slack=self.merge_slack))
        return out

    def _waited_too_long(self) -> bool:
        if not self._oldest:
            self._arrival.clear()
            return False
        oldest = self._arrival.get(self._oldest[self._oldest_bucket()], (0, 0))
        if len(self._arrival) > 4 * len(self._queues) + 64:  # forget chunks with no row waiting
            waiting = set(self._oldest.values())
            self._arrival = {k: v for k, v in self._arrival.items() if v >= oldest or k in waiting}
        rows, tokens = self._added
        return rows - oldest[0] > self.max_wait_rows or tokens - oldest[1] > self.max_wait_tokens

    def flush_oldest(self) -> list[Batch]:
        """One batch around the oldest waiting row (the input is starving)."""
        if not self.pending_rows:
            return []
        # Latency, not memory, forces it out: no slack, so a small batch is still a tight one.
        return self._forced(self._oldest_bucket(), slack=0.0)

    def flush(self) -> list[Batch]:
        """Everything still waiting (no more input is coming), oldest rows first."""
        out: list[Batch] = []
        while self.pending_rows:
            out.extend(self._forced(self._oldest_bucket(), slack=self.end_slack))
        return out

    # --- internals -------------------------------------------------------------------------------

    def _cost(self, b: int, rows: int, longest: int, tokens: int) -> int:
        if self.budget_for(self.buckets[b]) is None:
            return rows  # row-count batching
        return tokens if self.varlen else rows * longest

    def _limit(self, b: int) -> int:
        budget = self.budget_for(self.buckets[b])
        limit = budget if budget is not None else self.batch_size
        return limit

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
                self._requeue(b, lengths[start:], chunks[start:], positions[start:])
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

    def _requeue(self, b: int, lengths: np.ndarray, chunks: np.ndarray, positions: np.ndarray) -> None:
        if len(lengths):
            self._queues[b].put(lengths, chunks, positions)
            self._oldest[b] = int(chunks.min())

    def _forced(self, b0: int, slack: float) -> list[Batch]:
        """One batch that must go out now, seeded with bucket b0's rows: grown, bucket by bucket, into
        the neighbouring buckets (their longest rows below, their shortest above) while it fits the
        budget and keeps `merge_efficiency` of its padded tokens real (rows x the longest row)."""
        q = self._queues[b0]
        if self._cost(b0, q.rows, q.longest, q.tokens) >= self._limit(b0) or (
            self.max_rows and q.rows > self.max_rows
        ):
            return self._drain(b0, keep_partial=True) or self._drain(b0, keep_partial=False)
        taken = {b0: q.rows}  # bucket -> rows taken (the longest below b0, the shortest above)
        lo = hi = b0
        rows, longest, tokens = q.rows, q.longest, q.tokens
        while True:
            options = []  # (efficiency, bucket, rows taken, longest, real tokens)
            down = self._next_nonempty(lo, -1)
            if down is not None:
                lengths = self._queues[down].sorted_lengths()
                k = self._fits(len(lengths), rows, longest, tokens, lengths[::-1], hi)
                if k:
                    real = tokens + int(lengths[-k:].sum())
                    options.append((self._efficiency(rows + k, longest, real), down, k, longest, real))
            up = self._next_nonempty(hi, +1)
            if up is not None:
                lengths = self._queues[up].sorted_lengths()
                k = self._fits_up(rows, tokens, lengths, up)
                if k:
                    real = tokens + int(lengths[:k].sum())
                    top = int(lengths[k - 1])
                    options.append((self._efficiency(rows + k, top, real), up, k, top, real))
            options = [
                o for o in options if self._wastes_little(rows + o[2], o[3], o[4], max(hi, o[1]), slack)
            ]
            if not options:
                break
            _, b, k, longest, tokens = max(options)
            rows += k
            taken[b] = k
            lo, hi = min(lo, b), max(hi, b)
            if k < self._queues[b].rows:
                break  # the budget is full
        return [self._take(taken, b0, hi)]

    def _next_nonempty(self, b: int, step: int) -> int | None:
        b += step
        while 0 <= b < len(self._queues):
            if self._queues[b].rows:
                return b
            b += step
        return None

    def _fits(self, available: int, rows: int, longest: int, tokens: int, longest_first, hi: int) -> int:
        """Rows of a shorter bucket (`longest_first`: its lengths, longest first) that still fit."""
        limit = self._limit(hi)
        room = (self.max_rows - rows) if self.max_rows else available
        if self.budget_for(self.buckets[hi]) is None:
            room = min(room, limit - rows)
        elif self.varlen:
            room = min(room, int(np.searchsorted(np.cumsum(longest_first) + tokens, limit, side="right")))
        else:
            room = min(room, limit // max(longest, 1) - rows)
        return max(0, min(available, room))

    def _fits_up(self, rows: int, tokens: int, lengths: np.ndarray, up: int) -> int:
        """The shortest rows of a longer bucket that fit: the batch is then padded to the longest taken."""
        limit = self._limit(up)
        n = len(lengths)
        if self.max_rows:
            n = min(n, max(0, self.max_rows - rows))
        counts = np.arange(1, n + 1)
        if self.budget_for(self.buckets[up]) is None:
            cost = rows + counts
        elif self.varlen:
            cost = tokens + np.cumsum(lengths[:n])
        else:
            cost = (rows + counts) * lengths[:n]
        return int(np.searchsorted(cost, limit, side="right"))

    def _wastes_little(self, rows: int, longest: int, real: int, hi: int, slack: float) -> bool:
        """A merged batch keeps `merge_efficiency` of its padded tokens real, or pads no more than
        `slack` of its budget: a few short rows may ride along with many long ones."""
        if self.varlen:
            return True
        padded = rows * longest
        if self.budget_for(self.buckets[hi]) is None:
            return real >= self.merge_efficiency * padded
        return real >= self.merge_efficiency * padded or padded - real <= slack * self._limit(hi)

    def _efficiency(self, rows: int, longest: int, real: int) -> float:
        return 1.0 if self.varlen else real / (rows * longest)

    def _take(self, taken: dict[int, int], seed: int, hi: int) -> Batch:
        """Remove the rows chosen by _forced from their queues, as one batch in length order: below
        the seed bucket its longest rows, at or above it its shortest."""
        parts = []
        for b, k in taken.items():
            lengths, chunks, positions = self._queues[b].take_all()
            self._oldest.pop(b, None)
            cut = len(lengths) - k if b < seed else k
            sl, rest = (slice(cut, None), slice(0, cut)) if b < seed else (slice(0, cut), slice(cut, None))
            parts.append((lengths[sl], chunks[sl], positions[sl]))
            self._requeue(b, lengths[rest], chunks[rest], positions[rest])
        lengths, chunks, positions = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.argsort(lengths, kind="stable")
        lengths, chunks, positions = lengths[order], chunks[order], positions[order]
        return Batch(chunks, positions, lengths, int(lengths[-1]), self.buckets[hi])


def worker_planner(
    buckets: list[int], *, budget: int | None, batch_size: int, varlen: bool = False, cuda: bool
) -> BatchPlanner:
    """The planner a worker runs (the padding benchmark plans with this same call). CPU batches are
    small: two batches' worth of waiting rows fill them, and keep a worker from claiming many units
    ahead of its neighbours; every padded token costs compute there, so forced batches get no slack.
    On CUDA rows may wait up to PENDING_BUDGETS budgets and forced batches take the slack, so that
    batches come out close to the budget (a GPU pays per batch as much as per token)."""
    if cuda:
        return BatchPlanner(buckets, budget=budget, batch_size=batch_size, varlen=varlen)
    return BatchPlanner(
        buckets,
        budget=budget,
        batch_size=batch_size,
        varlen=varlen,
        max_pending_tokens=2 * budget if budget else None,
        merge_slack=0.0,
        end_slack=0.0,
    )


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
