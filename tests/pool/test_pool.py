"""The worker pool under faults: same results with 2 workers, a killed worker, SIGINT/SIGTERM, a model
that fails to load, and refusals that protect existing output. All on CPU workers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.helpers import cosine_rows, embed_args, run_cli, run_manifest, run_table, write_corpus
from tests.helpers.faults import (
    assert_all_gone,
    run_cli_alongside,
    shard_state,
    start_cli,
    start_until_units,
    wait_for_units,
    worker_processes,
    workers_here,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, texts):
    """160 rows: 10 units of 16, so a run stopped after its first units is still mid-run (each of two
    workers is handed 2 units at its start), while a resume or a full run stays small."""
    path, rows = write_corpus(tmp_path_factory.mktemp("pool"), texts, 160)
    return path, {r["id"] for r in rows}


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory, texts):
    """480 rows (30 units), for a run that must still be running while a second command is tried; it is
    stopped by a signal, never run to its end."""
    path, rows = write_corpus(tmp_path_factory.mktemp("pool-long"), texts, 480)
    return path, {r["id"] for r in rows}


_args = embed_args


def test_two_workers_match_one(corpus, tmp_path):
    path, ids = corpus
    one, two = tmp_path / "one", tmp_path / "two"
    # 6 units: each worker is handed 2 units when it starts, so both do work even if one starts late.
    p1 = run_cli(*_args(path, one, "--devices", "cpu", "--n", "96", "--rows-per-shard", "16"))
    p2 = run_cli(*_args(path, two, "--devices", "cpu,cpu", "--n", "96", "--rows-per-shard", "16"))
    assert p1.returncode == 0, p1.stderr
    assert p2.returncode == 0, p2.stderr
    t1, t2 = run_table(one).sort_by("id"), run_table(two).sort_by("id")
    assert t1.column("id").to_pylist() == t2.column("id").to_pylist()
    e1 = np.asarray(t1.column("embedding").to_pylist())
    e2 = np.asarray(t2.column("embedding").to_pylist())
    assert cosine_rows(e1, e2).min() >= 0.9999
    m = run_manifest(two)
    assert {s["device"] for s in m["shards"]} == {"cpu:0", "cpu:1"}
    assert [w["device"] for w in m["workers"]] == ["cpu:0", "cpu:1"]
    assert sum(w["stats"]["rows"] for w in m["workers"]) == m["totals"]["rows"] == 96
    # Same shards whatever the number of workers.
    assert [s["rows"] for s in m["shards"]] == [s["rows"] for s in run_manifest(one)["shards"]]


def test_with_no_restarts_a_killed_worker_fails_fast_and_resume_finishes_exactly(corpus, tmp_path):
    path, ids = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16", "--max-worker-restarts", "0")

    def kill_a_worker(run) -> tuple[list, float]:
        wait_for_units(out, 2, run)
        workers = workers_here()
        assert len(workers) == 2
        workers[1].send_signal(signal.SIGKILL)
        return workers, time.monotonic()

    proc, (workers, t0) = run_cli_alongside(args, kill_a_worker, timeout=120)
    stderr = proc.stderr
    assert proc.returncode not in (0, None)
    assert time.monotonic() - t0 < 15
    assert "was killed by SIGKILL" in stderr and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if "error" in line]) == 1
    assert_all_gone(workers)
    m = run_manifest(out)
    assert m["status"] == "failed" and m["totals"]["units_done"] < m["totals"]["units_planned"]
    _resume_redoes_only_what_is_missing(args, out, m, ids)


def _resume_redoes_only_what_is_missing(args, out, before: dict, ids: set[str]) -> None:
    """--resume leaves finished shards untouched (same bytes, same mtime) and embeds only the rest."""
    listed = {Path(s["path"]).name for s in before["shards"]}
    assert {s["unit"] for s in before["shards"]} == _recorded_units(out)  # every finished unit is listed
    kept = {name: state for name, state in shard_state(out).items() if name in listed}
    done_rows = sum(s["rows"] for s in before["shards"])
    assert len(kept) == len(listed) > 0
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = shard_state(out)
    assert {name: after[name] for name in kept} == kept
    m = run_manifest(out)
    assert m["status"] == "complete"
    assert sum(w["stats"]["rows"] for w in m["workers"]) == len(ids) - done_rows  # only the rest embedded
    got = run_table(out).column("id").to_pylist()
    assert len(got) == len(set(got)) and set(got) == ids
    assert run_cli("verify", str(out)).returncode == 0


def _recorded_units(out: Path) -> set[int]:
    """Units whose completion record (written after the shard) is on disk."""
    return {int(p.stem.split("-")[1]) for p in out.glob("indexes/*/*/*/units/unit-*.json")}


def test_an_interrupted_manifest_lists_units_finished_while_the_supervisor_was_busy(corpus, tmp_path):
    """The supervisor is frozen (SIGSTOP) while its worker finishes another unit, then stopped: the
    worker's message about that unit is never read, yet the manifest lists its shard."""
    path, ids = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu", "--rows-per-shard", "16")
    proc, workers = start_until_units(args, out, 1)
    proc.send_signal(signal.SIGSTOP)
    try:
        seen = len(_recorded_units(out))
        deadline = time.monotonic() + 120
        while len(_recorded_units(out)) <= seen:  # the worker goes on with the units it holds
            assert time.monotonic() < deadline, "the worker finished no unit while the supervisor slept"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
    finally:
        proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert_all_gone(workers)
    m = run_manifest(out)
    assert m["status"] == "interrupted"
    _resume_redoes_only_what_is_missing(args, out, m, ids)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_clean_and_resumable(corpus, tmp_path, sig, code):
    path, ids = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16")
    proc, workers = start_until_units(args, out, 1)
    # Ctrl-C in a terminal reaches the whole process group.
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    assert_all_gone(workers)
    m = run_manifest(out)
    assert m["status"] == "interrupted"
    _resume_redoes_only_what_is_missing(args, out, m, ids)


def test_model_that_fails_to_load_is_one_clear_error(corpus, tmp_path):
    path, _ = corpus
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    t0 = time.monotonic()
    proc = run_cli(
        *_args(path, tmp_path / "out", "--devices", "cpu,cpu", "--model", str(broken)), timeout=120
    )
    assert proc.returncode == 1
    assert time.monotonic() - t0 < 90
    assert "failed while loading the model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_existing_output_is_protected(corpus, tmp_path):
    path, _ = corpus
    out = tmp_path / "out"
    base = _args(path, out, "--devices", "cpu", "--n", "30", "--rows-per-shard", "10")
    assert run_cli(*base).returncode == 0
    before = {p: p.read_bytes() for p in out.glob("embeddings/**/*.parquet")}
    again = run_cli(*base)
    assert again.returncode == 2 and "already complete" in again.stderr
    other = run_cli(*base, "--seed", "7")
    assert other.returncode == 2 and "different config" in other.stderr and "seed" in other.stderr
    assert {p: p.read_bytes() for p in out.glob("embeddings/**/*.parquet")} == before
    replaced = run_cli(*base, "--seed", "7", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert run_manifest(out)["config"]["seed"] == 7
    assert run_cli("verify", str(out)).returncode == 0


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(long_corpus, tmp_path):
    path, _ = long_corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu", "--rows-per-shard", "16")
    first = start_cli(args)
    try:
        wait_for_units(out, 1, first)
        second = run_cli(*args, "--resume")
        assert second.returncode == 2 and "another chatspace run is writing" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_a_frozen_worker_stops_the_run_naming_its_device(corpus, tmp_path):
    """A worker that stays alive but finishes nothing: frozen with SIGSTOP, as a hung kernel would."""
    path, _ = corpus
    out = tmp_path / "out"
    # 4 s: many times a batch's time on a loaded machine (the live worker reports each batch it finishes),
    # and all the run waits for once the other worker is done.
    args = _args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16", "--stall-timeout", "4")

    def freeze_a_worker(run) -> tuple[list, object]:
        wait_for_units(out, 1, run)
        workers = workers_here()
        workers[1].send_signal(signal.SIGSTOP)
        return workers, workers[1]

    try:
        proc, (workers, frozen) = run_cli_alongside(args, freeze_a_worker)
    finally:
        for worker in workers_here():  # a frozen worker still there if the run went wrong
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.send_signal(signal.SIGCONT)
    stderr = proc.stderr
    assert proc.returncode == 1, stderr
    m = run_manifest(out)
    rank = next(w["rank"] for w in m["workers"] if w.get("pid") == frozen.pid)
    assert f"worker {rank} (cpu:{rank}) made no progress" in stderr and "--stall-timeout 4" in stderr
    assert "Traceback" not in stderr
    assert_all_gone(workers)
    assert m["status"] == "failed" and "made no progress" in m["error"]["message"]


def test_a_supervisor_killed_outright_leaves_no_worker_behind(corpus, tmp_path):
    path, _ = corpus
    out = tmp_path / "out"
    proc = start_cli(_args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16"))
    wait_for_units(out, 1, proc)
    workers = worker_processes(proc)
    assert len(workers) == 2
    proc.kill()
    proc.communicate(timeout=30)
    assert_all_gone(workers)
