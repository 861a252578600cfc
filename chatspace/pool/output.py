"""What a run finds in its output before it starts: a fresh output, a run to resume, or one to replace.

Nothing on disk is trusted blindly. A resume refuses a dataset that changed since the interrupted run,
and keeps a unit only when its record agrees with the plan and its shard with the record. `--overwrite`
builds the new run aside (`.staging/`) and moves it into place only when it is complete, so a kill during
the replacement loses nothing and readers see the old run until then.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chatspace.config import RunConfig, is_safe_run_id
from chatspace.data.identity import identity_changes
from chatspace.errors import UsageError
from chatspace.store.layout import RunLayout
from chatspace.store.manifest import (
    failed_before_any_unit,
    load_unit_records,
    read_json,
    read_manifest,
    recorded_config_hashes,
    remove_stale_json_temporaries,
    unit_is_intact,
)
from chatspace.store.records import UnitRecord
from chatspace.store.shards import remove_stale_temporaries

if TYPE_CHECKING:
    from chatspace.pool.run_plan import RunPlan

log = logging.getLogger("chatspace")

SWITCH_MARKER = "SWITCHING"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class OutputState:
    layout: RunLayout  # where this run writes: the final place, or the staging area of an --overwrite
    run_id: str
    done: dict[int, UnitRecord]  # unit -> record of the units that need no redoing
    previous: dict | None = None  # the manifest of the run being resumed

    @property
    def already_complete(self) -> bool:
        """A --resume of a complete run whose every unit is intact: there is nothing to do or rewrite."""
        return (
            self.previous is not None
            and self.previous.get("status") == "complete"
            and not self.layout.staged
            and len(self.done) == self.previous.get("plan", {}).get("units", -1)
        )


def prepare_output(plan: RunPlan) -> OutputState:
    """Decide between a fresh run, a resume, a staged replacement or a refusal (call with the lock held)."""
    final, cfg = plan.layout, plan.config
    finish_interrupted_switch(final)
    staging = final.staging
    if cfg.output.overwrite:
        output = final.output
        output.remove_tree(staging.stage_dir)
        if output.exists(final.index_dir) or output.exists(final.embeddings_dir):
            log.warning(
                "--overwrite: building the new run aside; the previous run in %s stays in place (and "
                "readable) until the new one is complete",
                final.index_dir,
            )
            return OutputState(staging, cfg.output.run_id or new_run_id(), {})
        return OutputState(final, cfg.output.run_id or new_run_id(), {})
    if final.output.exists(staging.stage_dir):
        if _holds_run_of(staging, cfg):
            if not cfg.output.resume:
                raise UsageError(
                    "an --overwrite of this output was interrupted before it finished (the previous run is "
                    "still in place); rerun with --resume to finish it, or --overwrite to start it again"
                )
            log.info(
                "resuming the interrupted --overwrite; the previous run stays in place until it completes"
            )
            return _resume_or_start(staging, plan)
        log.info("an interrupted --overwrite of another config is set aside in %s", staging.stage_dir)
    return _resume_or_start(final, plan)


def _holds_run_of(layout: RunLayout, cfg: RunConfig) -> bool:
    return cfg.output_hash() in recorded_config_hashes(layout)


def _resume_or_start(layout: RunLayout, plan: RunPlan) -> OutputState:
    """The state of the output at `layout` (the final place, or a staged --overwrite being resumed)."""
    cfg = plan.config
    existing = read_manifest(layout.output, layout.manifest_path)
    malformed: list[int] = []
    on_disk = load_unit_records(layout, malformed)
    if existing is None:
        unreadable = layout.output.exists(layout.manifest_path) or bool(on_disk)
        if not unreadable:
            return OutputState(layout, cfg.output.run_id or new_run_id(), {})
        if not cfg.output.resume:
            raise UsageError(
                f"{layout.manifest_path} is missing or unreadable; --resume rebuilds the run from its "
                f"{len(on_disk)} unit record(s), --overwrite starts over"
            )
        # Rebuild from the records: only those written by this config, on this very dataset.
        ours = [
            r
            for r in on_disk.values()
            if r.config_hash == cfg.output_hash() and r.source == plan.source_digest
        ]
        ids = Counter(r.run_id for r in ours)
        run_id = ids.most_common(1)[0][0] if ids else (cfg.output.run_id or new_run_id())
        run_id = _checked_run_id(run_id, layout.final.units_dir)
        log.warning(
            "the manifest is unreadable: rebuilding it from %d unit record(s) of run %s", len(ours), run_id
        )
        return OutputState(
            layout,
            run_id,
            _intact_records(layout, plan, run_id, on_disk, malformed),
        )
    if failed_before_any_unit(existing) and not any(r.rows for r in on_disk.values()):
        # Nothing of it is kept (no shard; records, if any, of units that embedded nothing): a plain
        # rerun, or --resume, just starts again and says again what to fix if it still embeds nothing.
        log.info("the previous run here (%s) kept nothing; starting afresh", existing["status"])
        layout.output.remove_tree(layout.units_dir)
        return OutputState(layout, cfg.output.run_id or new_run_id(), {})
    if existing.get("config_hash") != cfg.output_hash():
        old = existing.get("config", {})
        differs = [k for k in RunConfig.OUTPUT_FIELDS if old.get(k) != cfg.option_value(k)]
        raise UsageError(
            f"{layout.final.manifest_path} holds a run with a different config (differs in: "
            f"{', '.join(differs) or 'config hash'}); use --overwrite to replace it, or another --output-root"
        )
    status = existing.get("status")
    run_id = _checked_run_id(existing.get("run_id") or new_run_id(), layout.final.manifest_path)
    if not cfg.output.resume:
        if status == "complete":
            raise UsageError(
                f"this run is already complete ({layout.final.manifest_path}); use --overwrite to redo it"
            )
        raise UsageError(
            f"a previous run of this config stopped before finishing ({status}); "
            "rerun with --resume to finish it, or --overwrite to start over"
        )
    recorded, identity = existing.get("dataset", {}).get("identity"), plan.source_identity
    if recorded and identity:
        changes = identity_changes(recorded, identity)
        if changes:
            raise UsageError(
                f"the dataset changed since the run being resumed ({'; '.join(changes[:3])}); resuming "
                "would mix rows of two versions of it. Use --overwrite to start over"
            )
    elif identity:
        log.warning("the run being resumed recorded no dataset identity; cannot check the data is unchanged")
    if cfg.output.run_id and cfg.output.run_id != run_id:
        log.warning("--resume keeps the run id of the run being resumed: %s", run_id)
    done = _intact_records(layout, plan, run_id, on_disk, malformed)
    return OutputState(layout, run_id, done, previous=existing)


def _intact_records(
    layout: RunLayout,
    plan: RunPlan,
    run_id: str,
    on_disk: dict[int, UnitRecord],
    malformed: list[int],
) -> dict[int, UnitRecord]:
    """The records that agree with the plan and whose shards agree with them; the rest are removed."""
    sizes, config_hash = plan.unit_sizes, plan.config.output_hash()
    output = layout.output
    removed = remove_stale_temporaries(output, layout.embeddings_dir)
    removed += remove_stale_json_temporaries(output, layout.index_dir)
    if removed:
        log.info("removed %d partial file(s) left by the interrupted run", removed)
    for unit in malformed:
        log.warning("unit %d: a malformed record; it will be redone", unit)
        output.remove(layout.unit_record_path(unit))
    done: dict[int, UnitRecord] = {}
    for unit, rec in on_disk.items():
        problem = record_problem(layout, rec, sizes, run_id, config_hash, plan.source_digest)
        if problem is None:
            done[unit] = rec
            continue
        log.warning("unit %d: %s; it will be redone", unit, problem)
        output.remove(layout.unit_record_path(unit))
    # A shard with no trusted record is not output: it is redone (or, outside the plan, removed).
    for shard in output.glob(layout.embeddings_dir, "shard-*.parquet"):
        try:
            unit = int(shard.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        if unit not in done:
            output.remove(shard)
    return done


def record_problem(
    layout: RunLayout,
    rec: UnitRecord,
    plan_sizes: list[int],
    run_id: str,
    config_hash: str,
    source: str | None,
) -> str | None:
    """Why a unit record cannot be trusted (None when it can): checked against the plan, then the shard;
    `source` is the digest of the dataset's identity (None: none recorded)."""
    unit = rec.unit
    shard_path = layout.shard_relpath(unit) if 0 <= unit < len(plan_sizes) else ""
    problem = rec.plan_problem(plan_sizes, run_id, config_hash, source, shard_path)
    if problem is None and not unit_is_intact(layout, rec):
        return "shard missing or changed since it was recorded"
    return problem


# --- the switch of a staged run into place ------------------------------------------------------------


def switch_into_place(final: RunLayout) -> None:
    """Move a complete staged run over the previous one: a marker first, so a kill mid-way rolls forward."""
    final.output.write_json(final.stage_dir / SWITCH_MARKER, {"complete": True, "steps": []})
    finish_interrupted_switch(final)


def finish_interrupted_switch(final: RunLayout) -> None:
    """Complete a switch that was killed half-way (idempotent; nothing to do without the marker).

    Each finished step is added to the marker: on an object store a folder's move is a copy of every key
    and then their removal, so a move cut short is redone from its start, never mistaken for done."""
    output, stage = final.output, final.stage_dir
    marker_path = stage / SWITCH_MARKER
    try:
        marker = read_json(output, marker_path)
    except (OSError, ValueError):
        return  # no marker (or a torn one, written before the switch began): nothing was moved yet
    steps: list[str] = list(marker.get("steps", [])) if isinstance(marker, dict) else []

    def step_done(name: str) -> None:
        steps.append(name)
        output.write_json(marker_path, {"complete": True, "steps": steps})

    staged = final.staging
    for name, new, target, old in (
        ("embeddings", staged.embeddings_dir, final.embeddings_dir, stage / "old-embeddings"),
        ("index", staged.index_dir, final.index_dir, stage / "old-index"),
    ):
        if f"{name}:placed" in steps or not output.exists(new):
            continue  # already moved
        if f"{name}:set-aside" not in steps and output.exists(target):
            output.remove_tree(old)
            output.rename(target, old)
            step_done(f"{name}:set-aside")
        output.rename(new, target)
        step_done(f"{name}:placed")
    output.remove(marker_path)
    output.remove_tree(stage)
    output.remove_empty_dir(stage.parent)  # .staging itself, when nothing else is staged


def _checked_run_id(run_id: object, where) -> str:
    """The run id names the log file: one read back from disk must not steer it out of the root."""
    if not is_safe_run_id(run_id):
        raise UsageError(
            f"{where} holds run id {run_id!r}, which is not a safe file name; use --overwrite to start over"
        )
    return str(run_id)
