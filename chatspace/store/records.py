"""The records a run keeps, typed: a unit's completion record, the manifest's shard and worker entries,
and what the scheduler reports about its workers (lost ones, redone and poison units).

Each is frozen, reads itself from the JSON a run wrote (`from_json`) and writes the very same keys in the
very same order (`to_json`), so runs written before these types existed read, resume and verify as they
are. `FORMAT_VERSION` is the manifest format's number (`chatspace.manifest/N`): the records and the
manifest change together. `resources/manifest.schema.json` describes all of them for a reader of the
files; the checks a record can make of itself are methods here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from chatspace.errors import ChatspaceError

FORMAT_VERSION = 1
FORMAT = f"chatspace.manifest/{FORMAT_VERSION}"


class RecordError(ChatspaceError):
    """A record on disk that is not one this version writes (torn, hand-edited, another format)."""


def _known_format(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecordError(f"{what} is not a JSON object")
    fmt = data.get("format", FORMAT)  # format 1 records carry no format of their own
    if fmt != FORMAT:
        raise RecordError(f"{what} is in format {fmt!r}; this version reads {FORMAT}")
    return data


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _counts(data: Any) -> dict[str, int]:
    if not isinstance(data, dict):
        raise RecordError("counts are not a JSON object")
    return {str(k): int(v) for k, v in data.items()}


@dataclass(frozen=True)
class ShardFile:
    """A unit's shard as its worker wrote it: where, how many rows, its size, checksum and norm range."""

    path: str
    rows: int
    bytes: int
    sha256: str
    norm_min: float | None
    norm_max: float | None

    def to_json(self) -> dict[str, Any]:
        # The fields' order is the keys' order; spelt out, as asdict's deep copy costs 50 us a shard.
        return {
            "path": self.path,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "norm_min": self.norm_min,
            "norm_max": self.norm_max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardFile:
        return cls(
            path=str(data["path"]),
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            norm_min=data.get("norm_min"),
            norm_max=data.get("norm_max"),
        )


@dataclass(frozen=True)
class UnitRecord:
    """`units/unit-NNNNN.json`: a unit is done once this exists (written after its shard is in place)."""

    unit: int
    # Rows of the plan in this unit (rows + skipped), and rows embedded and written to the shard. None only
    # in a record this version did not write (by hand, torn): the plan check names what is missing.
    selected: int | None
    rows: int | None
    skipped: dict[str, int]  # reason -> rows
    shard: ShardFile | None  # None when every row was skipped
    worker: int | None
    device: str | None
    run_id: str | None
    config_hash: str | None = None  # absent from the oldest records
    source: str | None = None  # digest of the dataset identity; absent from the oldest records
    written_at: str | None = None
    expansion: dict[str, int] = field(default_factory=dict)  # messages, chunks its rows became
    stats: dict[str, Any] = field(default_factory=dict)  # the unit's WorkerStats, as a dict

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "selected": self.selected,
            "rows": self.rows,
            "skipped": self.skipped,
            "shard": None if self.shard is None else self.shard.to_json(),
            "worker": self.worker,
            "device": self.device,
            "run_id": self.run_id,
        }
        if self.config_hash is not None:
            out["config_hash"] = self.config_hash
        if self.source is not None:
            out["source"] = self.source
        out["written_at"] = self.written_at
        if self.expansion:
            out["expansion"] = self.expansion
        out["stats"] = self.stats
        return out

    @classmethod
    def from_json(cls, data: Any) -> UnitRecord:
        """Raises RecordError for anything this version would not have written."""
        data = _known_format(data, "a unit record")
        try:
            shard = data.get("shard")
            return cls(
                unit=int(data["unit"]),
                selected=_optional_int(data.get("selected")),
                rows=_optional_int(data.get("rows")),
                skipped=_counts(data.get("skipped", {})),
                shard=None if shard is None else ShardFile.from_json(shard),
                worker=data.get("worker"),
                device=data.get("device"),
                run_id=data.get("run_id"),
                config_hash=data.get("config_hash"),
                source=data.get("source"),
                written_at=data.get("written_at"),
                expansion=_counts(data.get("expansion") or {}),
                stats=dict(data.get("stats") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RecordError(f"a malformed unit record ({type(e).__name__}: {e})") from None

    @property
    def skipped_rows(self) -> int:
        return sum(self.skipped.values())

    @property
    def embedded(self) -> int:
        """Rows written to the shard (0 for a record that does not say)."""
        return self.rows or 0

    def plan_problem(
        self,
        plan_sizes: list[int],
        run_id: str,
        config_hash: str,
        source: str | None,
        shard_path: str,
    ) -> str | None:
        """Why this record does not belong to the run being resumed (None when it does), checked
        against its plan; `source` is the digest of the dataset now (None: unknown), `shard_path` where
        this unit's shard goes. The shard file itself is the caller's to check."""
        unit = self.unit
        if not 0 <= unit < len(plan_sizes):
            return f"not a unit of this plan ({len(plan_sizes)} units)"
        if self.run_id != run_id:
            return f"written by run {self.run_id}, not {run_id}"
        if self.config_hash is not None and self.config_hash != config_hash:
            return "written with another config"
        if self.source is not None and source is not None and self.source != source:
            return "written from another version of the dataset"
        if self.selected != plan_sizes[unit]:
            return f"records {self.selected} selected rows, the plan has {plan_sizes[unit]}"
        if self.rows is None:
            return "a malformed record"
        if self.rows + self.skipped_rows != plan_sizes[unit]:
            return f"{self.rows} rows + {self.skipped_rows} skipped != {plan_sizes[unit]} selected"
        if self.rows == 0:
            return None if self.shard is None else "a shard recorded for zero rows"
        if self.shard is None or self.shard.path != shard_path or self.shard.rows != self.rows:
            return "its shard entry does not match the unit"
        return None

    def shard_entry(self) -> ShardEntry | None:
        """The manifest's line for this unit's shard (None when it wrote none)."""
        if self.shard is None:
            return None
        return ShardEntry(self.unit, self.shard, self.worker, self.device, self.run_id, self.written_at)


@dataclass(frozen=True)
class ShardEntry:
    """One of the manifest's `shards`: a unit's shard and who wrote it when."""

    unit: int
    file: ShardFile
    worker: int | None
    device: str | None
    run_id: str | None
    written_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            **self.file.to_json(),
            "worker": self.worker,
            "device": self.device,
            "run_id": self.run_id,
            "written_at": self.written_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> ShardEntry:
        try:
            return cls(
                unit=int(data["unit"]),
                file=ShardFile.from_json(data),
                worker=data.get("worker"),
                device=data.get("device"),
                run_id=data.get("run_id"),
                written_at=data.get("written_at"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RecordError(f"a malformed shard entry ({type(e).__name__}: {e})") from None


def manifest_shards(manifest: dict[str, Any]) -> list[ShardEntry]:
    """A manifest's shard entries in unit order (raises RecordError on a malformed one)."""
    return sorted((ShardEntry.from_json(s) for s in manifest.get("shards", [])), key=lambda s: s.unit)


_WORKER_KEYS = ("rank", "device", "pid", "encoder", "load_seconds", "warmup_seconds", "restarts", "stats")


@dataclass(frozen=True)
class WorkerEntry:
    """One of the manifest's `workers`: where a worker ran, what it loaded, its stats when it finished.

    A worker that finished without having said it was ready (a reused process) has only rank, device
    and stats."""

    rank: int
    device: str
    pid: int | None = None
    placement: dict[str, Any] = field(default_factory=dict)  # host, Ray node and actor ids
    encoder: dict[str, Any] | None = None
    load_seconds: float | None = None
    warmup_seconds: float | None = None
    restarts: int = 0  # how often this rank's worker was replaced before this one
    stats: dict[str, Any] | None = None  # the WorkerStats its Finished message carried

    def finished(self, stats: dict[str, Any]) -> WorkerEntry:
        return replace(self, stats=stats)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rank": self.rank, "device": self.device}
        if self.encoder is not None:
            out |= {
                "pid": self.pid,
                **self.placement,
                "encoder": self.encoder,
                "load_seconds": self.load_seconds,
                "warmup_seconds": self.warmup_seconds,
            }
        if self.restarts:
            out["restarts"] = self.restarts
        if self.stats is not None:
            out["stats"] = self.stats
        return out

    @classmethod
    def from_json(cls, data: Any) -> WorkerEntry:
        try:
            return cls(
                rank=int(data["rank"]),
                device=str(data["device"]),
                pid=data.get("pid"),
                placement={k: v for k, v in data.items() if k not in _WORKER_KEYS},
                encoder=data.get("encoder"),
                load_seconds=data.get("load_seconds"),
                warmup_seconds=data.get("warmup_seconds"),
                restarts=int(data.get("restarts", 0)),
                stats=data.get("stats"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RecordError(f"a malformed worker entry ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class LostWorker:
    """One of the manifest's `lost_workers`: a worker that died holding `units`, and why."""

    rank: int
    device: str
    placement: dict[str, Any]  # which node and actor was lost (Ray)
    cause: str
    exit_code: int | None
    units: list[int]
    at: str
    error: str | None = None  # the worker's own one-line error, when it sent one
    restarted: bool | None = None  # None: the run stopped before deciding (a poison unit)

    def to_json(self) -> dict[str, Any]:
        out = {
            "rank": self.rank,
            "device": self.device,
            **self.placement,
            "cause": self.cause,
            "exit_code": self.exit_code,
            "units": self.units,
            "at": self.at,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.restarted is not None:
            out["restarted"] = self.restarted
        return out


@dataclass(frozen=True)
class PoisonUnit:
    """A unit each of whose workers was lost: the run stops and names its rows."""

    unit: int
    first_row: int
    last_row: int
    rows: int
    workers_lost: int

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "dataset_rows": [self.first_row, self.last_row],
            "rows": self.rows,
            "workers_lost": self.workers_lost,
        }


@dataclass
class SchedulerReport:
    """What the scheduler saw of its workers, kept as it goes; the manifest builder writes it out."""

    workers: dict[int, WorkerEntry] = field(default_factory=dict)  # rank -> its current worker
    lost: list[LostWorker] = field(default_factory=list)
    poison: list[PoisonUnit] = field(default_factory=list)
    encoder: dict[str, Any] | None = None  # the latest ready worker's description of its model
    first_worker_ready_seconds: float | None = None

    @property
    def units_redone(self) -> list[int]:
        return sorted({u for lost in self.lost for u in lost.units})

    def pid(self, rank: int) -> int | None:
        entry = self.workers.get(rank)
        return entry.pid if entry else None
