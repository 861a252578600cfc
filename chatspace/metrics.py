"""Stage timers and worker stats that add together (datatrove's PipelineStats.__add__ habit).

Each worker keeps one `WorkerStats`; units carry their own; the supervisor sums them for the manifest.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("read", "extract", "tokenize", "encode", "write")


@dataclass
class WorkerStats:
    units: int = 0
    selected: int = 0  # rows handed to the worker (embedded + skipped)
    rows: int = 0  # rows embedded and written
    skipped: dict[str, int] = field(default_factory=dict)
    tokens: int = 0  # real tokens embedded
    padded_tokens: int = 0  # tokens the encoder actually computed, padding included
    truncated: int = 0
    batches: int = 0
    oom_splits: int = 0
    recompiles: int = 0
    requests: int = 0  # OpenAI mode
    retries: int = 0
    bytes_written: int = 0
    busy_seconds: dict[str, float] = field(default_factory=dict)  # per stage
    idle_seconds: dict[str, float] = field(default_factory=dict)  # per stage: waiting for input
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    wall_seconds: float = 0.0
    gpu: dict[str, float] = field(default_factory=dict)  # sampled utilisation / memory

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __add__(self, other: WorkerStats) -> WorkerStats:
        out = WorkerStats()
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                merged = Counter(a)
                merged.update(b)
                setattr(out, f.name, dict(merged))
            else:
                setattr(out, f.name, a + b)
        # Telemetry maxima and means do not add; keep the larger peak.
        for key in set(self.gpu) | set(other.gpu):
            out.gpu[key] = max(self.gpu.get(key, 0.0), other.gpu.get(key, 0.0))
        return out

    def merge(self, other: WorkerStats) -> None:
        """Add `other` into this object in place (thread-safe against the add_* methods)."""
        total = self + other
        with self._lock:
            for f in dataclasses.fields(self):
                setattr(self, f.name, getattr(total, f.name))

    def add_busy(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.busy_seconds[stage] = self.busy_seconds.get(stage, 0.0) + seconds

    def add_idle(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.idle_seconds[stage] = self.idle_seconds.get(stage, 0.0) + seconds

    def count_skip(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    @contextmanager
    def busy(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add_busy(stage, time.perf_counter() - t)

    @contextmanager
    def idle(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add_idle(stage, time.perf_counter() - t)

    @property
    def padding_efficiency(self) -> float | None:
        return self.tokens / self.padded_tokens if self.padded_tokens else None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["padding_efficiency"] = self.padding_efficiency
        encode_s = self.busy_seconds.get("encode", 0.0)
        d["tokens_per_encode_second"] = self.tokens / encode_s if encode_s else None
        d["rows_per_wall_second"] = self.rows / self.wall_seconds if self.wall_seconds else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerStats:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class GpuTelemetry:
    """Samples utilisation and memory of one GPU through pynvml in a background thread.

    The GPU is named by its UUID (what CUDA reports for the worker's device), never by an index:
    NVML numbers GPUs by PCI bus, CUDA by speed unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and
    CUDA_VISIBLE_DEVICES may hold UUIDs. An index is the fallback when no UUID is known."""

    def __init__(self, uuid: str | None = None, index: int | None = None, interval: float = 1.0):
        self.uuid = uuid
        self.index = index
        self.interval = interval
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle = None

    def start(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            if self.uuid:
                uuid = self.uuid if self.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{self.uuid}"
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            elif self.index is not None:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            else:
                return False
        except Exception:  # noqa: BLE001 - telemetry is best effort; no NVML, no samples
            return False
        self._thread = threading.Thread(target=self._run, name="nvml", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        import pynvml

        while not self._stop.wait(self.interval):
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
                self._samples.append((float(util.gpu), mem.used / 2**30))
            except Exception:  # noqa: BLE001
                return

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if not self._samples:
            return {}
        utils = [u for u, _ in self._samples]
        mems = [m for _, m in self._samples]
        return {
            "util_mean_pct": sum(utils) / len(utils),
            "util_max_pct": max(utils),
            "mem_max_gib": max(mems),
            "samples": float(len(utils)),
        }


def cuda_device_uuid() -> str | None:
    """The UUID CUDA reports for this process's first visible GPU (the one a worker is pinned to)."""
    try:
        import torch

        return str(torch.cuda.get_device_properties(0).uuid)
    except Exception:  # noqa: BLE001 - no CUDA, or a torch without device UUIDs
        return None


def telemetry_for(device) -> GpuTelemetry:
    """NVML telemetry for a CUDA worker's device: by the UUID CUDA reports for it; else by the entry
    the worker was pinned to (a UUID, or an index, which NVML and CUDA agree on only in PCI order)."""
    physical = device.physical or ""
    uuid = cuda_device_uuid()
    if uuid is None and physical.startswith(("GPU-", "MIG-")):
        uuid = physical
    index = int(physical) if uuid is None and physical.isdigit() else None
    return GpuTelemetry(uuid=uuid, index=index)
