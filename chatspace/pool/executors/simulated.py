"""A stand-in executor for tests and benchmarks: workers that do no model work, in this process.

It answers each Task as a real worker would (a few RowsDone, then a UnitDone with a plausible record), one
message per `receive`, taking the busy workers in turn as if they ran side by side; so what a run costs
with it is the scheduler's own per-unit work (hand-out, liveness, progress, records, checkpoints). A
worker can be lost on cue (`losses`): it exits as if SIGKILLed, holding its units, and a replacement
starts with `start_worker` like any other. Not an `--executor` choice: it is not in `EXECUTORS`.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chatspace.config import ExecutorConfig
from chatspace.hardware.devices import Device
from chatspace.pool.executors.base import Executor, SpecFactory
from chatspace.pool.messages import STOP, Finished, Message, Ready, RowsDone, Task, UnitDone
from chatspace.stats import WorkerStats
from chatspace.store.records import ShardFile, UnitRecord

EMBEDDING_BYTES_PER_ROW = 384 * 2  # a MiniLM-sized float16 embedding
TOKENS_PER_ROW = 60


@dataclass(frozen=True)
class SimulatedSpec:
    """What the scheduler reads of a worker's spec: its rank and device."""

    rank: int
    device: Device
    threads: int | None = None


@dataclass
class _SimulatedWorker:
    rank: int
    label: str
    pid: int
    tasks: deque = field(default_factory=deque)  # Tasks (and finally STOP) sent, not yet begun
    unit: int | None = None  # the unit being worked on
    rows: int = 0
    reports_left: int = 0
    exitcode: int | None = None
    units_done: int = 0


class SimulatedExecutor(Executor):
    """`workers` workers, each answering a unit with `reports_per_unit` RowsDone and one UnitDone.

    `losses` lists (rank, units): the worker `rank` is lost once it has finished `units` units, whatever
    else it holds then (a rank listed twice loses its replacement too, after as many units of its own).
    `message_seconds` paces the workers: each message takes that long to come (0: as fast as asked)."""

    name = "simulated"

    def __init__(
        self,
        cfg: ExecutorConfig,
        workers: int,
        *,
        reports_per_unit: int = 2,
        run_id: str = "simulated",
        losses: list[tuple[int, int]] = (),
        message_seconds: float = 0.0,
        log_sink: Callable = lambda record: None,
        log_level: int = 0,
    ):
        super().__init__(cfg, log_sink, log_level)
        self.workers_wanted = workers
        self.reports_per_unit = max(1, reports_per_unit)
        self.run_id = run_id
        self.losses = list(losses)
        self.message_seconds = message_seconds
        self.workers: dict[int, _SimulatedWorker] = {}
        self.announcements: deque[Message] = deque()  # Ready and Finished, delivered first
        self.busy: deque[int] = deque()  # ranks with a unit under way, taken in turn
        self.units_done = 0
        self.starts = 0
        self.stats_template = self._unit_stats(1)

    def place(self) -> tuple[tuple[Device, ...], int | None]:
        return tuple(Device("cpu", f"sim:{r}") for r in range(self.workers_wanted)), None

    def start(self, spec_for: SpecFactory | None = None) -> None:
        """Every worker starts at once; without `spec_for`, each gets a `SimulatedSpec`."""
        if spec_for is not None:
            super().start(spec_for)
            return
        devices, threads = self.place()
        self.specs = [SimulatedSpec(rank, device, threads) for rank, device in enumerate(devices)]  # type: ignore[misc]
        for spec in self.specs:
            self.start_worker(spec.rank)

    def start_worker(self, rank: int) -> None:
        self.starts += 1
        label = self.specs[rank].device.label
        worker = _SimulatedWorker(rank, label, pid=4_000_000 + self.starts)
        self.workers[rank] = worker
        self.announcements.append(
            Ready(
                rank, label, worker.pid, encoder={"kind": "simulated"}, load_seconds=0.0, warmup_seconds=0.0
            )
        )

    def send(self, rank: int, task: Task | None) -> bool:
        worker = self.workers[rank]
        if worker.exitcode is not None:
            return True  # lost in the pipe, as a real queue to a dead worker
        worker.tasks.append(task)
        if worker.unit is None:
            self._begin_next(worker)
        return True

    def receive(self, timeout: float) -> Message | None:
        if self.announcements:
            return self.announcements.popleft()
        while self.busy:
            worker = self.workers[self.busy.popleft()]
            if worker.exitcode is not None or worker.unit is None:
                continue  # lost since it was queued
            if self.message_seconds:
                time.sleep(self.message_seconds)
            return self._next_message(worker)
        time.sleep(timeout)  # nothing under way: a real receive would wait this long
        return None

    def exitcode(self, rank: int) -> int | None:
        return self.workers[rank].exitcode

    def join(self, timeout: float) -> None:
        pass

    def shutdown(self, grace: float = 5.0) -> None:
        for worker in self.workers.values():
            if worker.exitcode is None:
                worker.exitcode = -signal.SIGTERM

    # --- the simulated workers --------------------------------------------------------------------------

    def _begin_next(self, worker: _SimulatedWorker) -> None:
        if not worker.tasks:
            worker.unit = None
            return
        task = worker.tasks.popleft()
        if task is STOP:
            worker.unit = None
            worker.exitcode = 0
            self.announcements.append(
                Finished(worker.rank, worker.label, {"units": worker.units_done, "wall_seconds": 0.0})
            )
            return
        worker.unit, worker.rows, worker.reports_left = task.unit, len(task.rows), self.reports_per_unit
        self.busy.append(worker.rank)

    def _next_message(self, worker: _SimulatedWorker) -> Message:
        unit = worker.unit
        assert unit is not None
        if worker.reports_left:
            share = worker.rows // self.reports_per_unit
            rows = share if worker.reports_left > 1 else worker.rows - share * (self.reports_per_unit - 1)
            worker.reports_left -= 1
            self.busy.append(worker.rank)
            return RowsDone(worker.rank, rows, rows * TOKENS_PER_ROW, unit)
        record = self._record(worker, unit)
        worker.units_done += 1
        self.units_done += 1
        self._begin_next(worker)
        self._lose_on_cue(worker)
        return UnitDone(worker.rank, record)

    def _lose_on_cue(self, worker: _SimulatedWorker) -> None:
        cue = next((c for c in self.losses if c[0] == worker.rank), None)
        if cue is not None and worker.units_done >= cue[1]:
            self.losses.remove(cue)
            worker.exitcode = -signal.SIGKILL
            worker.tasks.clear()
            worker.unit = None

    def _unit_stats(self, rows: int) -> dict:
        stats = WorkerStats(
            units=1, selected=rows, rows=rows, tokens=rows * TOKENS_PER_ROW,
            padded_tokens=rows * TOKENS_PER_ROW * 5 // 4, batches=max(1, rows // 256),
            bytes_written=rows * EMBEDDING_BYTES_PER_ROW,
            busy_seconds={"read": 0.01, "tokenize": 0.02, "encode": 0.5, "write": 0.01},
            idle_seconds={"read": 0.0, "encode": 0.001},
        )  # fmt: skip
        return stats.to_dict()

    def _record(self, worker: _SimulatedWorker, unit: int) -> UnitRecord:
        rows = worker.rows
        stats = dict(self.stats_template)
        stats.update(
            selected=rows,
            rows=rows,
            tokens=rows * TOKENS_PER_ROW,
            bytes_written=rows * EMBEDDING_BYTES_PER_ROW,
        )
        return UnitRecord(
            unit=unit,
            selected=rows,
            rows=rows,
            skipped={},
            shard=ShardFile(
                path=f"embeddings/shard-{unit:05d}.parquet",
                rows=rows,
                bytes=rows * EMBEDDING_BYTES_PER_ROW + 4096,
                sha256=f"{unit:064x}",
                norm_min=0.999,
                norm_max=1.001,
            ),
            worker=worker.rank,
            device=worker.label,
            run_id=self.run_id,
            written_at="2026-01-01T00:00:00Z",
            stats=stats,
        )
