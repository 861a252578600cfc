"""The manifest's sums over the unit records, kept up to date one record at a time.

A run of 100,000 units rewrites its manifest every few seconds; summing every record again for each
write made that write cost O(units). `UnitTotals.update` folds in only the records it has not seen, so a
periodic write costs O(units finished since the last one) plus writing the document out.
"""

from __future__ import annotations

from typing import Any

from chatspace.stats import WorkerStats
from chatspace.store.records import UnitRecord


def fold_expansion(total: dict[str, int], unit: dict[str, int] | None) -> None:
    """Add one unit's counts of what its rows became (messages, chunks) to the run's; the longest
    text's chunk count is a maximum, not a sum."""
    for key, n in (unit or {}).items():
        total[key] = max(total.get(key, 0), n) if key.startswith("most_") else total.get(key, 0) + n


class UnitTotals:
    """Rows, bytes, norm range, skipped rows, expansion, summed stats and the shard entries of the
    records folded in so far. A record replaced or dropped (a unit redone, a record found bad on a
    resume) cannot be taken back out of a minimum or a sum: then everything is folded in again."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.folded: dict[int, UnitRecord] = {}
        self.shard_entries: dict[int, dict[str, Any]] = {}  # unit -> its manifest entry (JSON)
        self.skipped: dict[str, int] = {}
        self.stats = WorkerStats()
        self.rows = 0
        self.bytes = 0
        self.norm_min: float | None = None
        self.norm_max: float | None = None
        self.expansion: dict[str, int] = {}

    def update(self, records: dict[int, UnitRecord]) -> None:
        """Fold in the records not folded in yet (by identity: a new record object for a unit is new)."""
        new: list[UnitRecord] = []
        for unit, record in records.items():
            seen = self.folded.get(unit)
            if seen is record:
                continue
            if seen is not None:  # replaced
                new = []
                break
            new.append(record)
        else:
            if len(records) - len(new) == len(self.folded):  # none dropped
                self._fold(new)
                return
        self._reset()
        self._fold(list(records.values()))

    def _fold(self, records: list[UnitRecord]) -> None:
        records = sorted(records, key=lambda r: r.unit)
        self.stats = WorkerStats.total([self.stats, *(WorkerStats.from_dict(r.stats) for r in records)])
        for record in records:
            self.folded[record.unit] = record
            fold_expansion(self.expansion, record.expansion)
            for reason, n in record.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + n
            self.rows += record.embedded
            entry = record.shard_entry()
            if entry is None:
                continue
            self.bytes += entry.file.bytes
            low, high = entry.file.norm_min, entry.file.norm_max
            if low is not None:
                self.norm_min = low if self.norm_min is None else min(self.norm_min, low)
                self.norm_max = high if self.norm_max is None else max(self.norm_max, high)
            self.shard_entries[record.unit] = entry.to_json()

    def shards(self) -> list[dict[str, Any]]:
        """The shard entries in unit order."""
        entries = self.shard_entries
        return [entries[unit] for unit in sorted(entries)]
