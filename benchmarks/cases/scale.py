"""`bench.py --case scale`: chatspace's bookkeeping at the scale the README promises, on this machine.

Nothing here needs a GPU or the data: the rows are numbers, the code is the real one. Each measurement
runs in a process of its own (`python benchmarks/cases/scale.py NAME`), so its `peak_rss_mb` (the
process's VmHWM: interpreter and numpy included, `baseline_rss_mb` of it before the measurement
starts) is its own; `seconds` times the measurement alone.

* select_*: build the selection a run of a billion rows makes (`select_rows`), then produce every
  unit's rows once, as the workers read them (`np.asarray(unit.rows)`), and checksum them: the whole
  cost a run pays for its sample, at --rows-per-shard 10,000.
* plan_1e5_units: what the supervisor plans before a run starts: the selection of --n 500,000,000 out
  of 1,000,000,000 rows, the unit sizes a resume checks against, and the 100,000 work units it queues
  (--rows-per-shard 5,000).
* scheduler_512_workers_1e5_units: the real Scheduler, Progress and ManifestBuilder at 64 nodes x 8 GPUs:
  100,000 units through 512 simulated workers (no model work; two lost and replaced on the way), the
  manifest written at each checkpoint; `_no_checkpoint` leaves the writes out. Goal: >= 2,000 units/s,
  i.e. 100,000 units in 50 s.
* manifest_write_1e5_shards: one periodic manifest write (`ManifestBuilder.write`) of a run with 100,000
  shards, 1,000 of them new since the write before; `bytes` is what the run's index holds after it.
* resume_scan_1e5_records / resume_scan_1e4_records_s3: `load_unit_records`, what --resume reads first,
  over a local root / an S3 server (moto's, on loopback).

`--rows N` runs the same measurements over N rows instead, and `--units N` over N work units instead of
100,000 (the scheduler, manifest write and resume scans; the S3 scan reads a tenth of them): the names keep
their billion and 1e5, the counts say what was run. Both are for a quick check, as the test suite makes.

To add a measurement, write a function that returns its counts (a dict; put `bytes` or
`units_per_second` there too; a `seconds` of its own when only one step of it is timed, as the manifest
write and the resume scan are, whose set-up writes the records) and register it with `@measurement(NAME, seconds=GOAL, peak_rss_mb=GOAL)`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROWS = 10**9
ROWS_PER_SHARD = 10_000
SEED = 42


@dataclass(frozen=True)
class Measurement:
    run: Callable[[], dict]
    seconds_goal: float | None
    peak_rss_goal_mb: float | None


MEASUREMENTS: dict[str, Measurement] = {}


def measurement(name: str, *, seconds: float | None = None, peak_rss_mb: float | None = None):
    def register(fn: Callable[[], dict]) -> Callable[[], dict]:
        MEASUREMENTS[name] = Measurement(fn, seconds, peak_rss_mb)
        return fn

    return register


def _select_and_read(*, n: int | None = None, p: float | None = None) -> dict:
    """Select out of ROWS rows, then every unit's rows once (summed, so none is skipped)."""
    import numpy as np

    from chatspace.data.sampling import select_rows
    from chatspace.data.units import plan_units

    t0 = time.perf_counter()
    selection = select_rows(ROWS, n=n, p=p, seed=SEED)
    select_seconds = time.perf_counter() - t0
    units = rows = 0
    checksum = 0
    previous_last = -1
    for unit in plan_units(selection, ROWS_PER_SHARD):
        indices = np.asarray(unit.rows, dtype=np.int64)
        if len(indices) and indices[0] <= previous_last:
            raise AssertionError(f"unit {unit.index} does not follow the one before it")
        previous_last = int(indices[-1]) if len(indices) else previous_last
        units += 1
        rows += len(indices)
        checksum = (checksum + int(indices.sum())) % (1 << 64)
    if rows != selection.count:
        raise AssertionError(f"the units hold {rows} rows, the selection {selection.count}")
    return {
        "rows": ROWS,
        "method": selection.method,
        "n": n,
        "p": p,
        "sampler": selection.sampler,
        "selected": selection.count,
        "units": units,
        "rows_per_shard": ROWS_PER_SHARD,
        "select_seconds": round(select_seconds, 3),
        "row_checksum": checksum,
    }


@measurement("select_all_1e9", seconds=60, peak_rss_mb=1024)
def select_all() -> dict:
    return _select_and_read()


@measurement("select_p_1e9", seconds=60, peak_rss_mb=1024)
def select_p() -> dict:
    return _select_and_read(p=0.01)


@measurement("select_n_1e7_of_1e9", seconds=60, peak_rss_mb=1024)
def select_n_small() -> dict:
    return _select_and_read(n=ROWS // 100)


@measurement("select_n_5e8_of_1e9", seconds=60, peak_rss_mb=1024)
def select_n_half() -> dict:
    return _select_and_read(n=ROWS // 2)


@measurement("plan_1e5_units", seconds=10)
def plan() -> dict:
    """What run_embedding plans before it starts: selection, unit sizes, the queue of work units."""
    from collections import deque

    from chatspace.data.sampling import select_rows
    from chatspace.data.units import num_units, plan_units, unit_sizes

    rows_per_shard = 5_000
    selection = select_rows(ROWS, n=ROWS // 2, p=None, seed=SEED)
    sizes = unit_sizes(selection.count, rows_per_shard)
    pending = deque(plan_units(selection, rows_per_shard))
    if len(pending) != num_units(selection.count, rows_per_shard) or sum(u.size for u in pending) != sum(
        sizes
    ):
        raise AssertionError("the plan does not cover the selection")
    return {"rows": ROWS, "n": ROWS // 2, "units": len(pending), "rows_per_shard": rows_per_shard}


SCHEDULER_WORKERS = 512  # 64 nodes x 8 GPUs
SCHEDULER_UNITS = 100_000


def _losses(units: int) -> list[tuple[int, int]]:
    """(rank, units of its own done when it is lost): at 100,000 units, rank 7 after 50 and rank 300
    after 100; in proportion (at least one) when --units asks for fewer."""
    return [(7, max(1, units // 2_000)), (300, max(1, units // 1_000))]


def _scheduler_run(workers: int, units: int, rows_per_unit: int, checkpoint: bool) -> dict:
    """The real Scheduler handing `units` units to `workers` simulated workers (no model work): every
    unit handed out, reported, recorded; the real manifest written every MANIFEST_EVERY_S seconds when
    `checkpoint`. Peak memory is read at each quarter of the units recorded."""
    import tempfile
    from collections import deque

    from chatspace.config import ExecutorConfig, RunConfig
    from chatspace.data.sampling import select_rows
    from chatspace.data.sources import SourceSpec
    from chatspace.data.units import plan_units
    from chatspace.pool.executors.simulated import SimulatedExecutor
    from chatspace.pool.progress import Progress
    from chatspace.pool.scheduler import Scheduler
    from chatspace.store.layout import RunLayout
    from chatspace.store.manifest import ManifestBuilder, manifest_base

    rows = units * rows_per_unit
    selection = select_rows(rows, n=None, p=None, seed=SEED)
    pending = deque(plan_units(selection, rows_per_unit))
    cfg = RunConfig.from_options(dataset="simulated.jsonl", rows_per_shard=rows_per_unit, progress=False)
    source = SourceSpec("simulated.jsonl", "local", "train", None, files=(), columns=("text",))
    execution = ExecutorConfig(max_worker_restarts=2, stall_timeout=600)
    with tempfile.TemporaryDirectory() as tmp:
        layout = RunLayout.for_run(tmp, cfg.encoder.model, "simulated", None, "train")
        run_id = "simulated-run"
        builder = ManifestBuilder(layout, manifest_base(
            run_id=run_id, cfg=cfg, source=source, total_rows=rows, selection=selection,
            units=len(pending), layout=layout, tool_version="bench",
        ))  # fmt: skip
        quarters: list[float] = []

        class SampledRecords(dict):
            """The run's records; this process's peak memory is read as each quarter of them is in."""

            def __setitem__(self, unit, record):
                super().__setitem__(unit, record)
                if len(self) * 4 >= units * (len(quarters) + 1):
                    quarters.append(round(_rss_mb(), 1))

        records = SampledRecords()
        # Two workers lost on the way (each after 50 units of its own): their units are redone.
        losses = _losses(units)
        executor = SimulatedExecutor(execution, workers, run_id=run_id, losses=losses)
        executor.start()
        writes = {"count": 0, "seconds": 0.0}

        def write_manifest() -> None:
            t = time.perf_counter()
            builder.write(records, "running")
            writes["count"] += 1
            writes["seconds"] += time.perf_counter() - t

        def write_manifest_if_asked() -> None:
            if checkpoint:
                write_manifest()

        progress = Progress(enabled=False)
        sched = Scheduler(
            executor, execution, cfg.mode, pending, records, layout, progress, selection.count,
            checkpoint=write_manifest_if_asked,
        )  # fmt: skip
        builder.report = sched.report
        t0 = time.perf_counter()
        sched.run()
        seconds = time.perf_counter() - t0
        write_manifest_if_asked()  # as a run does at its end
        recorded_rows = sum(r.rows for r in records.values())
        shown = progress.status().split(" rows")[0]
        if len(records) != units or recorded_rows != rows or shown != f"progress: {rows:,}/{rows:,}":
            raise AssertionError(f"{len(records)} records, {recorded_rows} rows, {shown}")
        if len(sched.report.lost) != len(losses):
            raise AssertionError(f"{len(sched.report.lost)} workers lost, {len(losses)} meant to be")
    return {
        "workers": workers,
        "units": units,
        "rows_per_unit": rows_per_unit,
        "messages": units * (executor.reports_per_unit + 1) + 2 * workers,
        "scheduler_seconds": round(seconds, 3),
        "units_per_second": round(units / seconds, 1),
        "lost_workers": len(sched.report.lost),
        "units_redone": len(sched.report.units_redone),
        "manifest_writes": writes["count"],
        "manifest_write_seconds": round(writes["seconds"], 3),
        "rss_mb_at_quarters": quarters,
    }


@measurement("scheduler_512_workers_1e5_units", seconds=50)
def scheduler_512() -> dict:
    """The scheduler at 64 nodes x 8 GPUs: 100,000 units through 512 workers, the manifest checkpointed."""
    return _scheduler_run(
        SCHEDULER_WORKERS, SCHEDULER_UNITS, max(1, ROWS // SCHEDULER_UNITS), checkpoint=True
    )


@measurement("scheduler_512_workers_1e5_units_no_checkpoint", seconds=50)
def scheduler_512_no_checkpoint() -> dict:
    """The same without the periodic manifest write: the scheduler's own cost."""
    return _scheduler_run(
        SCHEDULER_WORKERS, SCHEDULER_UNITS, max(1, ROWS // SCHEDULER_UNITS), checkpoint=False
    )


UNITS = 100_000


def _records(units: int, run_id: str = "bench-run"):
    """`units` unit records as a run's workers write them (a shard of ROWS_PER_SHARD rows each)."""
    from chatspace.stats import WorkerStats
    from chatspace.store.records import ShardFile, UnitRecord

    stats = WorkerStats(units=1, selected=ROWS_PER_SHARD, rows=ROWS_PER_SHARD, tokens=1_200_000, batches=40)
    stats.busy_seconds = {"read": 0.4, "encode": 9.1, "write": 0.3}
    as_dict = stats.to_dict()
    for unit in range(units):
        shard = ShardFile(
            f"embeddings/model/data/train/shard-{unit:05d}.parquet", ROWS_PER_SHARD, 15_400_000 + unit,
            f"{unit:064x}", 0.99 + (unit % 7) / 1000, 1.0 + (unit % 5) / 1000,
        )  # fmt: skip
        yield UnitRecord(
            unit, ROWS_PER_SHARD, ROWS_PER_SHARD, {}, shard, unit % 512, f"cuda:{unit % 8}", run_id,
            "c0ffee", "5eed", "2026-01-01T00:00:00Z", {}, as_dict,
        )  # fmt: skip


def _layout(root):
    from chatspace.store.layout import RunLayout

    return RunLayout.for_run(root, "model", "data", None, "train")


@measurement("manifest_write_1e5_shards", seconds=2)
def manifest_write() -> dict:
    """One periodic manifest write of a run with 100,000 shards, 1,000 of them finished since the last
    write (what a 512-worker run adds in 5 s); `first_write_seconds` is the write that folds in all."""
    import tempfile

    from chatspace.store.manifest import ManifestBuilder

    new = max(1, UNITS // 100)  # 1,000 at 100,000 units
    base = {
        "run_id": "bench-run",
        "plan": {"units": UNITS, "rows_per_shard": ROWS_PER_SHARD},
        "sampling": {"selected_rows": UNITS * ROWS_PER_SHARD},
        "model": {"name": "model"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        layout = _layout(tmp)
        all_records = list(_records(UNITS))
        records = {r.unit: r for r in all_records[:-new]}
        builder = ManifestBuilder(layout, base)
        t0 = time.perf_counter()
        builder.write(records, "running")
        first = time.perf_counter() - t0
        records.update((r.unit, r) for r in all_records[-new:])
        t0 = time.perf_counter()
        manifest = builder.write(records, "running")
        periodic = time.perf_counter() - t0
        written = sum(p.stat().st_size for p in Path(layout.index_dir).rglob("*") if p.is_file())
        if manifest["totals"]["shards"] != UNITS or manifest["totals"]["rows"] != UNITS * ROWS_PER_SHARD:
            raise AssertionError("the manifest does not count every shard")
    return {"seconds": round(periodic, 3), "shards": UNITS, "new_shards": new,
            "first_write_seconds": round(first, 3), "bytes": written}  # fmt: skip


def _write_records(layout, units: int) -> None:
    import orjson

    payloads = {
        str(layout.unit_record_path(r.unit)): orjson.dumps(r.to_json(), option=orjson.OPT_INDENT_2)
        for r in _records(units)
    }
    if layout.output.is_local:
        Path(layout.units_dir).mkdir(parents=True)
        for path, data in payloads.items():
            Path(path).write_bytes(data)
    else:
        layout.output.fs.pipe(payloads)  # concurrent PUTs


def _resume_scan(layout, units: int) -> dict:
    from chatspace.store.manifest import load_unit_records

    _write_records(layout, units)
    t0 = time.perf_counter()
    records = load_unit_records(layout)
    seconds = time.perf_counter() - t0
    if len(records) != units:
        raise AssertionError(f"read {len(records)} of {units} unit records")
    return {"seconds": round(seconds, 3), "records": units}


@measurement("resume_scan_1e5_records", seconds=60)
def resume_scan_local() -> dict:
    """What --resume reads first: every unit record of a run of 100,000 units (local root)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return _resume_scan(_layout(tmp), UNITS)


@measurement("resume_scan_1e4_records_s3", seconds=60)
def resume_scan_s3() -> dict:
    """The same over 10,000 records on an S3 server (moto's, on loopback: latency is the network
    stack's and moto's, not a region's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("s3_server", REPO / "tests" / "helpers" / "s3_server.py")
    s3_server = importlib.util.module_from_spec(spec)
    sys.modules["s3_server"] = s3_server  # its dataclass looks its module up
    spec.loader.exec_module(s3_server)
    running_s3_server = s3_server.running_s3_server

    with running_s3_server() as server:
        os.environ.update(server.env)
        server.make_bucket("bench")
        return _resume_scan(_layout("s3://bench/root"), UNITS // 10)


def _rss_mb() -> float:
    """This process's peak resident memory so far: VmHWM (ru_maxrss would carry over the parent's
    peak, which survives the fork and exec that start a measurement)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(name: str) -> dict:
    """Run one measurement in this process (a fresh one: the child of `main`)."""
    import numpy  # noqa: F401 - imported before the baseline, as every measurement needs it

    import chatspace.data.units  # noqa: F401

    baseline = _rss_mb()
    t0 = time.perf_counter()
    counts = MEASUREMENTS[name].run()
    total = round(time.perf_counter() - t0, 3)
    seconds = counts.pop("seconds", total)  # a measurement that times one step of what it does
    return {
        "seconds": seconds,
        **({"total_seconds": total} if seconds != total else {}),
        "peak_rss_mb": round(_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
        **counts,
    }


def main(args) -> int:
    from harness import environment, loadavg, log

    names = list(MEASUREMENTS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    results: dict = {"env": environment(cores)}
    failed = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, name, str(args.rows or ROWS), str(args.units or UNITS)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=args.case_timeout,
        )
        if proc.returncode != 0:
            log(f"{name}: failed ({proc.stderr.strip().splitlines()[-1:]})")
            results[name] = {"error": proc.stderr.strip()[-2000:]}
            failed.append(name)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        goal = MEASUREMENTS[name]
        row["goals"] = {"seconds": goal.seconds_goal, "peak_rss_mb": goal.peak_rss_goal_mb}
        row["meets_goals"] = (goal.seconds_goal is None or row["seconds"] <= goal.seconds_goal) and (
            goal.peak_rss_goal_mb is None or row["peak_rss_mb"] <= goal.peak_rss_goal_mb
        )
        results[name] = row
        log(
            f"{name:<28} {row['seconds']:8.2f} s  peak {row['peak_rss_mb']:7.1f} MB"
            f"  ({'meets' if row['meets_goals'] else 'MISSES'} its goals)"
        )
    results["env"]["load_after"] = loadavg()
    out = args.out or REPO / "benchmarks" / ".cache" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"results written to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    ROWS = int(sys.argv[2]) if len(sys.argv) > 2 else ROWS
    UNITS = SCHEDULER_UNITS = int(sys.argv[3]) if len(sys.argv) > 3 else UNITS
    print(json.dumps(measure(sys.argv[1])))
