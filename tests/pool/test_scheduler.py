"""The scheduler's healing rules, against a stand-in executor (no processes, no model): what a lost
worker's units become and whether its replacement is started again, for an executor whose
replacements keep their device (local processes) and for one that places them anew (Ray)."""

from __future__ import annotations

import signal
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.errors import ChatspaceError
from chatspace.hardware.devices import Device
from chatspace.pool.executors.base import Executor
from chatspace.pool.messages import Ready
from chatspace.pool.plan import WorkUnit
from chatspace.pool.scheduler import Scheduler
from chatspace.store.root import OutputRoot


class StandInExecutor(Executor):
    """Two workers that never run: the test says when one is ready or lost."""

    name = "stand-in"

    def __init__(self, keep_device: bool):
        super().__init__(SimpleNamespace(), log_sink=lambda record: None, log_level=0)
        self.replacements_keep_their_device = keep_device
        self.specs = [SimpleNamespace(rank=r, device=Device("cpu", f"slot:{r}")) for r in range(2)]
        self.started: list[int] = []

    def place(self):
        raise AssertionError("not used")

    def start_worker(self, rank: int) -> None:
        self.started.append(rank)

    def send(self, rank, task) -> bool:
        return True

    def receive(self, timeout):
        return None

    def exitcode(self, rank):
        return None

    def join(self, timeout) -> None:
        pass

    def shutdown(self, grace: float = 5.0) -> None:
        pass


class SilentProgress:
    status_every = 60.0

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _scheduler(tmp_path, keep_device: bool, restarts: int = 2) -> Scheduler:
    units = deque(WorkUnit(i, np.arange(i * 10, i * 10 + 10)) for i in range(6))
    cfg = RunConfig.from_options(
        dataset="d.jsonl", model="m", max_worker_restarts=restarts, stall_timeout=0, output_root=str(tmp_path)
    )
    layout = SimpleNamespace(output=OutputRoot(tmp_path), embeddings_dir=tmp_path / "embeddings")
    builder = SimpleNamespace(base={}, workers={}, timings={}, layout=layout)
    sched = Scheduler(StandInExecutor(keep_device), cfg, units, {}, builder, SilentProgress(), 60)
    for rank in (0, 1):
        sched.handle(
            Ready(rank, f"slot:{rank}", 100 + rank, encoder={}, load_seconds=1.0, warmup_seconds=0.0)
        )
    sched.hand_out()
    return sched


def _lose(sched: Scheduler, rank: int) -> dict:
    sched.lose(rank, -signal.SIGKILL)
    return sched.lost[-1]


def test_a_replacement_on_its_own_device_that_never_starts_gives_the_device_up(tmp_path):
    sched = _scheduler(tmp_path, keep_device=True)
    (tmp_path / "embeddings").mkdir()
    partial = tmp_path / "embeddings" / ".shard-00000.parquet.tmp-100"  # worker 0 was writing it
    other = tmp_path / "embeddings" / ".shard-00002.parquet.tmp-101"  # worker 1 still is
    partial.touch()
    other.touch()
    first = _lose(sched, 0)
    assert not partial.exists() and other.exists()
    assert first["restarted"] is True and first["units"] == [0, 1]
    assert list(sched.pending)[:2] == [sched.units[0], sched.units[1]]  # redone first
    second = _lose(sched, 0)  # the replacement is lost while loading
    assert second["restarted"] is False and second["units"] == []
    assert 0 in sched.gone and sched.executor.started == [0] and sched.live() == [1]


def test_a_replacement_placed_anew_that_never_starts_is_placed_again_within_the_limit(tmp_path):
    sched = _scheduler(tmp_path, keep_device=False)
    _lose(sched, 0)
    again = _lose(sched, 0)  # e.g. Ray put it on the node that was dying
    assert again["restarted"] is True and again["units"] == []
    assert sched.executor.started == [0, 0] and 0 not in sched.gone
    last = _lose(sched, 0)  # the limit (2 restarts) still holds
    assert last["restarted"] is False and 0 in sched.gone and sched.live() == [1]


def test_the_last_worker_lost_for_good_stops_the_run_with_one_line(tmp_path):
    sched = _scheduler(tmp_path, keep_device=True, restarts=0)
    with pytest.raises(ChatspaceError, match=r"worker 0 \(slot:0\) was killed by SIGKILL.*--resume"):
        _lose(sched, 0)
