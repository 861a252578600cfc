"""Handing units to workers and healing the pool when one is lost.

Each worker has its own small queue of units; the supervisor knows exactly which units every worker
holds (a set: a worker may work on several at once). When a worker dies, its units go back to the front
of the line and a fresh worker starts on the same device; if the device itself is gone (the new worker
cannot even start), the run goes on with the others. (On Ray a replacement has no device of its own:
one lost before it started is placed again.) Bounded by --max-worker-restarts per device (0: the
first loss stops the run). A unit that was alone in a worker that died, after already being in one that
died, is a poison unit: the run stops and names its rows instead of feeding it to worker after worker.
Workers get their stop marker only when every unit is recorded, so a late loss always has takers.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from chatspace.config import ExecutorConfig, Mode
from chatspace.data.units import WorkUnit
from chatspace.errors import ChatspaceError
from chatspace.pool.executors.base import TASKS_PER_WORKER
from chatspace.pool.messages import STOP, Failed, Finished, Message, Ready, RowsDone, Stage, Task, UnitDone
from chatspace.store.layout import RunLayout
from chatspace.store.manifest import now_iso
from chatspace.store.records import LostWorker, PoisonUnit, SchedulerReport, UnitRecord, WorkerEntry
from chatspace.store.shards import remove_stale_temporaries

log = logging.getLogger("chatspace")

LIVENESS_POLL_S = 0.2  # how often exit codes and stalls are checked (and the longest wait for a message)
LATE_MESSAGES_WAIT_S = 0.5  # after an exit, read what the workers sent until this long a silence ...
LATE_MESSAGES_MAX_S = 5.0  # ... or this long in all: other workers may keep talking
MANIFEST_EVERY_S = 5.0
# A manifest write that takes long (a full rewrite at 100k units, slow storage) is spaced out so that it
# takes at most this share of the scheduler's time: the workers are not kept waiting on their next unit.
MANIFEST_MAX_SHARE = 0.25
TRACEBACK_LOGGER = "chatspace.tracebacks"
# Failures of these stages repeat on any worker (a model that cannot load, unreadable data, a full
# disk): they stop the run. A crash while encoding (a CUDA error, a killed process) is healed; so is a
# replacement that cannot load (its device is given up). API workers' errors always stop the run.
FATAL_STAGES = frozenset({Stage.LOADING, Stage.READING, Stage.WRITING})


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the OOM killer sends this when memory runs out)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def log_traceback(msg: Failed) -> None:
    """Tracebacks go to the run's log file only; the console gets the one-line cause."""
    logging.getLogger(TRACEBACK_LOGGER).error(
        "worker %s (%s) traceback:\n%s", msg.rank, msg.device, (msg.traceback or "").rstrip()
    )


class Scheduler:
    """Runs the pool until every unit has a record; what it saw of its workers goes in `report`, which
    the manifest builder writes out (`checkpoint` asks for that every MANIFEST_EVERY_S seconds).

    `mode` is the run's encoder kind: only local-model workers ("hf") are worth replacing after an error."""

    def __init__(
        self,
        executor,
        execution: ExecutorConfig,
        mode: str,
        pending: deque[WorkUnit],
        records: dict[int, UnitRecord],
        layout: RunLayout,
        progress,
        selected_rows: int,
        checkpoint: Callable[[], Any] = lambda: None,
    ):
        self.executor = executor
        self.execution = execution
        self.mode = mode
        self.pending = pending
        self.units = {u.index: u for u in pending}
        self.records = records
        self.layout = layout
        self.checkpoint = checkpoint
        self.report = SchedulerReport()
        self.progress = progress
        self.total_units = len(self.units) + len(records)
        self.selected_rows = selected_rows
        ranks = range(len(executor.specs))
        self.held: dict[int, set[int]] = {r: set() for r in ranks}
        # Ranks that may have room for a unit: hand-out looks at these, not at all the workers.
        self.room: set[int] = set(ranks)
        self.ready: set[int] = set()
        self.finished: set[int] = set()
        self.gone: set[int] = set()  # devices given up on
        self.restarted: set[int] = set()  # ranks whose current process is a restart
        self.restarts: Counter = Counter()
        self.deaths: Counter = Counter()  # unit -> workers lost while holding it
        self.unwritten: dict[int, list[int]] = {}  # unit -> [rows, tokens] on the bar, not yet written
        self.errors: dict[int, Failed] = {}  # rank -> the error it reported before exiting
        self.placements: dict[int, dict[str, Any]] = {}  # rank -> where its current worker runs
        self.stop_sent = False
        now = time.monotonic()
        self.started = now
        self.stats = {r: {"rows": 0, "tokens": 0, "ready_at": 0.0, "last_progress": now} for r in ranks}

    def device(self, rank: int) -> str:
        return self.executor.specs[rank].device.label

    def loading_replacement(self, rank: int) -> bool:
        """`rank` runs a replacement worker that has not yet said it is ready."""
        return rank in self.restarted and rank not in self.ready

    def live(self) -> list[int]:
        return [r for r in self.held if r not in self.gone and r not in self.finished]

    def any_live(self) -> bool:
        """`bool(self.live())`, stopping at the first live worker (usually the first one looked at)."""
        return any(r not in self.gone and r not in self.finished for r in self.held)

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> None:
        self.progress.start(
            total=self.selected_rows,
            initial=sum(r.selected or 0 for r in self.records.values()),
            workers=len(self.held),
        )
        last_manifest = last_status = last_poll = time.monotonic()
        manifest_every = MANIFEST_EVERY_S
        while self.any_live():
            self.hand_out()
            msg = self.executor.receive(LIVENESS_POLL_S)
            if msg is not None:
                self.handle(msg)
            now = time.monotonic()
            # Every worker's exit code, not after every message: hundreds of workers send thousands a second.
            if msg is None or now - last_poll >= LIVENESS_POLL_S:
                last_poll = now
                self.check_liveness()
                self.release_waiting_replacements()
                self.check_stalls(now)
            if now - last_manifest >= manifest_every:
                self.checkpoint()
                last_manifest = time.monotonic()  # the wait counts from the end of the write
                spent = last_manifest - now
                manifest_every = max(MANIFEST_EVERY_S, spent * (1 - MANIFEST_MAX_SHARE) / MANIFEST_MAX_SHARE)
            if now - last_status >= self.progress.status_every:
                last_status = now
                self.log_status(now)
        self.executor.join(timeout=10)
        missing = self.total_units - len(self.records)
        if missing:
            raise ChatspaceError(f"workers finished but {missing} unit(s) have no completion record")

    def hand_out(self) -> None:
        """Top up the queue of every live worker with room; a unit that was in a lost worker goes out
        alone. A worker regains room when a unit of its is done, it is ready, or it was lost."""
        for rank in sorted(self.room) if self.pending and not self.stop_sent else ():
            if rank in self.gone or rank in self.finished or self.executor.exitcode(rank) is not None:
                self.room.discard(rank)  # (an exit is handled by check_liveness)
                continue
            if self.loading_replacement(rank):
                self.room.discard(rank)  # a replacement gets work once loaded; the others go on meanwhile
                continue
            held = self.held[rank]
            while self.pending and len(held) < TASKS_PER_WORKER and not any(self.deaths[u] for u in held):
                # A unit that was in a lost worker goes only to an empty one, and alone.
                pick = (
                    0
                    if not held
                    else next((i for i, u in enumerate(self.pending) if not self.deaths[u.index]), None)
                )
                if pick is None:
                    break
                unit = self.pending[pick]
                if not self.executor.send(rank, Task(unit.index, unit.rows)):
                    break
                if not held:
                    self.stats[rank]["last_progress"] = time.monotonic()  # idle until now
                del self.pending[pick]
                held.add(unit.index)
            if len(held) >= TASKS_PER_WORKER or any(self.deaths[u] for u in held):
                self.room.discard(rank)
        if not self.pending and not any(self.held.values()) and not self.stop_sent:
            lost = sorted(set(self.units) - set(self.records))
            if lost:  # handed to nobody and recorded by nobody: put back in line
                log.warning("unit(s) %s were not recorded; handing them out again", lost)
                self.pending.extend(self.units[u] for u in lost)
                return
            for rank in self.live():
                self.executor.send(rank, STOP)
            self.stop_sent = True

    def handle(self, msg: Message) -> None:
        rank = msg.rank
        if isinstance(msg, RowsDone | UnitDone | Ready):
            self.stats[rank]["last_progress"] = time.monotonic()
        match msg:
            case RowsDone(rows=rows, tokens=tokens, unit=unit):
                self.stats[rank]["rows"] += rows
                self.stats[rank]["tokens"] += tokens
                shown = self.unwritten.setdefault(unit, [0, 0])
                shown[0] += rows
                shown[1] += tokens
                self.progress.update(rows, tokens)
            case UnitDone(record=record):
                self.unwritten.pop(record.unit, None)
                self.records[record.unit] = record
                self.progress.skipped(record.skipped_rows)
                self.held[rank].discard(record.unit)
                self.room.add(rank)
            case Ready():
                self.on_ready(msg)
            case Finished(device=device, stats=stats):
                self.finished.add(rank)
                workers = self.report.workers
                workers[rank] = workers.get(rank, WorkerEntry(rank, device)).finished(stats)
            case Failed():
                log_traceback(msg)
                self.errors[rank] = msg
                # An API worker's errors come from the server (already retried there): a new worker won't help.
                fatal = self.mode != Mode.SENTENCE_TRANSFORMER or (
                    msg.stage in FATAL_STAGES and not self.loading_replacement(rank)
                )
                if fatal or not self.execution.max_worker_restarts:
                    raise ChatspaceError(
                        f"worker {rank} ({msg.device}) failed while {msg.stage}: {msg.message}"
                    )

    def on_ready(self, msg: Ready) -> None:
        rank = msg.rank
        self.ready.add(rank)
        self.room.add(rank)
        self.placements[rank] = msg.placement
        self.stats[rank]["ready_at"] = time.monotonic()
        self.progress.worker_ready(len(self.ready), len(self.live()))
        self.report.workers[rank] = WorkerEntry(
            rank=rank,
            device=msg.device,
            pid=msg.pid,
            placement=msg.placement,
            encoder=msg.encoder,
            load_seconds=msg.load_seconds,
            warmup_seconds=msg.warmup_seconds,
            restarts=self.restarts[rank],
        )
        self.report.encoder = msg.encoder
        if self.report.first_worker_ready_seconds is None:
            self.report.first_worker_ready_seconds = round(time.monotonic() - self.started, 3)

    # --- losses --------------------------------------------------------------------------------------

    def release_waiting_replacements(self) -> None:
        """Once every unit is recorded, a replacement that never got going has nothing left to do. Where
        the executor cannot tell a loading replacement from one a full cluster has no room for until the
        others exit (a Ray node lost), it is not waited for."""
        if not self.stop_sent or self.executor.replacements_always_start:
            return
        for rank in self.live():
            if self.loading_replacement(rank):
                log.info(
                    "worker %d (%s): no work left for its replacement; not waiting for it",
                    rank,
                    self.device(rank),
                )
                self.gone.add(rank)

    def check_liveness(self) -> None:
        exited = {r: code for r in self.live() if (code := self.executor.exitcode(r)) is not None}
        if not exited:
            return
        # They may have said why (or finished) just before exiting: read what is left first, once for
        # all of them, and for a bounded time (with hundreds of workers the others never fall silent).
        deadline = time.monotonic() + LATE_MESSAGES_MAX_S
        while (
            time.monotonic() < deadline and (late := self.executor.receive(LATE_MESSAGES_WAIT_S)) is not None
        ):
            self.handle(late)
        for rank, code in exited.items():
            if rank not in self.finished and rank not in self.gone:
                self.lose(rank, code)

    def lose(self, rank: int, code: int) -> None:
        device = self.device(rank)
        error = self.errors.pop(rank, None)
        if error:
            cause = f"failed while {error.stage}: {error.message}"
        else:
            cause = self.executor.exit_reason(rank) or describe_exit(code)
        units = sorted(self.held[rank])
        self.held[rank] = set()
        self.room.add(rank)
        self._remove_partial_shards(rank)
        limit = self.execution.max_worker_restarts
        if not limit:
            raise ChatspaceError(f"worker {rank} ({device}) {cause}; rerun with --resume to finish")
        if self.stop_sent:  # every unit is recorded: nothing was lost, nobody needs replacing
            log.warning("worker %d (%s) %s after all units were done", rank, device, cause)
            self.gone.add(rank)
            return
        lost = self.report.lost
        lost.append(
            LostWorker(
                rank=rank,
                device=device,
                placement=self.placements.pop(rank, {}),  # which node and actor was lost (Ray)
                cause=cause,
                exit_code=code,
                units=units,
                at=now_iso(),
                error=error.message if error else None,
            )
        )
        for u in units:
            self.deaths[u] += 1
        if len(units) == 1 and self.deaths[units[0]] >= 2:
            self.poison(units[0])
        self.pending.extendleft(self.units[u] for u in reversed(units))
        for u in units:  # their rows will be counted again when they are redone
            self.progress.take_back(*self.unwritten.pop(u, (0, 0)))
        # A replacement lost before it started: its device is gone, unless replacements are placed anew.
        device_gone = self.loading_replacement(rank) and self.executor.replacements_keep_their_device
        self.ready.discard(rank)
        if device_gone or self.restarts[rank] >= limit:
            self.gone.add(rank)
            lost[-1] = replace(lost[-1], restarted=False)
            why = "could not be restarted" if device_gone else f"was lost {self.restarts[rank] + 1} times"
            if not self.live():
                raise ChatspaceError(
                    f"worker {rank} ({device}) {cause}; no worker is left (the device {why}). "
                    "Rerun with --resume to finish"
                )
            log.warning(
                "worker %d (%s) %s; the device %s, going on with %d other worker(s)%s",
                rank, device, cause, why, len(self.live()), f"; unit(s) {units} requeued" if units else "",
            )  # fmt: skip
            return
        self.restarts[rank] += 1
        lost[-1] = replace(lost[-1], restarted=True)
        log.warning(
            "worker %d (%s) %s; starting a new worker on %s (restart %d of %d)%s",
            rank, device, cause, device, self.restarts[rank], limit,
            f"; unit(s) {units} requeued" if units else "",
        )  # fmt: skip
        self.executor.start_worker(rank)
        self.restarted.add(rank)
        self.stats[rank]["last_progress"] = time.monotonic()

    def _remove_partial_shards(self, rank: int) -> None:
        """A shard the lost worker was writing is a hidden temporary; it will never be finished."""
        pid = self.report.pid(rank)  # from its Ready message
        if pid:
            remove_stale_temporaries(self.layout.output, self.layout.embeddings_dir, pid)

    def poison(self, unit: int) -> None:
        rows = self.units[unit].rows
        first, last = int(rows[0]), int(rows[-1])
        causes = "; ".join(sorted({e.cause for e in self.report.lost if unit in e.units}))
        self.report.poison = [PoisonUnit(unit, first, last, len(rows), self.deaths[unit])]
        raise ChatspaceError(
            f"unit {unit} (dataset rows {first}-{last}, {len(rows)} rows) was being embedded each time a "
            f"worker was lost ({self.deaths[unit]} times: {causes}); one of its rows likely crashes the "
            "encoder. Stopping; the other units are done, see poison_units in the manifest"
        )

    def check_stalls(self, now: float) -> None:
        """A worker that is alive but stuck (a hung kernel, a dead filesystem) would hang the run."""
        timeout = self.execution.stall_timeout
        if not timeout:
            return
        for rank in self.ready - self.finished - self.gone:
            if not self.held[rank]:
                continue  # waiting for work is not a stall
            silent = now - self.stats[rank]["last_progress"]
            if silent > timeout:
                raise ChatspaceError(
                    f"worker {rank} ({self.device(rank)}) made no progress for {silent:.0f}s (--stall-timeout "
                    f"{timeout:g}); stopping. Rerun with --resume to finish"
                )

    def log_status(self, now: float) -> None:
        for rank in self.held:
            encoding_s = now - self.stats[rank]["ready_at"] if rank in self.ready else 0.0
            if rank in self.gone:
                state = "lost"
            elif rank in self.finished:
                state = "finished"
            else:
                state = "encoding" if rank in self.ready else "loading"
            log.info(
                "worker %d (%s): %s, %d rows, %.1f rows/s",
                rank,
                self.device(rank),
                state,
                self.stats[rank]["rows"],
                self.stats[rank]["rows"] / encoding_s if encoding_s > 0 else 0.0,
            )
