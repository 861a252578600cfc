"""The scheduler with many workers, against the simulated executor (no processes, no model): every unit
recorded exactly once, progress at its total, lost workers' units redone by their replacements. What it
costs per unit is measured by `benchmarks/cases/scale.py scheduler_512_workers_1e5_units`, not here."""

from __future__ import annotations

import time
from collections import Counter, deque

import pytest

from chatspace.config import ExecutorConfig
from chatspace.data.sampling import select_rows
from chatspace.data.units import plan_units
from chatspace.errors import UsageError
from chatspace.pool import scheduler as scheduler_module
from chatspace.pool.executors import get_executor_class
from chatspace.pool.executors.simulated import SimulatedExecutor
from chatspace.pool.progress import Progress
from chatspace.pool.scheduler import Scheduler
from chatspace.store.layout import RunLayout

WORKERS = 64
UNITS = 2_000
ROWS_PER_UNIT = 100


class CountedRecords(dict):
    """The scheduler's records, counting how often each unit was recorded."""

    def __init__(self):
        super().__init__()
        self.times: Counter = Counter()

    def __setitem__(self, unit, record):
        self.times[unit] += 1
        super().__setitem__(unit, record)


def test_every_unit_is_recorded_once_and_lost_workers_units_are_redone(tmp_path):
    selection = select_rows(UNITS * ROWS_PER_UNIT, n=None, p=None, seed=0)
    pending = deque(plan_units(selection, ROWS_PER_UNIT))
    execution = ExecutorConfig(max_worker_restarts=1, stall_timeout=60)
    # Worker 5 is lost after 5 units of its own, worker 40 after 10 and its replacement after 5: one
    # restart each, so device 40 is then given up and the run goes on without it. The pace (about 3 s in
    # all) leaves the scheduler's liveness poll time to see each loss while most units are still to do.
    losses = [(5, 5), (40, 10), (40, 5)]
    executor = SimulatedExecutor(
        execution, WORKERS, reports_per_unit=3, losses=losses, message_seconds=0.0005
    )
    executor.start()
    records = CountedRecords()
    progress = Progress(enabled=False)
    layout = RunLayout.for_run(tmp_path, "m", "d", None, "train")
    sched = Scheduler(executor, execution, "hf", pending, records, layout, progress, selection.count)

    sched.run()

    assert sorted(records) == list(range(UNITS))
    assert set(records.times.values()) == {1}  # none recorded twice, none lost
    assert sum(r.rows for r in records.values()) == selection.count
    assert progress.status().startswith(f"progress: {selection.count:,}/{selection.count:,} rows (100.0%)")
    lost = sched.report.lost
    assert [(e.rank, e.restarted) for e in lost] == [(5, True), (40, True), (40, False)]
    assert all(e.units for e in lost[:2])  # each held units when lost ...
    redone = [u for e in lost for u in e.units]
    assert sched.report.units_redone == sorted(set(redone))
    assert all(records[u].worker is not None for u in redone)  # ... and they were done again
    assert sched.gone == {40} and sched.finished == set(range(WORKERS)) - {40}
    assert executor.starts == WORKERS + 2


def test_the_simulated_executor_is_no_user_option():
    with pytest.raises(UsageError, match="--executor must be one of local, ray"):
        get_executor_class("simulated")


def test_a_slow_manifest_write_is_spaced_out_rather_than_repeated_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler_module, "MANIFEST_EVERY_S", 0.01)
    selection = select_rows(400 * ROWS_PER_UNIT, n=None, p=None, seed=0)
    pending = deque(plan_units(selection, ROWS_PER_UNIT))
    execution = ExecutorConfig(max_worker_restarts=1, stall_timeout=0)
    executor = SimulatedExecutor(execution, 8, message_seconds=0.001)  # about 1.2 s of messages
    executor.start()
    writes: list[tuple[float, float]] = []

    def slow_write():  # a write far longer than the interval between writes
        start = time.monotonic()
        time.sleep(0.05)
        writes.append((start, time.monotonic()))

    layout = RunLayout.for_run(tmp_path, "m", "d", None, "train")
    records: dict = {}
    sched = Scheduler(
        executor, execution, "hf", pending, records, layout, Progress(enabled=False), selection.count,
        checkpoint=slow_write,
    )  # fmt: skip
    sched.run()
    assert len(records) == 400 and len(writes) >= 3
    share = scheduler_module.MANIFEST_MAX_SHARE
    for (start, end), (next_start, _) in zip(writes, writes[1:], strict=False):
        assert next_start - end >= (end - start) * (1 - share) / share * 0.99
