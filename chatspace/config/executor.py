"""Where and how the workers run: the executor, its devices, threads, and how a lost worker is handled.
None of it changes the rows written."""

from __future__ import annotations

from dataclasses import dataclass

from chatspace.config.base import ConfigPart, check_positive, choice
from chatspace.errors import UsageError

EXECUTORS = ("local", "ray")
RAY_DEVICES = ("cuda", "cpu")


@dataclass(frozen=True)
class ExecutorConfig(ConfigPart):
    """Spawned local processes, one per device label, or actors across a Ray cluster."""

    executor: str = choice("local", EXECUTORS)
    devices: tuple[str, ...] = ("cpu:0",)  # local workers: cpu:N, cuda:N (Ray places its own)
    threads_per_worker: int | None = None  # None: cores / workers
    stall_timeout: float = 1800.0  # seconds a ready worker may go without finishing a chunk; 0: never
    max_worker_restarts: int = 2  # per device: a lost worker is replaced this often; 0: stop the run
    ray_address: str | None = None  # None: start a local Ray cluster
    ray_workers: int | None = None  # None: as many as the Ray cluster holds
    ray_device: str = choice("cuda", RAY_DEVICES)  # what each Ray worker asks for: a GPU, or CPUs

    IDENTITY = ()

    def validate(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))  # a list from a manifest or a file
        if not self.devices and self.executor == "local":
            raise UsageError("no devices to run on")
        check_positive("threads_per_worker", self.threads_per_worker)
        if self.ray_workers is not None and self.ray_workers <= 0:
            raise UsageError("--ray-workers must be at least 1")
        if self.stall_timeout < 0:
            raise UsageError("--stall-timeout must be >= 0")
        if self.max_worker_restarts < 0:
            raise UsageError("--max-worker-restarts must be >= 0")
