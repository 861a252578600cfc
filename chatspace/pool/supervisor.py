"""The supervisor: plan the run, hand units to workers, watch them, merge their stats into one manifest.

It never blocks without a timeout and a look at whether the workers are alive; a worker that dies is
replaced and its units redone (chatspace.pool.scheduler), within --max-worker-restarts. Every exit
path shuts the workers down and leaves a manifest that says truthfully how far the run got.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import signal
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from chatspace import __version__
from chatspace.config import DataConfig, RunConfig
from chatspace.errors import ChatspaceError, RunInterrupted, TerminationSignal
from chatspace.logs import plural
from chatspace.pool.output import OutputState, prepare_output, switch_into_place
from chatspace.pool.progress import Progress
from chatspace.pool.run_log import run_logging
from chatspace.pool.run_plan import RunPlan, plan_run
from chatspace.pool.scheduler import Scheduler
from chatspace.pool.worker import WorkerSpec
from chatspace.store.layout import RunLayout
from chatspace.store.lock import acquire_output_lock
from chatspace.store.manifest import ManifestBuilder, ManifestWriteError, load_unit_records, manifest_base
from chatspace.store.records import UnitRecord

log = logging.getLogger("chatspace")


@dataclass
class RunResult:
    manifest_path: PurePath
    manifest: dict[str, Any]
    layout: RunLayout


class _Signals:
    """SIGTERM becomes an exception in the main thread, like SIGINT's KeyboardInterrupt."""

    def __enter__(self):
        self._old = signal.getsignal(signal.SIGTERM)

        def _raise(signum, _frame):
            raise TerminationSignal(signum)

        try:
            signal.signal(signal.SIGTERM, _raise)
        except ValueError:  # not the main thread (e.g. called from a library thread)
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def run_embedding(cfg: RunConfig) -> RunResult:
    """Embed the sampled dataset across the configured devices; the Python API behind `chatspace embed-hf`.

    Plan (no output is written yet), prepare the output, execute the units, finish the manifest. What the
    run holds (the output lock, the log handlers, the workers, the progress bar) is released on every
    way out by one ExitStack, in the reverse order it was taken."""
    started = time.perf_counter()
    plan = plan_run(cfg)
    final = plan.layout
    with contextlib.ExitStack() as held:
        held.callback(acquire_output_lock(final).close)  # held for the whole run
        state = prepare_output(plan)
        if state.already_complete:  # --resume of a complete run: its manifest stays byte for byte
            log.info(
                "run %s is already complete, nothing to do (%s)",
                state.run_id,
                final.output.url(final.manifest_path),
            )
            return RunResult(final.manifest_path, state.previous, final)
        plan = plan.with_run_id(state.run_id)
        records, pending = dict(state.done), plan.pending(state.done)
        progress = Progress(enabled=plan.config.output.progress)
        log_sink = held.enter_context(run_logging(final, state.layout, plan.run_id, progress))
        outcome = held.enter_context(_RunOutcome(plan, state, records, started))
        builder = outcome.builder
        executor = held.enter_context(_workers(plan, pending, log_sink, progress))
        with _Signals():
            _announce(plan, state, records, builder)
            if executor is not None:
                _execute(plan, state.layout, executor, pending, records, builder, progress)
            _check_the_rows(plan, state.layout, records, builder)
    _log_done(final, outcome.manifest)
    return RunResult(final.manifest_path, outcome.manifest, final)


def _execute(plan: RunPlan, layout: RunLayout, executor, pending, records, builder, progress) -> None:
    """Start the workers and hand them the pending units until every unit is recorded; the scheduler's
    report (workers, losses, redone units) goes into the manifest."""
    executor.start(lambda rank, device, threads: WorkerSpec(
        rank, device, threads, plan.config, plan.source.spec, layout, plan.run_id
    ))  # fmt: skip
    scheduler = Scheduler(
        executor, plan.config.execution, plan.config.mode, pending, records, layout, progress,
        plan.selected_rows, checkpoint=lambda: builder.write(records, "running"),
    )  # fmt: skip
    builder.report = scheduler.report
    scheduler.run()


@contextlib.contextmanager
def _workers(plan: RunPlan, pending, log_sink, progress: Progress):
    """The run's executor (None when no unit is pending); on the way out the progress bar closes,
    then every worker is stopped, whatever state it is in."""
    executor = None
    if pending:
        executor = plan.executor_class(
            plan.config.execution, log_sink, logging.getLogger().getEffectiveLevel()
        )
    try:
        yield executor
    finally:
        progress.close()
        if executor is not None:
            executor.shutdown()


def _new_manifest(plan: RunPlan, state: OutputState) -> ManifestBuilder:
    """The manifest's run-level facts; a resume keeps what the earlier attempts recorded."""
    cfg, layout, run_id, final, source, selection = (
        plan.config, state.layout, plan.run_id, plan.layout, plan.source, plan.selection
    )  # fmt: skip
    builder = ManifestBuilder(layout, manifest_base(
        run_id=run_id, cfg=cfg, source=source.spec, total_rows=source.num_rows,
        selection=selection, units=len(plan.units), layout=final, tool_version=__version__,
    ))  # fmt: skip
    if state.previous is not None:  # a resume keeps what the earlier attempts recorded
        builder.resumes(state.previous)
    builder.timings["plan_seconds"] = round(plan.planning_seconds, 3)
    return builder


def _announce(plan: RunPlan, state: OutputState, records: dict[int, dict], builder) -> None:
    """Say what the run will do and record it as running."""
    cfg, selected, total_units = plan.config, plan.selected_rows, len(plan.units)
    log.info(
        "run %s: %d of %d rows selected (%s, seed %d) -> %s of %s%d rows; %d already done",
        plan.run_id,
        selected,
        plan.source.num_rows,
        plan.selection.method,
        cfg.sampling.seed,
        plural(total_units, "unit"),
        "up to " if total_units > 1 else "",
        min(cfg.output.rows_per_shard, selected),
        len(state.done),
    )
    builder.write(records, "running")
    if not total_units:
        log.warning(
            "the sample is empty: %s of %d rows selected none; nothing to embed",
            f"--p {cfg.sampling.p:g}" if cfg.sampling.p is not None else f"--n {cfg.sampling.n}",
            plan.source.num_rows,
        )


class _RunOutcome:
    """On every way out of a run, the manifest says how far it got: complete, interrupted (a signal,
    which leaves as RunInterrupted) or failed with the error's message; a complete --overwrite run then
    replaces the previous one (datatrove's `_run_for_rank`: one teardown for every path)."""

    def __init__(self, plan: RunPlan, state: OutputState, records: dict[int, dict], started: float):
        self.plan, self.layout, self.records, self.started = plan, state.layout, records, started
        self.builder = _new_manifest(plan, state)
        self.manifest: dict[str, Any] = {}

    def __enter__(self) -> _RunOutcome:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status, error, leaving = _status_of(exc)
        if status != "complete":
            _fold_in_unreported_units(self.layout, self.plan.run_id, self.records)
        self.builder.timings["total_seconds"] = round(time.perf_counter() - self.started, 3)
        try:
            self.manifest = self.builder.write(self.records, status, error)
        except ManifestWriteError as e:
            if exc is None:
                raise
            # With another error on its way out, that one is the user's line; this one is said once.
            if not isinstance(exc, ManifestWriteError):
                log.error("%s; the manifest may still say the run is running", e)
        else:
            if status == "complete" and self.layout.staged:
                switch_into_place(self.plan.layout)
                log.info("--overwrite: the new run replaced the previous one")
        if leaving is not None:
            raise leaving from None


def _status_of(exc: BaseException | None) -> tuple[str, dict | None, BaseException | None]:
    """(the manifest's status, its error, the exception to leave with instead of `exc`) of a run's end."""
    if exc is None:
        return "complete", None, None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", {"message": "interrupted by SIGINT"}, RunInterrupted(signal.SIGINT)
    if isinstance(exc, TerminationSignal):
        interrupted = RunInterrupted(exc.signum)
        return "interrupted", {"message": str(interrupted)}, interrupted
    if isinstance(exc, RunInterrupted):
        return "interrupted", {"message": str(exc)}, None
    if isinstance(exc, ChatspaceError):
        return "failed", {"message": str(exc)}, None
    return "failed", {"message": f"{type(exc).__name__}: {exc}"}, None


def _check_the_rows(plan: RunPlan, layout: RunLayout, records: dict[int, dict], builder) -> None:
    """After the last unit: name the skipped rows, fail a run that embedded nothing, report repeated ids."""
    _record_skipped_rows(plan, layout, records, builder)
    _check_something_embedded(plan.config.data, records)
    if plan.config.data.id_field:
        _record_duplicate_ids(plan, layout, records, builder)


def _log_done(final: RunLayout, manifest: dict[str, Any]) -> None:
    totals = manifest["totals"]
    log.info(
        "done: %d rows embedded, %d skipped, %s -> %s",
        totals["rows"],
        totals["skipped_rows"],
        plural(totals["shards"], "shard"),
        final.output.url(final.embeddings_dir),
    )


def _fold_in_unreported_units(layout: RunLayout, run_id: str, records: dict[int, UnitRecord]) -> None:
    """Units a worker finished (its record written) whose message had not been read when the run
    stopped: the manifest of an unfinished run lists every finished shard, as --resume will find them."""
    try:
        on_disk = load_unit_records(layout)
    except Exception as e:  # noqa: BLE001 - the run is already ending, maybe because storage failed
        log.debug("could not read the unit records back (%s)", e)
        return
    for unit, record in on_disk.items():
        if unit not in records and record.run_id == run_id:
            records[unit] = record


def _record_skipped_rows(plan: RunPlan, layout: RunLayout, records, builder) -> None:
    """Name each skipped row (row index, id, reason) in skipped.parquet, listed in the manifest."""
    from chatspace.pool.skipped import skipped_rows, write_skipped_rows

    units = [u for u in plan.units if u.index in records and records[u.index].skipped]
    if units:
        builder.skipped_rows_file = write_skipped_rows(
            layout, skipped_rows(plan.source, plan.config.data, units)
        )


def _check_something_embedded(cfg: DataConfig, records: dict[int, UnitRecord]) -> None:
    """Rows were selected but none was usable: that is a failure to say, not a "complete" run."""
    selected = sum(r.selected or 0 for r in records.values())
    if selected and not sum(r.embedded for r in records.values()):
        skipped: dict[str, int] = {}
        for r in records.values():
            for reason, n in r.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1]))
        raise ChatspaceError(
            f"nothing embedded: all {selected} selected rows were skipped ({reasons}); check "
            f"--text-field {cfg.text_field!r} and --extract {cfg.extract}"
        )


def _record_duplicate_ids(plan: RunPlan, layout: RunLayout, records, builder) -> None:
    """--id-field values come from the data, which may repeat them: check they are the data's, say so."""
    from chatspace.store.duplicates import check_against_source

    id_field = plan.config.data.id_field
    paths = [layout.shard_path(u) for u, r in sorted(records.items()) if r.shard]
    found = check_against_source(layout.output, paths, lambda rows: plan.source.ids_at(rows, id_field))
    if found:
        builder.duplicate_ids = found
        log.warning(
            "%d id(s) occur more than once in --id-field %r, as they do in the dataset (e.g. %s); rows are "
            "kept, ids are not unique",
            found["distinct_ids_repeated"],
            id_field,
            ", ".join(map(str, found["examples"])),
        )
