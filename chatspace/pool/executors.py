"""How workers are started: spawned local processes (here) or Ray actors (beyond one node).

The supervisor only needs: put a task for a worker, get a message with a timeout, ask whether a worker
is alive and how it exited, restart one that died, and shut everything down. Shutdown escalates:
terminate, wait, kill.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time

from chatspace.logs import quiet_libraries, quiet_worker_environment
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec

log = logging.getLogger(__name__)

TASKS_PER_WORKER = 2  # units queued to a worker at a time: its reader never waits, hand-out stays dynamic


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


class _DeviceFilter(logging.Filter):
    def __init__(self, device: str):
        super().__init__()
        self.device = device

    def filter(self, record: logging.LogRecord) -> bool:
        record.device = self.device
        return True


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the supervisor dies, so no worker is ever orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - not Linux: the worker's parent check still applies
        pass


def local_worker_main(spec: WorkerSpec, tasks, results, logs, log_level: int) -> None:
    """Entry point of a spawned worker process."""
    _die_with_parent()
    quiet_worker_environment()
    # Ctrl-C reaches the whole process group; the supervisor decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.device.kind == "cuda" and spec.device.physical is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.device.physical
    if spec.device.kind == "cpu":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if spec.threads:  # this worker's share of the cores, for every pool it may start
        for name in (
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "RAYON_NUM_THREADS",
            "TORCHINDUCTOR_COMPILE_THREADS",
        ):
            os.environ[name] = str(spec.threads)
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.handlers.QueueHandler(logs)
    handler.addFilter(_DeviceFilter(spec.device.label))
    root.addHandler(handler)
    root.setLevel(log_level)
    quiet_libraries(log_level)
    code = WorkerLoop(spec, QueueChannel(tasks, results, _parent_alive)).run()
    # Flush every message to the supervisor, then leave at once: interpreter teardown (garbage
    # collection of the model) costs about a second per worker and does nothing useful here.
    results.close()
    results.join_thread()
    logs.close()
    logs.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Pump(threading.Thread):
    """Moves items from one worker's queue to a sink; stops when told, or when the queue is gone."""

    def __init__(self, source, sink, name: str):
        super().__init__(name=name, daemon=True)
        self.source = source
        self.sink = sink
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                item = self.source.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return  # the queue was closed
            self.sink(item)


class _LocalWorker:
    """One worker process and its own queues: a worker killed mid-read or mid-write can leave a queue's
    lock held or a message half-sent, so nothing it used is ever shared with another worker."""

    def __init__(self, ctx, spec: WorkerSpec, inbox: queue.Queue, log_sink, log_level: int):
        self.tasks = ctx.Queue(maxsize=TASKS_PER_WORKER + 1)  # + its stop marker
        self.results = ctx.Queue()
        self.logs = ctx.Queue()
        self.process = ctx.Process(
            target=local_worker_main,
            args=(spec, self.tasks, self.results, self.logs, log_level),
            name=f"chatspace-worker-{spec.rank}",
            daemon=True,
        )
        self.pumps = [
            _Pump(self.results, inbox.put, f"chatspace-results-{spec.rank}"),
            _Pump(self.logs, log_sink, f"chatspace-logs-{spec.rank}"),
        ]

    def start(self) -> None:
        self.process.start()
        for pump in self.pumps:
            pump.start()

    def stop_pumps(self) -> None:
        for pump in self.pumps:
            pump.stopping.set()

    def release_queues(self) -> None:
        for q in (self.tasks, self.results, self.logs):
            q.cancel_join_thread()  # a dead reader must not hold up the supervisor's exit
            q.close()


class LocalExecutor:
    """One spawned process per device, each with its own task and result queues; the supervisor hands
    units out dynamically and can restart a worker that died."""

    supports_restart = True

    def __init__(self, specs: list[WorkerSpec], log_sink, log_level: int):
        self.ctx = mp.get_context("spawn")
        self.specs = specs
        self.log_sink = log_sink
        self.log_level = log_level
        self.inbox: queue.Queue = queue.Queue()
        self.workers: list[_LocalWorker] = []

    def _new_worker(self, rank: int) -> _LocalWorker:
        worker = _LocalWorker(self.ctx, self.specs[rank], self.inbox, self.log_sink, self.log_level)
        worker.start()
        return worker

    def start(self) -> None:
        self.workers = [self._new_worker(spec.rank) for spec in self.specs]

    def restart(self, rank: int) -> None:
        """A fresh process (and fresh queues) for `rank`, on the same device; the old one must be dead."""
        old = self.workers[rank]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(5)
        # Let the old result pump hand over what the worker sent before it died, then retire it.
        time.sleep(0.3)
        old.stop_pumps()
        old.release_queues()
        self.workers[rank] = self._new_worker(rank)

    def put_task(self, rank: int, task: dict | None) -> bool:
        try:
            self.workers[rank].tasks.put_nowait(task)
            return True
        except queue.Full:
            return False

    def get_message(self, timeout: float) -> dict | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def exitcode(self, rank: int) -> int | None:
        return self.workers[rank].process.exitcode

    def pid(self, rank: int) -> int | None:
        return self.workers[rank].process.pid

    def alive(self, rank: int) -> bool:
        return self.workers[rank].process.is_alive()

    def join(self, timeout: float) -> None:
        for w in self.workers:
            w.process.join(timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        """Terminate, wait, kill: no worker outlives the supervisor, whatever the exit path."""
        procs = [w.process for w in self.workers]
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(grace)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(2)
        for w in self.workers:
            w.stop_pumps()
            w.release_queues()
