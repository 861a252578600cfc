"""Unit completion records and the one manifest per run.

A worker writes `units/unit-NNNNN.json` only after its shard is renamed into place, so a record's
existence (plus a matching checksum) is what "this unit is done" means. The supervisor folds all records
into `manifest.json`, whose `status` is `complete` only when every planned unit has one.
"""

from __future__ import annotations

import errno
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

import orjson

from chatspace.errors import ChatspaceError, describe_os_error
from chatspace.redact import redact_obj
from chatspace.stats import WorkerStats
from chatspace.store.layout import RunLayout
from chatspace.store.root import OutputRoot

FORMAT = "chatspace.manifest/1"


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


def load_unit_records(layout: RunLayout) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for p in layout.output.glob(layout.units_dir, "unit-*.json"):
        try:
            rec = read_json(layout.output, p)
            out[int(rec["unit"])] = rec
        except (OSError, orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            continue  # a torn record is no record: the unit is redone
    return out


def unit_is_intact(layout: RunLayout, record: dict[str, Any], check_checksum: bool = True) -> bool:
    """The record's shard is on disk with the recorded size (and checksum)."""
    shard = record.get("shard")
    if shard is None:
        return record.get("rows", 0) == 0
    path = layout.shard_path(int(record["unit"]))  # where it is, even while staged
    try:
        if layout.output.size(path) != shard["bytes"]:
            return False
    except OSError:
        return False
    return not check_checksum or layout.output.sha256(path) == shard["sha256"]


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


class ManifestBuilder:
    """Holds the run-level facts; `build()` folds in the unit records at any moment."""

    def __init__(self, layout: RunLayout, base: dict[str, Any]):
        self.layout = layout
        self.base = base
        self.started = time.time()
        self.timings: dict[str, float] = {}
        self.workers: dict[int, dict[str, Any]] = {}

    def build(
        self, records: dict[int, dict[str, Any]], status: str, error: dict | None = None
    ) -> dict[str, Any]:
        shards = []
        skipped: dict[str, int] = {}
        total = WorkerStats()
        rows = bytes_ = 0
        norm_min = norm_max = None
        expansion: dict[str, int] = {}
        for unit in sorted(records):
            rec = records[unit]
            fold_expansion(expansion, rec.get("expansion"))
            for reason, n in rec.get("skipped", {}).items():
                skipped[reason] = skipped.get(reason, 0) + n
            total = total + WorkerStats.from_dict(rec.get("stats", {}))
            rows += rec.get("rows", 0)
            shard = rec.get("shard")
            if shard is None:
                continue
            bytes_ += shard["bytes"]
            if shard.get("norm_min") is not None:
                norm_min = shard["norm_min"] if norm_min is None else min(norm_min, shard["norm_min"])
                norm_max = shard["norm_max"] if norm_max is None else max(norm_max, shard["norm_max"])
            shards.append(
                {
                    "unit": unit,
                    **shard,
                    "worker": rec.get("worker"),
                    "device": rec.get("device"),
                    "run_id": rec.get("run_id"),
                    "written_at": rec.get("written_at"),
                }
            )
        planned = self.base["plan"]["units"]
        selected = self.base["sampling"]["selected_rows"]
        # Worker-level facts that no unit carries: model load, warm-up, waiting, wall time.
        for w in self.workers.values():
            total.load_seconds += w.get("load_seconds", 0.0)
            total.warmup_seconds += w.get("warmup_seconds", 0.0)
            final = w.get("stats", {})
            total.wall_seconds += final.get("wall_seconds", 0.0)
            for stage, seconds in final.get("idle_seconds", {}).items():
                total.idle_seconds[stage] = total.idle_seconds.get(stage, 0.0) + seconds
        manifest = {
            "format": FORMAT,
            **self.base,
            "status": status,
            "updated_at": now_iso(),
            "shards": shards,
            "totals": {
                "units_planned": planned,
                "units_done": len(records),
                "selected_rows": selected,
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
            "workers": [self.workers[k] for k in sorted(self.workers)],
            "timings": {**self.timings, "elapsed_seconds": round(time.time() - self.started, 3)},
        }
        if expansion:
            manifest["totals"]["expansion"] = dict(sorted(expansion.items()))
        if error:
            manifest["error"] = redact_obj(error)  # a server's error may quote credentials back
        if status == "complete":
            manifest["finished_at"] = now_iso()
        return manifest

    def write(
        self, records: dict[int, dict[str, Any]], status: str, error: dict | None = None
    ) -> dict[str, Any]:
        manifest = self.build(records, status, error)
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


def fold_expansion(total: dict[str, int], unit: dict[str, int] | None) -> None:
    """Add one unit's counts of what its rows became (messages, chunks) to the run's; the longest
    text's chunk count is a maximum, not a sum."""
    for key, n in (unit or {}).items():
        total[key] = max(total.get(key, 0), n) if key.startswith("most_") else total.get(key, 0) + n


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
