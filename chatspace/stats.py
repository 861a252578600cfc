"""Stage timers and worker stats that add together (datatrove's PipelineStats.__add__ habit).

Each worker keeps one `WorkerStats`; units carry their own; the supervisor sums them for the manifest.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
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
        return WorkerStats.total([self, other])

    @classmethod
    def total(cls, many: Iterable[WorkerStats]) -> WorkerStats:
        """The sum of many in one pass (a run's 100,000 units): counts and seconds add, per-stage dicts
        add key by key; telemetry maxima and means do not add, so GPU figures keep the larger peak."""
        names = _FIELD_NAMES
        sums: dict[str, Any] = {name: None for name in names}
        for stats in many:
            for name in names:
                value, so_far = getattr(stats, name), sums[name]
                if so_far is None:
                    sums[name] = dict(value) if isinstance(value, dict) else value
                elif name == "gpu":
                    for key, v in value.items():
                        so_far[key] = max(so_far.get(key, 0.0), v)
                elif isinstance(so_far, dict):
                    for key, v in value.items():
                        so_far[key] = so_far.get(key, 0) + v
                else:
                    sums[name] = so_far + value
        return cls(**{name: value for name, value in sums.items() if value is not None})

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


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(WorkerStats))
