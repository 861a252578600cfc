"""The worker loop: take a unit, read its rows, extract, tokenize, encode, write its shard.

It knows nothing about how it was started: it talks to its supervisor through a `Channel` (get a task,
send a message), so a local spawned process and a Ray actor run the same code. Three stages overlap:
a reader thread (read, extract, tokenize), the encoder on the calling thread, and a writer thread.
Everything crossing back to the supervisor is one of the typed messages of chatspace.pool.messages.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import orjson

from chatspace.config import RunConfig, SentenceTransformerConfig
from chatspace.data.extract import extract_items, needed_columns
from chatspace.data.identity import identity_digest
from chatspace.data.sources import Source, SourceSpec
from chatspace.encoders.base import CHUNK_ROWS, Prepared
from chatspace.errors import ENVIRONMENT_ERRNOS, ChatspaceError, describe_os_error
from chatspace.hardware.devices import Device
from chatspace.hardware.telemetry import telemetry_for
from chatspace.pool.long_rows import LongRows, row_ends
from chatspace.pool.messages import Failed, Finished, Message, Ready, RowsDone, Stage, Task, UnitDone
from chatspace.pool.row_reports import RowReports
from chatspace.redact import redact
from chatspace.stats import WorkerStats
from chatspace.store.layout import RunLayout
from chatspace.store.manifest import now_iso, write_unit_record
from chatspace.store.records import ShardFile, UnitRecord
from chatspace.store.shards import ShardRows, build_table, metadata_json, write_shard

log = logging.getLogger("chatspace.worker")

_STOP = object()


class Channel(Protocol):
    def get_task(self, timeout: float) -> Task | None:
        """The next unit, None (STOP) when there is no more work. Raises queue.Empty on timeout."""

    def send(self, message: Message) -> None: ...

    def supervisor_alive(self) -> bool: ...


class QueueChannel:
    """A Channel over any pair of queues with get(timeout=) / put(): multiprocessing's, or Ray's."""

    def __init__(self, tasks, results, supervisor_alive=lambda: True):
        self._tasks = tasks
        self._results = results
        self._alive = supervisor_alive

    def get_task(self, timeout: float) -> Task | None:
        return self._tasks.get(timeout=timeout)  # both raise a queue.Empty subclass on timeout

    def send(self, message: Message) -> None:
        self._results.put(message)

    def supervisor_alive(self) -> bool:
        return self._alive()


@dataclass
class WorkerSpec:
    """What a worker needs, all picklable: the config, its device, the opened source, the layout."""

    rank: int
    device: Device
    threads: int | None
    config: RunConfig
    source: SourceSpec
    layout: RunLayout
    run_id: str


@dataclass
class _UnitInProgress:
    unit: int
    selected: int
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    # Per usable row, as arrays (filled as chunks come back): where it came from, what the model saw.
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    file_no: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    file_row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    text_chars: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1: text kept whole
    skip: dict[int, str] = field(default_factory=dict)  # position -> why the encoder skipped that row
    # Per usable row, what --extract each-turn / --long-text add to its metadata (None: nothing, any row).
    extra: list[dict[str, Any] | None] | None = None
    embeddings: list[np.ndarray] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    stats: WorkerStats = field(default_factory=WorkerStats)
    chunks_left: int = 0
    expansion: dict[str, int] = field(default_factory=dict)  # messages, chunks: the unit record's
    row_ends: np.ndarray | None = None  # per row: the last of its source row (None: all are)
    groups: list | None = None  # --long-text mean: the rows that fold into one


class WorkerLoop:
    def __init__(self, spec: WorkerSpec, channel: Channel, placement: dict[str, Any] | None = None):
        self.spec = spec
        self.placement = placement or {}  # where the executor put this worker (host, Ray node/actor)
        self.cfg = spec.config
        self.channel = channel
        self.stats = WorkerStats()
        self.encoder = None
        self._error: BaseException | None = None
        self._error_stage = Stage.ENCODING
        self._stop = threading.Event()
        self.long_rows: LongRows | None = None

    # --- entry -----------------------------------------------------------------------------------

    def run(self) -> int:
        """0 when all work is done; 1 after an error (already reported to the supervisor)."""
        t0 = time.perf_counter()
        spec = self.spec
        telemetry = None
        try:
            from chatspace.encoders import build_encoder

            self.encoder = build_encoder(self.cfg, spec.device, spec.threads)
            self.encoder.load(self.stats)
            if self.cfg.data.long_text != "truncate":
                self.long_rows = LongRows(self.cfg.data.long_text, self.cfg.data.chunk_overlap, self.encoder)
        except BaseException as e:  # noqa: BLE001 - every failure becomes a message
            self._report_error(Stage.LOADING, e)
            return 1
        self.channel.send(
            Ready(
                rank=spec.rank,
                device=spec.device.label,
                pid=os.getpid(),
                encoder=self.encoder.describe(),
                load_seconds=self.stats.load_seconds,
                warmup_seconds=self.stats.warmup_seconds,
                placement=self.placement,
            )
        )
        log.info(
            "ready: %s loaded in %.1fs, warmed up in %.1fs",
            self.cfg.encoder.model,
            self.stats.load_seconds,
            self.stats.warmup_seconds,
        )
        if spec.device.kind == "cuda":
            telemetry = telemetry_for(spec.device)
            if not telemetry.start():
                log.info(
                    "no NVML telemetry for %s (NVML unavailable or the GPU not found by UUID)",
                    spec.device.label,
                )
        try:
            ok = self._pipeline()
        finally:
            if telemetry:
                self.stats.gpu = telemetry.stop()
            self.stats.gpu.update(self.encoder.device_stats())
        self.stats.wall_seconds = time.perf_counter() - t0
        if not ok:
            return 1
        self.channel.send(Finished(rank=spec.rank, device=spec.device.label, stats=self.stats.to_dict()))
        return 0

    def _report_error(self, stage: Stage, e: BaseException) -> None:
        # A ChatspaceError is already a sentence for the user; anything else is named by its type.
        prefix = "" if isinstance(e, ChatspaceError) and str(e) else f"{type(e).__name__}: "
        message = f"{prefix}{e}".strip().splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:  # worded as the supervisor would
            message = describe_os_error(e)
        message = redact(message)
        log.error("failed while %s: %s", stage, message)
        self.channel.send(
            Failed(
                rank=self.spec.rank,
                device=self.spec.device.label,
                stage=stage,
                message=message,
                traceback=redact("".join(traceback.format_exception(e))),
            )
        )

    # --- the three overlapped stages ---------------------------------------------------------------

    def _pipeline(self) -> bool:
        encoder = self.cfg.encoder  # an OpenAI run has no prefetch option: the default depth
        prefetch = encoder.prefetch_batches if isinstance(encoder, SentenceTransformerConfig) else None
        prepared_q: queue.Queue = queue.Queue(maxsize=prefetch or 3)
        write_q: queue.Queue = queue.Queue(maxsize=2)
        reader = threading.Thread(
            target=self._guard, args=(Stage.READING, self._reader, prepared_q), daemon=True
        )
        writer = threading.Thread(
            target=self._guard, args=(Stage.WRITING, self._writer, write_q), daemon=True
        )
        reader.start()
        writer.start()
        try:
            self._encode_loop(prepared_q, write_q)
        except BaseException as e:  # noqa: BLE001
            if self._error is None:
                self._error, self._error_stage = e, Stage.ENCODING
        finally:
            if self._error is not None:
                self._stop.set()
            self._put(write_q, _STOP)
            writer.join()
        if self._error is not None:
            self._stop.set()
            self._report_error(self._error_stage, self._error)
            return False
        return True

    def _guard(self, stage: Stage, fn, q: queue.Queue) -> None:
        try:
            fn(q)
        except BaseException as e:  # noqa: BLE001
            if self._error is None:
                self._error, self._error_stage = e, stage
            self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Bounded put that gives up when the worker is stopping."""
        while True:
            try:
                q.put(item, timeout=0.5)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _get(self, q: queue.Queue, stage: str, block: bool = True) -> Any:
        """The next item; _STOP when the worker is stopping; None at once when empty and not `block`."""
        t = time.perf_counter()
        while True:
            try:
                item = q.get(timeout=0.5) if block else q.get_nowait()
                self.stats.add_idle(stage, time.perf_counter() - t)
                return item
            except queue.Empty:
                if self._stop.is_set():
                    return _STOP
                if not block:
                    return None

    def _reader(self, out: queue.Queue) -> None:
        source = Source(self.spec.source)
        columns = needed_columns(self.cfg.data.text_field, self.cfg.data.id_field)
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    task = self.channel.get_task(timeout=1.0)
                except queue.Empty:
                    if not self.channel.supervisor_alive():
                        raise RuntimeError("the supervisor went away") from None
                    continue
                finally:
                    self.stats.add_idle("read", time.perf_counter() - t)
                if task is None:
                    break
                for item in self._read_unit(source, task, columns):
                    if not self._put(out, item):
                        return
        finally:
            source.close()
            self._put(out, _STOP)

    def _read_unit(self, source: Source, task: Task, columns: list[str]):
        unit_no, indices = int(task.unit), np.asarray(task.rows, dtype=np.int64)
        unit = _UnitInProgress(unit_no, len(indices))
        with unit.stats.busy("read"):
            rows = source.read(indices, columns)
        with unit.stats.busy("extract"):
            usable = extract_items(
                indices.tolist(),
                rows,
                text_field=self.cfg.data.text_field,
                mode=self.cfg.data.extract,
                id_field=self.cfg.data.id_field,
                split=self.cfg.data.base_split,
                roles=self.cfg.data.roles,
                skipped=unit.skipped,
                counts=unit.expansion,
            )
            usable = list(usable)
            unit.ids = [rid for _, rid, _, _ in usable]
            unit.texts = [text for _, _, text, _ in usable]
            unit.rows = np.fromiter((k for k, _, _, _ in usable), dtype=np.int64, count=len(usable))
            extra = [x for _, _, _, x in usable]
            unit.extra = extra if any(extra) else None
        if self.long_rows is not None:
            with unit.stats.busy("tokenize"):
                self.long_rows.expand(unit)
        unit.file_no, unit.file_row = source.locate_many(unit.rows)
        n = len(unit.texts)
        unit.tokens = np.zeros(n, np.int64)
        unit.truncated = np.zeros(n, bool)
        unit.text_chars = np.full(n, -1, np.int64)
        unit.row_ends = row_ends(unit.rows)
        chunks = [(s, min(s + CHUNK_ROWS, len(unit.texts))) for s in range(0, len(unit.texts), CHUNK_ROWS)]
        unit.chunks_left = len(chunks)
        unit.embeddings = [None] * len(chunks)  # filled by position as chunks come back, in any order
        if not chunks:
            yield unit, None, (0, 0)
            return
        for s, e in chunks:
            prepared = self.encoder.prepare(unit.texts[s:e], unit.stats)
            yield unit, prepared, (s, e)

    def _encode_loop(self, prepared_q: queue.Queue, write_q: queue.Queue) -> None:
        """Feed prepared chunks to the encoder, which batches rows across chunks and units; a chunk
        comes back when all its rows are embedded, a unit goes to the writer when all its chunks are.

        The encoder is told when its input starves (flush partial batches now rather than wait) and
        when no more input will come, so the last partial batches of a worker run at once."""
        chunks: dict[int, tuple[_UnitInProgress, Prepared, tuple[int, int]]] = {}
        # Rows count as the encoder's batches come back, not per chunk (see row_reports).
        self._row_reports = RowReports(self._report_rows)
        self.encoder.rows_back = self._row_reports.rows_back
        next_key = 0
        finished_input = False
        while True:
            item = None
            if not finished_input:
                item = self._get(prepared_q, "encode", block=not self.encoder.has_pending())
                if item is _STOP:
                    if self._stop.is_set():  # another stage failed: stop here
                        return
                    finished_input = True
                    item = None
            if item is not None:
                unit, prepared, span = item
                if prepared is None:  # a unit with no usable rows
                    self._row_reports.unit_without_rows(unit.unit, sum(unit.skipped.values()))
                    if unit.chunks_left <= 0 and not self._put(write_q, unit):
                        return
                    continue
                chunks[next_key] = (unit, prepared, span)
                if unit.row_ends is None:  # rows back are source rows: count them per batch
                    self._row_reports.submitted(next_key, unit.unit)
                self.encoder.submit(next_key, prepared, unit.stats)
                next_key += 1
            flush = "all" if finished_input else ("full" if item is not None else "starved")
            for key, emb in self.encoder.poll(flush):
                unit, prepared, (s, e) = chunks.pop(key)
                self._chunk_done(key, unit, prepared, s, e, emb)
                if unit.chunks_left <= 0 and not self._put(write_q, unit):
                    return
            if finished_input and not self.encoder.has_pending():
                return

    def _chunk_done(
        self, key: int, unit: _UnitInProgress, prepared: Prepared, s: int, e: int, emb: np.ndarray
    ) -> None:
        for pos, reason in prepared.skipped.items():
            unit.skip[s + pos] = reason
        unit.tokens[s:e] = prepared.token_counts
        unit.truncated[s:e] = prepared.truncated
        chars = prepared.embedded_chars
        if chars is not None:
            lengths = np.fromiter(map(len, unit.texts[s:e]), dtype=np.int64, count=e - s)
            for pos in np.flatnonzero(chars < lengths).tolist():
                # `text` holds what the model saw; the source row keeps the rest.
                unit.text_chars[s + pos] = lengths[pos]
                unit.texts[s + pos] = unit.texts[s + pos][: int(chars[pos])]
        unit.embeddings[s // CHUNK_ROWS] = emb
        unit.chunks_left -= 1
        skipped_now = sum(unit.skipped.values()) if s == 0 else 0  # extraction skips count once
        rows = e - s if unit.row_ends is None else int(unit.row_ends[s:e].sum())  # source rows finished
        self._row_reports.chunk_done(key, unit.unit, rows + skipped_now, int(prepared.token_counts.sum()))

    def _report_rows(self, unit: int, rows: int, tokens: int) -> None:
        self.channel.send(RowsDone(rank=self.spec.rank, rows=rows, tokens=tokens, unit=unit))

    def _writer(self, q: queue.Queue) -> None:
        while True:
            unit = self._get(q, "write")
            if unit is _STOP:
                return
            record = self._write_unit(unit)
            self.stats.merge(unit.stats)
            self.channel.send(UnitDone(rank=self.spec.rank, record=record))

    def _write_unit(self, unit: _UnitInProgress) -> UnitRecord:
        """Write the unit's shard (when any row was kept), then its record: the completion marker."""
        spec, layout = self.spec, self.spec.layout
        with unit.stats.busy("write"):
            emb = self._folded_embeddings(unit)
            keep = self._count_kept(unit)
            kept = int(keep.sum())
            shard = None
            now = datetime.now(UTC)
            if kept:
                emb = (emb if kept == len(keep) else emb[keep]).astype(np.float32, copy=False)
                if not np.isfinite(emb).all():
                    raise FloatingPointError(f"unit {unit.unit}: the encoder produced non-finite values")
                shard = self._write_shard(unit, emb, keep, now)
                unit.stats.bytes_written += shard.bytes
            written_at = now_iso()
        record = UnitRecord(
            unit=unit.unit,
            selected=unit.selected,
            rows=kept,
            skipped=unit.skipped,
            shard=shard,
            worker=spec.rank,
            device=spec.device.label,
            run_id=spec.run_id,
            config_hash=self.cfg.output_hash(),
            source=identity_digest(spec.source.identity),
            written_at=written_at,
            expansion=unit.expansion,
            stats=unit.stats.to_dict(),
        )
        # The record is the unit's completion marker: written only after the shard is in place.
        try:
            write_unit_record(layout, record)
        except OSError:
            if shard is not None:  # a shard without its record would be read as output by a glob
                layout.output.remove(layout.shard_path(unit.unit))
            raise
        return record

    def _count_kept(self, unit: _UnitInProgress) -> np.ndarray:
        """Which rows the shard keeps (the encoder skipped the others); the unit's counts and stats
        take in its skipped rows."""
        keep = np.ones(len(unit.texts), bool)
        keep[list(unit.skip)] = False
        for reason in unit.skip.values():
            unit.skipped[reason] = unit.skipped.get(reason, 0) + 1
        unit.stats.units += 1
        unit.stats.selected += unit.selected
        unit.stats.rows += int(keep.sum())
        for reason, n in unit.skipped.items():
            unit.stats.count_skip(reason, n)
        return keep

    def _folded_embeddings(self, unit: _UnitInProgress) -> np.ndarray:
        """Every row's vector, in order; under --long-text mean a source text's chunks fold into one
        (which changes the unit's rows: call before counting what is kept)."""
        emb = np.concatenate(unit.embeddings) if unit.embeddings else np.zeros((0, self.encoder.dimension))
        return emb if self.long_rows is None else self.long_rows.fold(unit, emb)

    def _write_shard(
        self, unit: _UnitInProgress, emb: np.ndarray, keep: np.ndarray, now: datetime
    ) -> ShardFile:
        spec, data, output = self.spec, self.cfg.data, self.cfg.output
        whole = len(emb) == len(keep)
        positions = None if whole else np.flatnonzero(keep).tolist()
        files = [orjson.dumps(f.user_path).decode() for f in spec.source.files]
        rows = ShardRows(
            ids=unit.ids if whole else [unit.ids[i] for i in positions],
            texts=unit.texts if whole else [unit.texts[i] for i in positions],
            metadata_json=metadata_json(
                orjson.dumps({"field": data.text_field, "extract": data.extract}).decode()[:-1],
                files,
                unit.rows[keep],
                unit.file_no[keep],
                unit.file_row[keep],
                unit.tokens[keep],
                unit.truncated[keep],
                unit.text_chars[keep],
                None if unit.extra is None else [x for x, k in zip(unit.extra, keep, strict=True) if k],
            ),
            embeddings=emb.astype(np.float16) if output.embedding_dtype == "float16" else emb,
            source=spec.source.source,
            dataset=spec.source.dataset,
            split=data.base_split,
            model=self.encoder.model_name,
            run_id=spec.run_id,
            created_at=now,
        )
        table = build_table(rows, output.embedding_dtype)
        info = write_shard(spec.layout.output, spec.layout.shard_path(unit.unit), table, emb)
        path = spec.layout.shard_relpath(unit.unit)
        return ShardFile(path, info.rows, info.bytes, info.sha256, info.norm_min, info.norm_max)
