"""Deterministic row selection: the same seed selects the same global row indices, always.

The selection depends only on (number of rows, n or p, seed) -- never on devices, shard size or
streaming -- so it can be recomputed anywhere and sliced into work units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (splitmix64 finaliser), vectorised; wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def keep_with_probability(indices: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Mask of rows kept by `--p`: row k is kept when hash(seed, k) / 2**64 < p.

    A pure function of (k, seed), so a stream that does not know its length selects the same rows.
    """
    k = np.asarray(indices, dtype=np.uint64)
    salt = _splitmix64(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    h = _splitmix64(k ^ salt)
    # Compare in the top 53 bits so the threshold is exact in float64.
    return (h >> np.uint64(11)).astype(np.float64) < p * float(1 << 53)


@dataclass(frozen=True)
class Selection:
    indices: np.ndarray  # sorted global row indices, int64
    method: str  # all | n | p | first (--max-rows)
    requested: int | None
    total_rows: int


def select_rows(
    total_rows: int,
    *,
    n: int | None,
    p: float | None,
    seed: int,
    row_range: tuple[int, int] | None = None,
    max_rows: int | None = None,
) -> Selection:
    """Global indices of the sampled rows, sorted ascending.

    `row_range` ([start, end), a split slice) limits the rows drawn from; `max_rows` keeps the first
    rows of the range in dataset order (the original tool's quick-test cap; not combined with n/p).
    """
    start, end = row_range or (0, total_rows)
    available = end - start
    if max_rows is not None:
        return Selection(
            np.arange(start, start + min(max_rows, available), dtype=np.int64), "first", max_rows, total_rows
        )
    if n is not None:
        if n >= available:
            if n > available:
                log.warning("--n %d is more than the %d rows available; taking all of them", n, available)
            return Selection(np.arange(start, end, dtype=np.int64), "n", n, total_rows)
        rng = np.random.default_rng(seed)
        idx = rng.choice(available, size=n, replace=False, shuffle=False)
        return Selection(np.sort(idx.astype(np.int64)) + start, "n", n, total_rows)
    if p is not None:
        parts = []
        for lo in range(start, end, 1 << 22):
            chunk = np.arange(lo, min(lo + (1 << 22), end), dtype=np.int64)
            parts.append(chunk[keep_with_probability(chunk, p, seed)])
        idx = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return Selection(idx, "p", None, total_rows)
    return Selection(np.arange(start, end, dtype=np.int64), "all", None, total_rows)


def select_run_rows(cfg, num_rows: int) -> Selection:
    """The rows a run of `cfg` (a RunConfig) embeds out of `num_rows`: its split's slice, then its sample."""
    sampling = cfg.sampling
    return select_rows(
        num_rows,
        n=sampling.n,
        p=sampling.p,
        seed=sampling.seed,
        row_range=cfg.data.split_spec.row_range(num_rows),
        max_rows=sampling.max_rows,
    )
