"""Workers as Ray actors: the same WorkerLoop, beyond one node.

Each actor asks Ray for one GPU (Ray sets its CUDA_VISIBLE_DEVICES) or for `threads` CPUs, and talks to
the supervisor through two bounded `ray.util.queue.Queue`s, exactly as local workers do through
multiprocessing queues. The output root (and a local dataset path) must be on storage every node sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from chatspace.errors import ChatspaceError, UsageError
from chatspace.logs import quiet_libraries, quiet_worker_environment
from chatspace.pool.executors import TASKS_PER_WORKER
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
_DEFAULT_PORTS = {"ray": 10001, "gcs": 6379}  # Ray Client server; GCS (`ray start --head`)


def resolve_ray_address(address: str | None) -> str:
    """The address to give `ray.init`: "local" unless the user named a cluster that answers.

    A bare `ray.init()` attaches to whatever Ray's `ray_current_cluster` file names, and hangs for many
    minutes when that cluster has died. So no address (and no RAY_ADDRESS) starts a fresh local
    instance, and a named cluster ("auto" included) is probed first: one line within seconds if it
    does not answer.
    """
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if address in ("", "local"):
        return "local"
    target = _current_cluster_address() if address == "auto" else address
    if not target:
        raise ChatspaceError(
            "--ray-address auto: no running Ray cluster was started on this machine "
            "(start one with `ray start --head`, or leave --ray-address out to run a local one)"
        )
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        raise ChatspaceError(
            f"the Ray cluster at {target} does not answer ({e.strerror or e}); check --ray-address / "
            "RAY_ADDRESS, or leave both unset to run a local Ray instance"
        ) from None
    return address


def _current_cluster_address() -> str | None:
    """What `ray start` last recorded in Ray's temp dir (RAY_TMPDIR, else <tmp>/ray)."""
    temp_dir = os.environ.get("RAY_TMPDIR") or os.path.join(
        "/tmp" if sys.platform != "win32" else os.environ.get("TEMP", "."), "ray"
    )
    try:
        return Path(temp_dir, "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _host_port(address: str) -> tuple[str, int]:
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "gcs", address
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [ipv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not host:
        raise UsageError(f"--ray-address {address!r} is not host:port or ray://host:port")
    try:
        return host, int(port) if port else _DEFAULT_PORTS.get(scheme, _DEFAULT_PORTS["gcs"])
    except ValueError:
        raise UsageError(f"--ray-address {address!r}: {port!r} is not a port number") from None


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
    """Same interface as LocalExecutor: put_task, get_message, exitcode, restart, join, shutdown."""

    supports_restart = True

    def __init__(self, specs: list[WorkerSpec], log_level: int, address: str | None = None):
        try:
            import ray
            import ray.util.queue  # noqa: F401 - checked here, used per worker
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'chatspace[ray]'") from None
        self.ray = ray
        self.specs = specs
        self.log_level = log_level
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(
                address=resolve_ray_address(address),
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
            self._started_ray = True
        self.queues: list[tuple[Any, Any]] = [self._new_queues() for _ in specs]
        self.refs: list[Any] = []
        self._codes: dict[int, int] = {}
        self._next = 0  # round-robin start for get_message

    def _new_queues(self):
        from ray.util.queue import Queue

        options = {"num_cpus": 0}
        return (
            Queue(maxsize=TASKS_PER_WORKER + 1, actor_options=options),
            Queue(maxsize=10_000, actor_options=options),
        )

    def _submit(self, spec: WorkerSpec):
        remote_run = self.ray.remote(max_retries=0)(_run_in_actor)
        if spec.device.kind == "cuda":
            options = {"num_gpus": 1, "num_cpus": 1}
        else:
            options = {"num_cpus": spec.threads or 1}
        tasks, results = self.queues[spec.rank]
        return remote_run.options(name=f"chatspace-worker-{spec.rank}", **options).remote(
            spec, tasks, results, self.log_level
        )

    def start(self) -> None:
        self.refs = [self._submit(spec) for spec in self.specs]

    def restart(self, rank: int) -> None:
        """A new task for `rank` with fresh queues; Ray places it where the resources are."""
        with contextlib.suppress(Exception):
            self.ray.cancel(self.refs[rank], force=True)
        for q in self.queues[rank]:
            with contextlib.suppress(Exception):
                q.shutdown(force=True)
        self.queues[rank] = self._new_queues()
        self._codes.pop(rank, None)
        self.refs[rank] = self._submit(self.specs[rank])

    def put_task(self, rank: int, task: dict | None) -> bool:
        from ray.util.queue import Full

        try:
            self.queues[rank][0].put_nowait(task)
            return True
        except Full:
            return False

    def get_message(self, timeout: float) -> dict | None:
        import time

        from ray.util.queue import Empty

        deadline = time.monotonic() + timeout
        while True:
            n = len(self.queues)
            for i in range(n):
                rank = (self._next + i) % n
                try:
                    msg = self.queues[rank][1].get_nowait()
                except Empty:
                    continue
                self._next = (rank + 1) % n
                return msg
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

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
        for q in (q for pair in self.queues for q in pair):
            with contextlib.suppress(Exception):
                q.shutdown(force=True)
        if self._started_ray:
            self.ray.shutdown()
