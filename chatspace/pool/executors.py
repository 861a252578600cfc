"""How workers are started: spawned local processes (here) or Ray actors (beyond one node).

The supervisor only needs: put a task, get a message with a timeout, ask whether a worker is alive and
how it exited, and shut everything down. Shutdown escalates: terminate, wait, kill.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import signal
import sys

from chatspace.logs import quiet_libraries, quiet_worker_environment
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec

log = logging.getLogger(__name__)


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
        if spec.threads:
            os.environ["OMP_NUM_THREADS"] = str(spec.threads)
            os.environ["MKL_NUM_THREADS"] = str(spec.threads)
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


class LocalExecutor:
    """One spawned process per device; a shared bounded task queue gives dynamic hand-out."""

    def __init__(self, specs: list[WorkerSpec], log_queue, log_level: int):
        self.ctx = mp.get_context("spawn")
        self.specs = specs
        self.tasks = self.ctx.Queue(maxsize=max(2, 2 * len(specs)))
        self.results = self.ctx.Queue(maxsize=10_000)
        self.log_queue = log_queue
        self.log_level = log_level
        self.procs: list[mp.Process] = []

    def start(self) -> None:
        for spec in self.specs:
            p = self.ctx.Process(
                target=local_worker_main,
                args=(spec, self.tasks, self.results, self.log_queue, self.log_level),
                name=f"chatspace-worker-{spec.rank}",
                daemon=True,
            )
            p.start()
            self.procs.append(p)

    def put_task(self, task: dict | None) -> bool:
        try:
            self.tasks.put_nowait(task)
            return True
        except queue.Full:
            return False

    def get_message(self, timeout: float) -> dict | None:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def exitcode(self, rank: int) -> int | None:
        return self.procs[rank].exitcode

    def alive(self, rank: int) -> bool:
        return self.procs[rank].is_alive()

    def join(self, timeout: float) -> None:
        for p in self.procs:
            p.join(timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        """Terminate, wait, kill: no worker outlives the supervisor, whatever the exit path."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(grace)
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(2)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()
