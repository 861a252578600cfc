"""The work units: unit i is the slice [i*R, (i+1)*R) of the selected rows.

A pure function of the selection and --rows-per-shard, never of the number of workers, so a rerun with
another device count writes the same shards, and a resumed run can trust unit numbers. A unit carries how
to find its rows (a range, or a few numbers per block of the sample), computed where they are read
(`np.asarray(unit.rows)`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from chatspace.data.sampling import Selection


@dataclass(frozen=True)
class WorkUnit:
    index: int
    rows: Any  # its global row indices, ascending: an array, or a row_blocks.RowRange / BlockRows

    @property
    def size(self) -> int:
        return len(self.rows)


def num_units(selected: int, rows_per_shard: int) -> int:
    return (selected + rows_per_shard - 1) // rows_per_shard


def unit_sizes(selected: int, rows_per_shard: int) -> list[int]:
    """The rows of each unit, without computing any unit's rows: all full but the last."""
    full, rest = divmod(selected, rows_per_shard)
    return [rows_per_shard] * full + ([rest] if rest else [])


def plan_units(selection: Selection, rows_per_shard: int) -> Iterator[WorkUnit]:
    for i in range(num_units(selection.count, rows_per_shard)):
        yield WorkUnit(i, selection.rows(i * rows_per_shard, (i + 1) * rows_per_shard))
