"""Requests planned within the API's limits: so many inputs and so many tokens per request at most."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A batch is split over up to `concurrency` requests, but none smaller than this (requests cost quota).
MIN_SPLIT_INPUTS = 32


def plan_requests(
    token_counts: Sequence[int] | np.ndarray, max_inputs: int, max_tokens: int, *, spread: int = 1
) -> list[tuple[int, int]]:
    """[start, end) slices of consecutive inputs, each within `max_inputs` inputs and `max_tokens` tokens
    (an input larger than `max_tokens` on its own gets a request to itself).

    `spread` (the concurrency) splits a batch into up to that many requests of at least
    MIN_SPLIT_INPUTS inputs, so that one batch keeps several requests in flight."""
    out: list[tuple[int, int]] = []
    start, tokens = 0, 0
    counts = np.asarray(token_counts, dtype=np.int64).tolist()
    if spread > 1 and counts:
        max_inputs = min(max_inputs, max(MIN_SPLIT_INPUTS, math.ceil(len(counts) / spread)))
    for i, c in enumerate(counts):
        if i > start and (i - start >= max_inputs or tokens + c > max_tokens):
            out.append((start, i))
            start, tokens = i, 0
        tokens += c
    if start < len(counts):
        out.append((start, len(counts)))
    return out


@dataclass
class RequestPlan:
    """The payload of a prepared batch: what is sent, for which rows, in which requests."""

    inputs: list[str]  # the texts sent (truncated where needed), one per embedded row
    rows: np.ndarray  # int64: the row position (in Prepared.texts) of each input
    requests: list[tuple[int, int]]  # [start, end) slices of `inputs`
    request_tokens: list[int]
