"""Unit completion records and the one manifest per run.

A worker writes `units/unit-NNNNN.json` only after its shard is renamed into place, so a record's
existence (plus a matching checksum) is what "this unit is done" means. The supervisor folds all records
into `manifest.json`, whose `status` is `complete` only when every planned unit has one.
"""

from __future__ import annotations

import errno
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import orjson

from chatspace.errors import ChatspaceError, describe_os_error
from chatspace.redact import redact_obj
from chatspace.stats import WorkerStats
from chatspace.store.format_schema import check_before_writing
from chatspace.store.layout import RunLayout
from chatspace.store.records import FORMAT, RecordError, SchedulerReport, UnitRecord
from chatspace.store.root import OutputRoot
from chatspace.store.unit_totals import UnitTotals

if TYPE_CHECKING:
    from chatspace.config import RunConfig
    from chatspace.data.sampling import Selection
    from chatspace.data.sources import SourceSpec

__all__ = ["FORMAT"]  # the manifest format's name, from chatspace.store.records


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_json(root: OutputRoot, path: PurePath) -> Any:
    return orjson.loads(root.read_bytes(path))


def read_manifest(root: OutputRoot, path: PurePath) -> dict[str, Any] | None:
    try:
        data = read_json(root, path)
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def remove_stale_json_temporaries(root: OutputRoot, index_dir: PurePath) -> int:
    """`.manifest.json.tmp-PID` / `.unit-N.json.tmp-PID` left by a killed run (or an old full disk)."""
    stale = [*root.glob(index_dir, ".*.json.tmp-*"), *root.glob(index_dir / "units", ".*.json.tmp-*")]
    for p in stale:
        root.remove(p)
    return len(stale)


# --- unit records ---------------------------------------------------------------------------------


def load_unit_records(layout: RunLayout, malformed: list[int] | None = None) -> dict[int, UnitRecord]:
    """Every readable unit record; the units of records that name their unit but are otherwise not
    records this version would write go to `malformed` (the caller says so and removes them)."""
    out: dict[int, UnitRecord] = {}
    paths = layout.output.glob(layout.units_dir, "unit-*.json")  # one listing
    for data in layout.output.read_many(paths).values():  # read together, not one after another
        if isinstance(data, OSError):
            continue  # gone since the listing: no record
        try:
            document = orjson.loads(data)
            rec = UnitRecord.from_json(document)
        except orjson.JSONDecodeError:
            continue  # a torn record is no record: the unit is redone
        except RecordError:
            try:
                if malformed is not None:
                    malformed.append(int(document["unit"]))
            except (KeyError, TypeError, ValueError):
                pass
            continue
        out[rec.unit] = rec
    return out


def recorded_config_hashes(layout: RunLayout) -> set[str | None]:
    """The config hashes of the run at `layout`: its manifest's, else those its unit records carry."""
    manifest = read_manifest(layout.output, layout.manifest_path)
    if manifest is not None:
        return {manifest.get("config_hash")}
    return {r.config_hash for r in load_unit_records(layout).values()}


def choose_sampler(final: RunLayout, cfg: RunConfig) -> RunConfig:
    """The --n sampler of a run of `cfg` at `final`: the one of the run it resumes (or finds complete),
    recorded in that run's config hash (none recorded: version 1); for a fresh run or an --overwrite,
    the newest."""
    from chatspace.data.sampling import SAMPLER_VERSION

    if cfg.sampling.n is None or cfg.sampling.sampler is not None:
        return cfg
    newest = cfg.replace(sampler=SAMPLER_VERSION)
    if cfg.output.overwrite:
        return newest
    for layout in (final.staging, final):
        if layout is final or final.output.exists(layout.stage_dir):
            recorded = recorded_config_hashes(layout)  # read once, asked for both samplers
            for candidate in (cfg, newest):
                if candidate.output_hash() in recorded:
                    return candidate
    return newest


def write_unit_record(layout: RunLayout, record: UnitRecord) -> None:
    document = record.to_json()
    check_before_writing(document, "unit_record")
    layout.output.write_json(layout.unit_record_path(record.unit), document)


def unit_is_intact(layout: RunLayout, record: UnitRecord, check_checksum: bool = True) -> bool:
    """The record's shard is on disk with the recorded size (and checksum)."""
    shard = record.shard
    if shard is None:
        return record.embedded == 0
    path = layout.shard_path(record.unit)  # where it is, even while staged
    try:
        if layout.output.size(path) != shard.bytes:
            return False
    except OSError:
        return False
    return not check_checksum or layout.output.sha256(path) == shard.sha256


# --- provenance ---------------------------------------------------------------------------------------


def git_sha() -> str | None:
    """The SHA of the chatspace checkout in use (None when installed from a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def library_versions(names: tuple[str, ...] = ()) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = names or (
        "torch",
        "sentence-transformers",
        "transformers",
        "tokenizers",
        "pyarrow",
        "numpy",
        "datasets",
        "openai",
    )
    out: dict[str, str | None] = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


# --- the manifest -------------------------------------------------------------------------------------


class ManifestWriteError(ChatspaceError):
    """The manifest could not be written (a full or read-only disk): one line, never a traceback."""

    def __init__(self, path: str, error: OSError):
        self.os_error = error
        cause = describe_os_error(OSError(error.errno, error.strerror or str(error)))
        super().__init__(f"cannot write the run's manifest {path}: {cause}")


def manifest_base(
    *,
    run_id: str,
    cfg: RunConfig,
    source: SourceSpec,
    total_rows: int,
    selection: Selection,
    units: int,
    layout: RunLayout,
    tool_version: str,
) -> dict[str, Any]:
    """The run-level facts a manifest starts from, in the order it lists them: identity, provenance,
    the config, the dataset and its sampling, the plan, the layout and the model's name."""
    data, sampling = cfg.data, cfg.sampling
    return {
        "run_id": run_id,
        "config_hash": cfg.output_hash(),
        "created_at": now_iso(),
        "tool": {"name": "chatspace", "version": tool_version},
        "git_sha": git_sha(),
        "versions": library_versions(),
        "command": list(sys.argv),
        "config": cfg.to_dict(),
        "dataset": {
            "name": data.dataset,
            "label": layout.dataset,
            "source": source.source,
            "subset": data.subset,
            "split": data.split,
            "total_rows": total_rows,
            "files": [
                {"path": f.user_path, "rows": f.num_rows, "format": f.fmt}
                | ({"read_from": f.path} if f.origin else {})
                for f in source.files
            ],
            "addressing": source.mode,
            "identity": source.identity,
        },
        "sampling": {
            "method": selection.method,
            "n": sampling.n,
            "p": sampling.p,
            "seed": sampling.seed,
            **({"sampler": selection.sampler} if selection.sampler else {}),  # --n: its version
            "total_rows": selection.total_rows,
            "selected_rows": selection.count,
        },
        "plan": {"units": units, "rows_per_shard": cfg.output.rows_per_shard},
        "layout": {
            "root": layout.output.url(),
            "embeddings_dir": layout.relative(layout.embeddings_dir),
            "index_dir": layout.relative(layout.index_dir),
            "log": layout.relative(layout.log_path(run_id)),
        },
        "model": {"name": cfg.encoder.model},
    }


class ManifestBuilder:
    """Holds the run-level facts; `build()` folds in the unit records and the scheduler's report at any
    moment. What the run finds after its units are done (skipped rows, repeated ids) is set on it."""

    def __init__(self, layout: RunLayout, base: dict[str, Any]):
        self.layout = layout
        self.base = base
        self.model_name = base.get("model", {}).get("name")
        self.started = time.time()
        self.timings: dict[str, float] = {}
        self.report: SchedulerReport | None = None  # set once a scheduler hands out units
        self.skipped_rows_file: dict[str, Any] | None = None
        self.duplicate_ids: dict[str, Any] | None = None
        self.unit_totals = UnitTotals()  # the records folded in so far

    def resumes(self, previous: dict[str, Any]) -> None:
        """A resume keeps what the earlier attempts recorded: when the run began, its model, each attempt."""
        self.base["created_at"] = previous.get("created_at", self.base["created_at"])
        self.base["model"] = previous.get("model") or self.base["model"]
        self.base["attempts"] = earlier_attempts(previous)

    def build(self, records: dict[int, UnitRecord], status: str, error: dict | None = None) -> dict[str, Any]:
        manifest = {"format": FORMAT, **self._run_facts(), "status": status, "updated_at": now_iso()}
        units, expansion = self._units(records)
        manifest |= units
        manifest["workers"] = [w.to_json() for _, w in sorted(self._workers().items())]
        manifest["timings"] = {**self._timings(), "elapsed_seconds": round(time.time() - self.started, 3)}
        if expansion:
            manifest["totals"]["expansion"] = dict(sorted(expansion.items()))
        if error:
            manifest["error"] = redact_obj(error)  # a server's error may quote credentials back
        if status == "complete":
            manifest["finished_at"] = now_iso()
        return manifest

    def _workers(self):
        return self.report.workers if self.report is not None else {}

    def _run_facts(self) -> dict[str, Any]:
        facts = dict(self.base)
        report = self.report
        if report is not None:
            if report.encoder is not None:
                per_device = ("device", "threads")
                facts["model"] = {
                    "name": self.model_name,
                    **{k: v for k, v in report.encoder.items() if k not in per_device},
                }
            facts["lost_workers"] = [lost.to_json() for lost in report.lost]
            if report.lost:
                facts["units_redone"] = report.units_redone
            if report.poison:
                facts["poison_units"] = [p.to_json() for p in report.poison]
        if self.skipped_rows_file is not None:
            facts["skipped_rows_file"] = self.skipped_rows_file
        if self.duplicate_ids is not None:
            facts["duplicate_ids"] = self.duplicate_ids
        return facts

    def _timings(self) -> dict[str, float]:
        first = self.report.first_worker_ready_seconds if self.report is not None else None
        out: dict[str, float] = {}
        for key, seconds in self.timings.items():
            out[key] = seconds
            if key == "plan_seconds" and first is not None:
                out["first_worker_ready_seconds"] = first
        if first is not None:  # no plan timed (a builder made by hand)
            out.setdefault("first_worker_ready_seconds", first)
        return out

    def _units(self, records: dict[int, UnitRecord]) -> tuple[dict[str, Any], dict[str, int]]:
        """The shards, totals, skip counts and summed stats of the records (and worker-level stats)."""
        sums = self.unit_totals
        sums.update(records)
        shards = sums.shards()
        skipped = sums.skipped
        total = sums.stats + WorkerStats()  # a copy: the worker-level facts below are not the units'
        rows, bytes_, norm_min, norm_max = sums.rows, sums.bytes, sums.norm_min, sums.norm_max
        expansion = dict(sums.expansion)
        # Worker-level facts that no unit carries: model load, warm-up, waiting, wall time.
        for w in self._workers().values():
            total.load_seconds += w.load_seconds or 0.0
            total.warmup_seconds += w.warmup_seconds or 0.0
            final = w.stats or {}
            total.wall_seconds += final.get("wall_seconds", 0.0)
            for stage, seconds in final.get("idle_seconds", {}).items():
                total.idle_seconds[stage] = total.idle_seconds.get(stage, 0.0) + seconds
        return {
            "shards": shards,
            "totals": {
                "units_planned": self.base["plan"]["units"],
                "units_done": len(records),
                "selected_rows": self.base["sampling"]["selected_rows"],
                "rows": rows,
                "skipped_rows": sum(skipped.values()),
                "bytes": bytes_,
                "shards": len(shards),
                "norm_min": norm_min,
                "norm_max": norm_max,
                "tokens": total.tokens,
                "padded_tokens": total.padded_tokens,
                "truncated_rows": total.truncated,
            },
            "skipped": dict(sorted(skipped.items())),
            "stats": total.to_dict(),
        }, expansion

    def write(self, records: dict[int, UnitRecord], status: str, error: dict | None = None) -> dict[str, Any]:
        manifest = self.build(records, status, error)
        check_before_writing(manifest, "manifest")
        output, path = self.layout.output, self.layout.manifest_path
        try:
            output.write_json(path, manifest)
        except OSError as e:
            # No room for a second copy: a manifest that still said "running" would be wrong, so
            # rewrite the old one in place if the new one fits; otherwise one clear error.
            if not (e.errno in (errno.ENOSPC, errno.EDQUOT) and status != "running"):
                raise ManifestWriteError(output.url(path), e) from None
            compact = orjson.dumps(manifest, option=orjson.OPT_SERIALIZE_NUMPY)
            if not output.overwrite_in_place(path, compact):
                raise ManifestWriteError(output.url(path), e) from None
        return manifest


def failed_before_any_unit(manifest: dict[str, Any]) -> bool:
    """A run that stopped (failed, interrupted) having kept nothing: no unit finished, or every unit that
    did skipped all its rows (a wrong --text-field). Nothing of it is worth resuming, so it neither blocks
    a plain rerun nor counts as a damaged output."""
    totals = manifest.get("totals", {})
    return (
        manifest.get("status") in ("failed", "interrupted")
        and not manifest.get("shards")
        and not totals.get("rows")
    )


#: What each earlier attempt of a run keeps in a rewritten manifest's `attempts` (nothing is overwritten).
ATTEMPT_FIELDS = (
    "created_at",
    "updated_at",
    "finished_at",
    "status",
    "error",
    "command",
    "git_sha",
    "tool",
    "model",
    "workers",
    "lost_workers",
    "units_redone",
    "poison_units",
    "timings",
    "totals",
)


def earlier_attempts(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The `attempts` of a manifest that replaces `previous` (a resume): what every earlier attempt
    recorded, oldest first, the one being resumed last."""
    attempts = [a for a in previous.get("attempts", []) if isinstance(a, dict)]
    last = {k: previous[k] for k in ATTEMPT_FIELDS if previous.get(k) not in (None, [], {})}
    return [*attempts, last]
