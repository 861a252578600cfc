"""Workers as Ray actors: the same WorkerLoop, beyond one node.

Each actor asks Ray for one GPU (Ray sets its CUDA_VISIBLE_DEVICES) or for `threads` CPUs, and talks to
the supervisor through two bounded `ray.util.queue.Queue`s, exactly as local workers do through
multiprocessing queues. The output root (and a local dataset path) must be on storage every node sees.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from typing import Any

from chatspace.errors import UsageError
from chatspace.logs import quiet_libraries, quiet_worker_environment
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec

log = logging.getLogger(__name__)


def _run_in_actor(spec: WorkerSpec, tasks, results, log_level: int) -> int:
    quiet_worker_environment()
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{spec.device.label}] %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(log_level)
    quiet_libraries(log_level)
    if spec.device.kind == "cpu":
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return WorkerLoop(spec, QueueChannel(tasks, results)).run()  # Ray ends tasks whose driver exits


class RayExecutor:
    """Same interface as LocalExecutor: put_task, get_message, exitcode, join, shutdown."""

    def __init__(self, specs: list[WorkerSpec], log_level: int, address: str | None = None):
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'chatspace[ray]'") from None
        self.ray = ray
        self.specs = specs
        self.log_level = log_level
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            if address:
                kwargs["address"] = address
            ray.init(**kwargs)
            self._started_ray = True
        queue_options = {"num_cpus": 0}
        self.tasks = Queue(maxsize=max(2, 2 * len(specs)), actor_options=queue_options)
        self.results = Queue(maxsize=10_000, actor_options=queue_options)
        self.actors: list[Any] = []
        self.refs: list[Any] = []
        self._codes: dict[int, int] = {}

    def start(self) -> None:
        remote_run = self.ray.remote(max_retries=0)(_run_in_actor)
        for spec in self.specs:
            if spec.device.kind == "cuda":
                options = {"num_gpus": 1, "num_cpus": 1}
            else:
                options = {"num_cpus": spec.threads or 1}
            ref = remote_run.options(name=f"chatspace-worker-{spec.rank}", **options).remote(
                spec, self.tasks, self.results, self.log_level
            )
            self.refs.append(ref)

    def put_task(self, task: dict | None) -> bool:
        from ray.util.queue import Full

        try:
            self.tasks.put_nowait(task)
            return True
        except Full:
            return False

    def get_message(self, timeout: float) -> dict | None:
        from ray.util.queue import Empty

        try:
            return self.results.get(timeout=timeout)
        except Empty:
            return None

    def exitcode(self, rank: int) -> int | None:
        if rank in self._codes:
            return self._codes[rank]
        ready, _ = self.ray.wait([self.refs[rank]], timeout=0)
        if not ready:
            return None
        try:
            code = int(self.ray.get(self.refs[rank]))
        except self.ray.exceptions.WorkerCrashedError:
            code = -signal.SIGKILL
        except Exception as e:  # noqa: BLE001 - a task that raised outside the loop's own handling
            log.error("Ray worker %d ended with %s", rank, type(e).__name__)
            code = 1
        self._codes[rank] = code
        return code

    def join(self, timeout: float) -> None:
        self.ray.wait(self.refs, num_returns=len(self.refs), timeout=timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):  # already finished
                self.ray.cancel(ref, force=True)
        for q in (self.tasks, self.results):
            with contextlib.suppress(Exception):
                q.shutdown(force=True)
        if self._started_ray:
            self.ray.shutdown()
