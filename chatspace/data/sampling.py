"""Deterministic row selection: the same seed selects the same global row indices, always.

The selection depends only on (rows, n or p, seed, sampler version) -- never on devices, shard size or
streaming -- so it can be recomputed anywhere and sliced into work units. It is held as a description
(a range, counts per block, or for small draws the drawn indices), never as one index per row: rank
range [lo, hi) of the selected rows is computed when a unit asks for it (`Selection.rows`).

`--n` samplers (the version is part of a run's identity: `SamplingConfig.sampler`):

* 1: numpy's `Generator.choice(available, n, replace=False, shuffle=False)` seeded by the seed. Every run
  made before the version was recorded used it, and resumes with it. Above available / 50 numpy
  draws a permutation of every row (8 GB for a billion rows).
* 2: version 1's draw where that holds at most OLD_DRAW_LIMIT numbers (every sample of up to 4M rows,
  and any n up to 4M drawn from more than 50 n rows: the same rows as before); otherwise the block
  sampler of `row_blocks` (O(rows / 65,536) memory at any n).

Both use numpy's seeded Generator (SeedSequence, `choice`), as the tool always has; version 2's block
counts take only its uniform doubles and plain float64 arithmetic; `--p` only the seed and the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from chatspace.data import row_blocks
from chatspace.data.row_blocks import BlockRows, RowRange

log = logging.getLogger(__name__)

#: The --n sampler a new run uses; runs record theirs (see the module docstring).
SAMPLER_VERSION = 2
#: Version 2 keeps version 1's draw when that materialises at most this many row numbers; a --p sample
#: of at most this many rows is held whole too (32 MB), so its units are not spread over many blocks.
OLD_DRAW_LIMIT = 1 << 22


def keep_with_probability(indices: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Mask of rows kept by `--p`: row k is kept when hash(seed, k) / 2**64 < p.

    A pure function of (k, seed), so a stream that does not know its length selects the same rows.
    """
    k = np.asarray(indices, dtype=np.uint64)
    h = row_blocks.splitmix64(k ^ row_blocks.salt_of(seed))
    # Compare in the top 53 bits so the threshold is exact in float64.
    return (h >> np.uint64(11)).astype(np.float64) < p * float(1 << 53)


@dataclass(frozen=True, eq=False)
class Selection:
    """The selected rows, sorted ascending, as a description: `rows(lo, hi)` gives ranks [lo, hi).

    `count` rows out of `total_rows`; `sampler` is the --n sampler that drew them (None otherwise).
    """

    method: str  # all | n | p | first (--max-rows)
    requested: int | None
    total_rows: int
    count: int
    sampler: int | None = None
    # One of: a range of consecutive rows; the drawn rows; or per-block counts (row_blocks).
    _range: tuple[int, int] | None = field(default=None, repr=False)  # [start, stop)
    _drawn: np.ndarray | None = field(default=None, repr=False)
    _blocks: tuple | None = field(default=None, repr=False)  # (method, param, seed, start, end, prefix)

    def rows(self, lo: int, hi: int):
        """Selected rows of ranks [lo, hi): a `RowRange`, an array, or a `BlockRows` (np.asarray gives
        the row indices of any of them)."""
        lo, hi = max(0, lo), min(hi, self.count)
        hi = max(lo, hi)
        if self._range is not None:
            return RowRange(self._range[0] + lo, self._range[0] + hi)
        if self._drawn is not None:
            return self._drawn[lo:hi]
        method, param, seed, start, end, prefix = self._blocks
        # Blocks holding ranks lo and hi - 1: the last b with prefix[b] <= rank.
        first = int(np.searchsorted(prefix, lo, side="right")) - 1
        last = int(np.searchsorted(prefix, max(lo, hi - 1), side="right")) - 1 if hi > lo else first
        counts = tuple(int(c) for c in np.diff(prefix[first : last + 2])) if hi > lo else ()
        return BlockRows(method, param, seed, start, end, first, counts, lo - int(prefix[first]), hi - lo)

    @property
    def indices(self) -> np.ndarray:
        """Every selected row at once (int64): for small selections and tests; a run goes unit by unit."""
        return np.asarray(self.rows(0, self.count), dtype=np.int64)


def _v1_draw(available: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.choice(available, size=n, replace=False, shuffle=False)
    return np.sort(idx.astype(np.int64))


def _v1_is_small(available: int, n: int) -> bool:
    """Whether version 1's draw holds at most OLD_DRAW_LIMIT numbers: numpy permutes every row when
    the population is over 10,000 and n is over 1/50 of it, and draws n numbers (Floyd) otherwise."""
    permutes = available > 10_000 and n > available // 50
    return (available if permutes else n) <= OLD_DRAW_LIMIT


def select_rows(
    total_rows: int,
    *,
    n: int | None,
    p: float | None,
    seed: int,
    row_range: tuple[int, int] | None = None,
    max_rows: int | None = None,
    sampler: int = SAMPLER_VERSION,
) -> Selection:
    """The sampled rows (sorted ascending), as a `Selection`.

    `row_range` ([start, end), a split slice) limits the rows drawn from; `max_rows` keeps the first
    rows of the range in dataset order (the original tool's quick-test cap; not combined with n/p).
    `sampler`: the --n sampler's version (1 or 2, see the module docstring).
    """
    start, end = row_range or (0, total_rows)
    available = end - start
    if max_rows is not None:
        taken = min(max_rows, available)
        return Selection("first", max_rows, total_rows, taken, _range=(start, start + taken))
    if n is not None:
        if sampler not in (1, 2):
            raise ValueError(f"unknown --n sampler version {sampler!r}")
        if n >= available:
            if n > available:
                log.warning("--n %d is more than the %d rows available; taking all of them", n, available)
            return Selection("n", n, total_rows, available, sampler, _range=(start, end))
        if sampler == 1 or _v1_is_small(available, n):
            return Selection("n", n, total_rows, n, sampler, _drawn=_v1_draw(available, n, seed) + start)
        counts = row_blocks.drawn_per_block(available, n, seed)
        prefix = np.concatenate([[0], np.cumsum(counts)])
        return Selection("n", n, total_rows, n, sampler, _blocks=("n", n, seed, start, end, prefix))
    if p is not None:
        counts, kept = row_blocks.kept_per_block(start, end, p, seed, keep_up_to=OLD_DRAW_LIMIT)
        if kept is not None:  # few enough to hold: units are slices of them
            return Selection("p", None, total_rows, len(kept), _drawn=kept.astype(np.int64, copy=False))
        prefix = np.concatenate([[0], np.cumsum(counts)])
        return Selection("p", None, total_rows, int(prefix[-1]), _blocks=("p", p, seed, start, end, prefix))
    return Selection("all", None, total_rows, available, _range=(start, end))


def select_run_rows(cfg, num_rows: int) -> Selection:
    """The rows a run of `cfg` (a RunConfig) embeds out of `num_rows`: its split's slice, then its sample.

    A config with no sampler recorded draws --n with version 1, as every run made before versions were
    recorded did; a run that starts afresh records the newest first (`store.manifest.choose_sampler`).
    """
    sampling = cfg.sampling
    return select_rows(
        num_rows,
        n=sampling.n,
        p=sampling.p,
        seed=sampling.seed,
        row_range=cfg.data.split_spec.row_range(num_rows),
        max_rows=sampling.max_rows,
        sampler=sampling.sampler or 1,
    )
