"""The work plan: unit i is the slice [i*R, (i+1)*R) of the selected rows.

A pure function of the selection and --rows-per-shard, never of the number of workers, so a rerun with
another device count writes the same shards, and a resumed run can trust unit numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WorkUnit:
    index: int
    rows: np.ndarray  # global row indices, sorted

    @property
    def size(self) -> int:
        return len(self.rows)


def num_units(selected: int, rows_per_shard: int) -> int:
    return (selected + rows_per_shard - 1) // rows_per_shard


def plan_units(selected: np.ndarray, rows_per_shard: int) -> Iterator[WorkUnit]:
    for i in range(num_units(len(selected), rows_per_shard)):
        yield WorkUnit(i, selected[i * rows_per_shard : (i + 1) * rows_per_shard])
