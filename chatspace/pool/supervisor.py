"""The supervisor: plan the run, hand units to workers, watch them, merge their stats into one manifest.

It never blocks without a timeout and a look at whether the workers are alive; a worker that dies is
replaced and its units redone (chatspace.pool.scheduler), within --max-worker-restarts. Every exit
path shuts the workers down and leaves a manifest that says truthfully how far the run got.
"""

from __future__ import annotations

import logging
import logging.handlers
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from chatspace import __version__
from chatspace.config import RunConfig
from chatspace.data.sampling import select_run_rows
from chatspace.data.sources import Source, open_run_source
from chatspace.errors import ChatspaceError, RunInterrupted, TerminationSignal, describe_os_error
from chatspace.logs import plural
from chatspace.pool.executors import get_executor_class
from chatspace.pool.output import prepare_output, switch_into_place
from chatspace.pool.plan import num_units, plan_units
from chatspace.pool.progress import Progress
from chatspace.pool.scheduler import TRACEBACK_LOGGER, Scheduler
from chatspace.pool.worker import WorkerSpec
from chatspace.redact import RedactingFilter
from chatspace.store.layout import RunLayout, ensure_writable_output
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


def _setup_run_logging(layout: RunLayout, run_id: str, progress: Progress):
    """Console + the run's log file under logs/; workers' records are handed to the returned sink."""
    log_path = layout.local_log_path(run_id)  # uploaded at the end when the root is an object store
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s [%(device)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    file_handler = _RunLogFile(log_path)
    file_handler.setFormatter(fmt)
    file_handler.addFilter(_default_device)
    console = progress.log_handler()
    console.setFormatter(logging.Formatter("%(asctime)s [%(device)s] %(message)s", "%H:%M:%S"))
    console.addFilter(_default_device)
    console.setLevel(logging.INFO)
    for handler in (file_handler, console):
        handler.addFilter(RedactingFilter())
    tb_logger = logging.getLogger(TRACEBACK_LOGGER)
    tb_logger.propagate = False
    tb_logger.addHandler(file_handler)
    root = logging.getLogger()
    previous = root.handlers[:]
    root.handlers = [file_handler, console]
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)

    def worker_log_sink(record: logging.LogRecord) -> None:
        for handler in (file_handler, console):
            if record.levelno >= handler.level:
                handler.handle(record)

    return log_path, worker_log_sink, (file_handler, console), previous


class _RunLogFile(logging.FileHandler):
    """The run's log file. When it cannot be written (a full disk) that is said once, in one line;
    logging's own handler prints a traceback per record instead."""

    _warned = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self._warn()

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self._warn()

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self._warn()
            self.stream = None

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            error = sys.exc_info()[1]
            cause = describe_os_error(error) if isinstance(error, OSError) else str(error)
            sys.stderr.write(f"chatspace: warning: cannot write the log {self.baseFilename}: {cause}\n")


def _default_device(record: logging.LogRecord) -> bool:
    if not hasattr(record, "device"):
        record.device = "supervisor"
    return True


def run_embedding(cfg: RunConfig) -> RunResult:
    """Embed the sampled dataset across `cfg.devices`; the Python API behind `chatspace embed-hf`."""
    t_start = time.perf_counter()
    root = ensure_writable_output(cfg.output_root)
    final = RunLayout.for_config(cfg, root)
    executor_class = get_executor_class(cfg.executor)
    if cfg.mode == "hf":
        # A misspelled model fails here, before any worker or output exists.
        _check_model(cfg, hub=executor_class.workers_share_this_machine)
    # Logging goes to the console until the run id is known; then to logs/ as well.
    t0 = time.perf_counter()
    source = open_run_source(cfg.data, final.datasets_dir)
    executor_class.check(cfg)  # e.g. a dead Ray cluster fails now, before any output is touched
    selection = select_run_rows(cfg, source.num_rows)
    total_units = num_units(len(selection.indices), cfg.rows_per_shard)
    plan_sizes = [u.size for u in plan_units(selection.indices, cfg.rows_per_shard)]
    t_plan = time.perf_counter() - t0
    run_lock = acquire_output_lock(final)  # held for the whole run
    try:
        state = prepare_output(final, cfg, source.spec.identity, plan_sizes)
    except BaseException:
        run_lock.close()
        raise
    layout, run_id, done = state.layout, state.run_id, state.done
    if state.already_complete:  # --resume of a complete run: its manifest stays byte for byte
        run_lock.close()
        log.info("run %s is already complete, nothing to do (%s)", run_id, root.url(final.manifest_path))
        return RunResult(final.manifest_path, state.previous, final)
    cfg = cfg.replace(run_id=run_id)

    progress = Progress(enabled=cfg.progress)
    log_path, worker_log_sink, handlers, previous_handlers = _setup_run_logging(layout, run_id, progress)
    builder = ManifestBuilder(layout, manifest_base(
        run_id=run_id, cfg=cfg, source=source.spec, total_rows=source.num_rows,
        selection=selection, units=total_units, layout=final, tool_version=__version__,
    ))  # fmt: skip
    if state.previous is not None:
        builder.resumes(state.previous)
    builder.timings["plan_seconds"] = round(t_plan, 3)
    records = dict(done)
    status, error = "running", None
    executor = None
    try:
        with _Signals():
            log.info(
                "run %s: %d of %d rows selected (%s, seed %d) -> %s of %s%d rows; %d already done",
                run_id,
                len(selection.indices),
                source.num_rows,
                selection.method,
                cfg.seed,
                plural(total_units, "unit"),
                "up to " if total_units > 1 else "",
                min(cfg.rows_per_shard, len(selection.indices)),
                len(done),
            )
            builder.write(records, "running")
            pending = deque(
                u for u in plan_units(selection.indices, cfg.rows_per_shard) if u.index not in done
            )
            if not total_units:
                log.warning(
                    "the sample is empty: %s of %d rows selected none; nothing to embed",
                    f"--p {cfg.p:g}" if cfg.p is not None else f"--n {cfg.n}",
                    source.num_rows,
                )
            if pending:
                level = logging.getLogger().getEffectiveLevel()
                executor = executor_class(cfg, worker_log_sink, level)  # shut down on every path
                executor.start(lambda rank, device, threads: WorkerSpec(
                    rank, device, threads, cfg, source.spec, layout, run_id
                ))  # fmt: skip
                scheduler = Scheduler(
                    executor, cfg.execution, cfg.mode, pending, records, layout, progress,
                    len(selection.indices), checkpoint=lambda: builder.write(records, "running"),
                )  # fmt: skip
                builder.report = scheduler.report
                scheduler.run()
            _record_skipped_rows(cfg, layout, source, selection, records, builder)
            _check_something_embedded(cfg, records)
            if cfg.id_field:
                _record_duplicate_ids(cfg, layout, source, records, builder)
            status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        error = {"message": "interrupted by SIGINT"}
        raise RunInterrupted(signal.SIGINT) from None
    except TerminationSignal as e:
        interrupted = RunInterrupted(e.signum)
        status, error = "interrupted", {"message": str(interrupted)}
        raise interrupted from None
    except RunInterrupted as e:
        status, error = "interrupted", {"message": str(e)}
        raise
    except ChatspaceError as e:
        status, error = "failed", {"message": str(e)}
        raise
    except BaseException as e:
        status, error = "failed", {"message": f"{type(e).__name__}: {e}"}
        raise
    finally:
        progress.close()
        if executor is not None:
            executor.shutdown()
        if status != "complete":
            _fold_in_unreported_units(layout, run_id, records)
        builder.timings["total_seconds"] = round(time.perf_counter() - t_start, 3)
        manifest_error = None
        try:
            manifest = builder.write(records, status, error)
        except ManifestWriteError as e:
            manifest_error = e
            # With another error on its way out, that one is the user's line; this one is said once.
            if status != "complete" and not isinstance(sys.exc_info()[1], ManifestWriteError):
                log.error("%s; the manifest may still say the run is running", e)
        if manifest_error is None and status == "complete" and layout.staged:
            switch_into_place(final)
            log.info("--overwrite: the new run replaced the previous one")
        logging.getLogger().handlers = previous_handlers
        run_lock.close()
        for h in handlers:
            logging.getLogger(TRACEBACK_LOGGER).removeHandler(h)
            h.close()
        _publish_log(final, log_path, run_id)
    if manifest_error is not None:
        raise manifest_error
    totals = manifest["totals"]
    log.info(
        "done: %d rows embedded, %d skipped, %s -> %s",
        totals["rows"],
        totals["skipped_rows"],
        plural(totals["shards"], "shard"),
        final.output.url(final.embeddings_dir),
    )
    return RunResult(final.manifest_path, manifest, final)


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


def _publish_log(final: RunLayout, log_path: Path, run_id: str) -> None:
    """An object-store root gets the run's log (written locally while the run went) under logs/."""
    if final.output.is_local:
        return
    try:
        final.output.upload(log_path, final.log_path(run_id))
    except Exception as e:  # noqa: BLE001 - the run's outcome stands; the log stays local
        log.warning("could not upload the run's log to %s (%s); it is in %s", final.output.url(), e, log_path)


def _check_model(cfg: RunConfig, hub: bool) -> None:
    """`hub`: also ask the Hub; only where the workers share this machine's model cache."""
    from chatspace.encoders.locate import check_model_available, resolve_model_path

    path = resolve_model_path(cfg.model)
    check_model_available(cfg.model, path, cfg.revision, hub=hub)


def _record_skipped_rows(cfg, layout, source, selection, records, builder) -> None:
    """Name each skipped row (row index, id, reason) in skipped.parquet, listed in the manifest."""
    from chatspace.pool.skipped import skipped_rows, write_skipped_rows

    units = [
        u
        for u in plan_units(selection.indices, cfg.rows_per_shard)
        if u.index in records and records[u.index].skipped
    ]
    if units:
        builder.skipped_rows_file = write_skipped_rows(layout, skipped_rows(source, cfg, units))


def _check_something_embedded(cfg: RunConfig, records: dict[int, UnitRecord]) -> None:
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


def _record_duplicate_ids(cfg, layout: RunLayout, source: Source, records, builder) -> None:
    """--id-field values come from the data, which may repeat them: check they are the data's, say so."""
    from chatspace.store.duplicates import check_against_source

    paths = [layout.shard_path(u) for u, r in sorted(records.items()) if r.shard]
    found = check_against_source(layout.output, paths, source, cfg.id_field)
    if found:
        builder.duplicate_ids = found
        log.warning(
            "%d id(s) occur more than once in --id-field %r, as they do in the dataset (e.g. %s); rows are "
            "kept, ids are not unique",
            found["distinct_ids_repeated"],
            cfg.id_field,
            ", ".join(map(str, found["examples"])),
        )
