"""The manifest's sums kept one record at a time equal the sums over all records at once, whatever the
order records arrive in and when a unit is redone or its record dropped (a resume)."""

from __future__ import annotations

import dataclasses

from chatspace.stats import WorkerStats
from chatspace.store.records import ShardFile, UnitRecord
from chatspace.store.unit_totals import UnitTotals


def record(unit: int, rows: int = 10, skipped: int = 0, norm: float = 1.0) -> UnitRecord:
    shard = (
        None
        if rows == 0
        else ShardFile(f"e/shard-{unit:05d}.parquet", rows, 100 + unit, "ab", norm, norm + 0.5)
    )
    stats = WorkerStats(units=1, selected=rows + skipped, rows=rows, tokens=7 * rows).to_dict()
    return UnitRecord(
        unit, rows + skipped, rows, {"empty": skipped} if skipped else {}, shard, 0, "cpu", "r",
        expansion={"messages": rows, "most_chunks": unit}, stats=stats,
    )  # fmt: skip


def summary(totals: UnitTotals) -> tuple:
    return (
        totals.rows, totals.bytes, totals.norm_min, totals.norm_max, totals.skipped, totals.expansion,
        totals.stats.to_dict(), totals.shards(),
    )  # fmt: skip


def all_at_once(records: dict[int, UnitRecord]) -> tuple:
    fresh = UnitTotals()
    fresh.update(records)
    return summary(fresh)


def test_folding_in_batches_equals_folding_all_at_once():
    records: dict[int, UnitRecord] = {}
    running = UnitTotals()
    for unit in (3, 0, 7, 1, 2, 5, 4, 6):  # out of order, as workers finish
        records[unit] = record(
            unit, rows=0 if unit == 5 else 10 + unit, skipped=unit % 3, norm=1 - unit / 100
        )
        running.update(records)
        assert summary(running) == all_at_once(records)
    assert [s["unit"] for s in running.shards()] == [0, 1, 2, 3, 4, 6, 7]
    assert running.norm_min == 1 - 7 / 100 and running.expansion["most_chunks"] == 7


def test_a_redone_or_dropped_unit_is_taken_back_out():
    records = {u: record(u, norm=0.5 if u == 2 else 1.0) for u in range(4)}
    running = UnitTotals()
    running.update(records)
    records[2] = dataclasses.replace(record(2, rows=20), written_at="later")  # redone
    running.update(records)
    assert summary(running) == all_at_once(records) and running.norm_min == 1.0 and running.rows == 50
    del records[1]  # found bad on a resume
    running.update(records)
    assert summary(running) == all_at_once(records) and running.rows == 40


def test_stats_sum_adds_counts_and_stages_and_keeps_the_larger_gpu_peak():
    a = WorkerStats(units=1, rows=10, busy_seconds={"encode": 1.5}, gpu={"memory_peak_mb": 900.0})
    b = WorkerStats(
        units=2, rows=5, busy_seconds={"encode": 0.5, "read": 0.25}, gpu={"memory_peak_mb": 700.0}
    )
    c = WorkerStats(units=1, skipped={"empty": 3})
    total = WorkerStats.total([a, b, c])
    assert (total.units, total.rows, total.skipped) == (4, 15, {"empty": 3})
    assert total.busy_seconds == {"encode": 2.0, "read": 0.25} and total.gpu == {"memory_peak_mb": 900.0}
    assert (a + b + c).to_dict() == total.to_dict() and a.busy_seconds == {"encode": 1.5}  # inputs untouched
    assert WorkerStats.total([]).to_dict() == WorkerStats().to_dict()
