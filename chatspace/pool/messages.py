"""What the supervisor and a worker say to each other: one dataclass per kind of message.

They cross process (and, with Ray, machine) boundaries by pickling, so they hold plain data only:
numbers, strings, dicts of those, and a unit's rows (an array, or a few numbers that describe them:
`np.asarray(task.rows)` gives the row numbers). A task queue carries `Task`s and finally
`STOP`; a result queue carries the worker's messages, the `Message` union.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from chatspace.store.records import UnitRecord

STOP = None  # no more work: the worker finishes what it holds, reports its stats and exits


@dataclass(frozen=True)
class Task:
    """One unit of the plan for a worker: its number and the dataset rows it covers."""

    unit: int
    rows: Any  # int64 array, or data.row_blocks.RowRange / BlockRows: np.asarray gives the rows


@dataclass(frozen=True)
class Ready:
    """The worker loaded its model and takes work; `placement` says where it runs (host, Ray ids)."""

    rank: int
    device: str
    pid: int
    encoder: dict[str, Any]
    load_seconds: float
    warmup_seconds: float
    placement: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowsDone:
    """Rows (embedded or skipped) and tokens of `unit` since the last report: drives progress and stall
    checks; a unit's rows are taken back from the bar if its worker is lost before the unit is written."""

    rank: int
    rows: int
    tokens: int
    unit: int


@dataclass(frozen=True)
class UnitDone:
    """A unit's shard and completion record are written; `record` is what the manifest keeps."""

    rank: int
    record: UnitRecord


@dataclass(frozen=True)
class Finished:
    """All work done: the worker's summed stats, sent just before a clean exit."""

    rank: int
    device: str
    stats: dict[str, Any]


class Stage(Enum):
    """Where in a worker an error happened; its value is how the run's messages say it."""

    LOADING = "loading the model"
    READING = "reading data"
    ENCODING = "encoding"
    WRITING = "writing a shard"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Failed:
    """The worker stopped on an error: the stage it was in, a one-line cause, the traceback for the log."""

    rank: int
    device: str
    stage: Stage
    message: str
    traceback: str


Message = Ready | RowsDone | UnitDone | Finished | Failed
