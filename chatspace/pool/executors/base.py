"""The executor interface: how a run's workers are placed, started, talked to, watched and stopped.

The supervisor and scheduler see only this. An executor decides where the workers go (one `Device`
each) and how many threads each may use, starts a worker by rank (again, after a loss), carries
`Task`s to a worker and its messages back, says whether and how a worker exited, and shuts all of
them down on every exit path. One module per backend: local.py (spawned processes), ray.py.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from chatspace.config import ExecutorConfig
from chatspace.encoders.tokenize import use_tokenizer_threads
from chatspace.hardware.devices import Device
from chatspace.logs import quiet_libraries
from chatspace.pool.messages import Message, Task
from chatspace.pool.worker import WorkerSpec

log = logging.getLogger("chatspace")

TASKS_PER_WORKER = 2  # units queued to a worker at a time: its reader never waits, hand-out stays dynamic

SpecFactory = Callable[[int, Device, int | None], WorkerSpec]  # (rank, device, threads) -> spec


def share_worker_cores(spec: WorkerSpec) -> None:
    """In a worker's own process, before anything starts a thread pool: its share of the cores for
    every pool it may start (torch/OpenMP, MKL, inductor's compile workers, and the tokenizer's Rayon
    pool through the encoder's own `use_tokenizer_threads`)."""
    use_tokenizer_threads(spec.threads)
    if spec.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS"):
            os.environ[name] = str(spec.threads)


class _DeviceTag(logging.Filter):
    def __init__(self, device: str):
        super().__init__()
        self.device = device

    def filter(self, record: logging.LogRecord) -> bool:
        record.device = self.device
        return True


class _QueueHandler(logging.handlers.QueueHandler):
    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(record)  # waits rather than fail when a bounded queue (Ray's) is full


def send_worker_logs(queue, device: str, level: int) -> None:
    """In a worker's own process: its log records, tagged with its device, go to `queue`, from which
    the supervisor writes them to the run's console and log file (`log_sink`), local or on a Ray node."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = _QueueHandler(queue)
    handler.addFilter(_DeviceTag(device))
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level)


class Executor(ABC):
    """Runs one worker per placed device and moves messages between them and the scheduler."""

    name: ClassVar[str]
    # Whether the workers run here, with this machine's files and model cache (what the supervisor may
    # check for them before starting), or on other nodes with their own.
    workers_share_this_machine: ClassVar[bool] = True
    # Whether a replacement worker surely starts (its device is its own), or may wait for room that
    # only frees up when the run ends (a cluster that lost a node): then it is not waited for at the end.
    replacements_always_start: ClassVar[bool] = True
    # Whether a replacement starts on the lost worker's own device (one that cannot start means the
    # device is gone), or is placed anew wherever there is room (Ray: a replacement lost before it
    # started, say on a node whose death Ray had not yet noticed, is placed again, within the limit).
    replacements_keep_their_device: ClassVar[bool] = True

    def __init__(self, cfg: ExecutorConfig, log_sink: Callable[[logging.LogRecord], None], log_level: int):
        self.cfg = cfg  # the run's executor part: devices, threads, Ray's address and workers
        self.log_sink = log_sink  # where workers' log records go (the run's console and log file)
        self.log_level = log_level
        self.specs: list[WorkerSpec] = []

    @staticmethod
    def check(cfg: ExecutorConfig) -> None:
        """Fail early, before any output is touched, on what this executor cannot run (a dead cluster).
        Most executors have nothing to check."""
        return None

    @abstractmethod
    def place(self) -> tuple[tuple[Device, ...], int | None]:
        """The workers this run gets, one Device each, and the threads each worker may use."""

    def start(self, spec_for: SpecFactory) -> None:
        """Place the workers and start them all; `spec_for` builds each worker's spec."""
        devices, threads = self.place()
        self.specs = [spec_for(rank, device, threads) for rank, device in enumerate(devices)]
        log.info(
            "starting %d worker(s): %s%s",
            len(self.specs),
            ", ".join(d.label for d in devices),
            f" ({threads} torch thread{'' if threads == 1 else 's'} each)" if threads else "",
        )
        for spec in self.specs:
            self.start_worker(spec.rank)

    @abstractmethod
    def start_worker(self, rank: int) -> None:
        """Start the worker `rank` on its device; after a loss, a fresh one (fresh queues) in its place."""

    @abstractmethod
    def send(self, rank: int, task: Task | None) -> bool:
        """Queue a task (or STOP) for `rank` without blocking; False when its queue is full."""

    @abstractmethod
    def receive(self, timeout: float) -> Message | None:
        """The next message from any worker, or None after `timeout` seconds."""

    @abstractmethod
    def exitcode(self, rank: int) -> int | None:
        """None while the worker runs; its exit code once it ended (negative: killed by that signal)."""

    def exit_reason(self, rank: int) -> str | None:
        """How the worker ended, in words, where the executor knows better than its exit code."""
        return None

    def alive(self, rank: int) -> bool:
        return self.exitcode(rank) is None

    @abstractmethod
    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the workers to exit after STOP."""

    @abstractmethod
    def shutdown(self, grace: float = 5.0) -> None:
        """Stop every worker, whatever state it is in: nothing outlives the run."""
