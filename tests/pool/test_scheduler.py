"""The scheduler's healing rules, against a stand-in executor (no processes, no model): what a lost
worker's units become and whether its replacement is started again, for an executor whose
replacements keep their device (local processes) and for one that places them anew (Ray)."""

from __future__ import annotations

import signal
from collections import deque

import numpy as np
import pytest

from chatspace.config import ExecutorConfig, RunConfig
from chatspace.data.sources import SourceSpec
from chatspace.data.units import WorkUnit
from chatspace.errors import ChatspaceError
from chatspace.hardware.devices import Device
from chatspace.pool.executors.base import Executor
from chatspace.pool.messages import Failed, Ready, Stage
from chatspace.pool.scheduler import Scheduler
from chatspace.pool.worker import WorkerSpec
from chatspace.store.layout import RunLayout

CFG = RunConfig.from_options(dataset="stand-in.jsonl", devices=("cpu:0", "cpu:1"))
SOURCE = SourceSpec("stand-in.jsonl", "local", "train", None, files=(), columns=("text",))


class StandInExecutor(Executor):
    """Two workers that never run: the test says when one is ready or lost."""

    name = "stand-in"

    def __init__(self, keep_device: bool, layout: RunLayout):
        super().__init__(CFG.execution, log_sink=lambda record: None, log_level=0)
        self.replacements_keep_their_device = keep_device
        self.specs = [
            WorkerSpec(r, Device("cpu", f"slot:{r}"), None, CFG, SOURCE, layout, "run") for r in range(2)
        ]
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
    execution = ExecutorConfig(max_worker_restarts=restarts, stall_timeout=0)
    layout = RunLayout.for_run(tmp_path, "m", "d", None, "train")
    executor = StandInExecutor(keep_device, layout)
    sched = Scheduler(executor, execution, "hf", units, {}, layout, SilentProgress(), 60)
    for rank in (0, 1):
        sched.handle(
            Ready(rank, f"slot:{rank}", 100 + rank, encoder={}, load_seconds=1.0, warmup_seconds=0.0)
        )
    sched.hand_out()
    return sched


def _lose(sched: Scheduler, rank: int) -> dict:
    """The manifest's entry for the worker lost."""
    sched.lose(rank, -signal.SIGKILL)
    return sched.report.lost[-1].to_json()


def test_a_replacement_on_its_own_device_that_never_starts_gives_the_device_up(tmp_path):
    sched = _scheduler(tmp_path, keep_device=True)
    embeddings = sched.layout.embeddings_dir
    embeddings.mkdir(parents=True)
    partial = embeddings / ".shard-00000.parquet.tmp-100"  # worker 0 was writing it
    other = embeddings / ".shard-00002.parquet.tmp-101"  # worker 1 still is
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


@pytest.mark.parametrize("stage", [Stage.LOADING, Stage.READING, Stage.WRITING])
def test_a_failure_that_would_repeat_on_any_worker_stops_the_run(tmp_path, stage):
    sched = _scheduler(tmp_path, keep_device=True)
    with pytest.raises(ChatspaceError, match=f"worker 1 \\(slot:1\\) failed while {stage.value}: boom"):
        sched.handle(Failed(1, "slot:1", stage, "boom", "Traceback"))


def test_a_failure_while_encoding_is_healed_by_a_new_worker(tmp_path):
    sched = _scheduler(tmp_path, keep_device=True)
    sched.handle(Failed(1, "slot:1", Stage.ENCODING, "CUDA error", "Traceback"))
    lost = _lose(sched, 1)
    assert lost["cause"] == "failed while encoding: CUDA error" and lost["error"] == "CUDA error"
    assert lost["restarted"] is True and sched.executor.started == [1]


def test_the_report_keeps_each_worker_from_its_own_ready_message(tmp_path):
    sched = _scheduler(tmp_path, keep_device=True)
    assert [sched.report.pid(r) for r in (0, 1)] == [100, 101]
    assert sched.report.workers[0].to_json() == {
        "rank": 0,
        "device": "slot:0",
        "pid": 100,
        "encoder": {},
        "load_seconds": 1.0,
        "warmup_seconds": 0.0,
    }
    _lose(sched, 0)
    assert sched.report.units_redone == [0, 1]
