"""Selected rows computed a block at a time, so a selection of a billion rows is held as counts per block.

The rows [start, end) are cut into blocks of BLOCK_ROWS. A selection keeps how many rows each block
contributes (prefix sums, a few numbers per 65,536 rows); the rows themselves are computed when a unit
needs them, by a pure function of (seed, block):

* `--p`: a block's rows are those `keep_mask` keeps (the same hash as `keep_with_probability`);
* `--n` (sampler 2, large draws): how many rows each block gives is drawn block by block from the
  hypergeometric law (`hypergeometric`), then a block's rows are drawn with a generator seeded by
  (seed, block). Together they are a uniform sample of exactly n rows without replacement.

A unit's rows travel as a `RowRange` or a `BlockRows` (a few numbers); `np.asarray` gives the indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BLOCK_ROWS = 1 << 16
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_HASH_CHUNK = 1 << 22  # rows hashed at once when counting a whole range (32 MB of uint64)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (splitmix64 finaliser) of uint64 values, in place; wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def salt_of(seed: int) -> np.uint64:
    return splitmix64(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]


def keep_mask(lo: int, hi: int, p: float, seed: int) -> np.ndarray:
    """Which of the rows [lo, hi) `--p` keeps: hash(seed, k) / 2**64 < p, as `keep_with_probability`.

    Compared as integers: (h >> 11) < p * 2**53 (a float) holds exactly when h < ceil(p * 2**53) << 11.
    """
    if p >= 1.0:
        return np.ones(hi - lo, dtype=bool)
    threshold = np.uint64(math.ceil(p * float(1 << 53)) << 11)
    h = np.arange(lo, hi, dtype=np.uint64)
    h ^= salt_of(seed)
    return splitmix64(h) < threshold


def kept_per_block(start: int, end: int, p: float, seed: int, keep_up_to: int = 0):
    """How many rows `--p` keeps in each block of [start, end), hashing the range once in chunks; and
    the kept rows themselves while they number at most `keep_up_to` (else None).

    A sparse sample is better held whole: a unit of it would otherwise span many blocks to hash again.
    """
    counts = np.zeros(block_count(end - start), dtype=np.int64)
    kept: list[np.ndarray] | None = []
    total = 0
    step = _HASH_CHUNK  # a multiple of BLOCK_ROWS, so chunks start on block boundaries
    for lo in range(start, end, step):
        hi = min(lo + step, end)
        mask = keep_mask(lo, hi, p, seed)
        chunk = counts[(lo - start) // BLOCK_ROWS :][: block_count(hi - lo)]
        chunk[:] = np.add.reduceat(mask, np.arange(0, hi - lo, BLOCK_ROWS))
        if kept is not None:
            total += int(chunk.sum())
            kept = [*kept, np.flatnonzero(mask) + lo] if total <= keep_up_to else None
    if kept is None:
        return counts, None
    return counts, np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)


def block_count(rows: int) -> int:
    return (rows + BLOCK_ROWS - 1) // BLOCK_ROWS


def hypergeometric(good: int, bad: int, draws: int, u: float) -> int:
    """How many of `draws` rows drawn without replacement from `good` + `bad` rows are good, by
    inverting the law's distribution at `u` in [0, 1).

    numpy's own sampler refuses populations of a billion rows or more; this one walks the probability
    ratios out from the mode (a few thousand terms: 14 standard deviations, beyond which the mass is
    below 1e-40), in plain float64 arithmetic, so it gives the same answer on every machine.
    """
    total = good + bad
    lo, hi = max(0, draws - bad), min(good, draws)
    if lo == hi:
        return lo
    mode = min(max((draws + 1) * (good + 1) // (total + 2), lo), hi)
    var = draws * (good / total) * (bad / total) * ((total - draws) / max(total - 1, 1))
    width = int(14.0 * math.sqrt(var)) + 64
    # weight(x + 1) / weight(x) and weight(x - 1) / weight(x), for x walking up and down from the mode.
    up = np.arange(mode, min(hi, mode + width), dtype=np.float64)
    up_ratio = ((good - up) * (draws - up)) / ((up + 1.0) * (bad - draws + up + 1.0))
    down = np.arange(mode, max(lo, mode - width), -1, dtype=np.float64)
    down_ratio = (down * (bad - draws + down)) / ((good - down + 1.0) * (draws - down + 1.0))
    weights = np.concatenate([np.cumprod(down_ratio)[::-1], [1.0], np.cumprod(up_ratio)])
    cdf = np.cumsum(weights)
    pick = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return mode - len(down_ratio) + min(pick, len(weights) - 1)


def drawn_per_block(available: int, n: int, seed: int) -> np.ndarray:
    """How many of the n sampled rows fall in each block of `available` rows: sequential hypergeometric
    draws, block 0 first, with a generator of its own seeded by `seed`."""
    blocks = block_count(available)
    uniforms = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))).random(blocks)
    counts = np.zeros(blocks, dtype=np.int64)
    rows_left, draws_left = available, n
    for b in range(blocks):
        size = min(BLOCK_ROWS, rows_left)
        if draws_left == 0:
            break
        counts[b] = taken = hypergeometric(size, rows_left - size, draws_left, float(uniforms[b]))
        rows_left -= size
        draws_left -= taken
    return counts


@lru_cache(maxsize=8)
def _drawn_rows(available: int, seed: int, block: int, count: int) -> np.ndarray:
    """Offsets (from the range's start) of the `count` rows drawn in `block`, ascending."""
    first = block * BLOCK_ROWS
    size = min(BLOCK_ROWS, available - first)
    if count == size:
        return np.arange(first, first + size, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, block)))
    # Draw the smaller side: the rows taken, or the rows left out.
    chosen = rng.choice(size, size=min(count, size - count), replace=False, shuffle=False)
    mask = np.zeros(size, dtype=bool) if count <= size - count else np.ones(size, dtype=bool)
    mask[chosen] = count <= size - count
    rows = np.flatnonzero(mask) + first
    rows.flags.writeable = False
    return rows


@lru_cache(maxsize=8)
def _kept_rows(start: int, end: int, p: float, seed: int, block: int) -> np.ndarray:
    lo = start + block * BLOCK_ROWS
    hi = min(lo + BLOCK_ROWS, end)
    rows = np.flatnonzero(keep_mask(lo, hi, p, seed)) + lo
    rows.flags.writeable = False
    return rows


class UnitRows:
    """How to find a unit's rows, in a few numbers: `np.asarray(rows)` (or `.array()`) computes them.

    Sequence-like (len, [i], iteration), so code that took an array of indices still works.
    """

    def array(self) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.array()
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def __getitem__(self, i):
        return self.array()[i]

    def __iter__(self):
        return iter(self.array().tolist())


@dataclass(frozen=True)
class RowRange(UnitRows):
    """Consecutive rows [start, stop): all rows, --max-rows, a split slice, an --n of every row."""

    start: int
    stop: int

    def array(self) -> np.ndarray:
        return np.arange(self.start, self.stop, dtype=np.int64)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i):
        return range(self.start, self.stop)[i]


@dataclass(frozen=True)
class BlockRows(UnitRows):
    """A unit's rows, by how to compute them: the selected rows of blocks first_block.. (counts given),
    from the `skip`-th on, `length` of them. Cheap to pickle; `np.asarray(spec)` computes the rows.

    `method` n: blocks of the sample of `param` = n rows out of `end - start`; p: blocks kept with
    probability `param`.
    """

    method: str
    param: float | int
    seed: int
    start: int
    end: int
    first_block: int
    counts: tuple[int, ...]
    skip: int
    length: int

    def array(self) -> np.ndarray:
        parts = []
        for i, count in enumerate(self.counts):
            block = self.first_block + i
            if count == 0:
                continue
            if self.method == "n":
                parts.append(_drawn_rows(self.end - self.start, self.seed, block, count) + self.start)
            else:
                parts.append(_kept_rows(self.start, self.end, float(self.param), self.seed, block))
        rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return rows[self.skip : self.skip + self.length]

    def __len__(self) -> int:
        return self.length
