"""A lost worker heals itself: SIGKILL one of two CPU workers mid-run and the run still ends with exit
0 and exactly the planned rows; a unit that kills every worker given it is named, not looped on."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.helpers import REPO, embed_args, run_cli, run_manifest, run_table, write_corpus, write_jsonl
from tests.helpers.faults import (
    assert_all_gone,
    run_cli_alongside,
    start_cli,
    wait_for_units,
    worker_processes,
    workers_here,
)

pytestmark = pytest.mark.slow
PROGRESS = re.compile(r"progress: ([\d,]+)/([\d,]+) rows")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, texts):
    # 10 units of 16: two workers hold 2 each from their start, so a worker killed after the first 2
    # units are recorded is killed mid-run, holding work.
    path, rows = write_corpus(tmp_path_factory.mktemp("healing"), texts, 160)
    return path, {r["id"] for r in rows}


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory, texts):
    """15 units: while one worker is still loading its model, the other cannot run out of work."""
    path, rows = write_corpus(tmp_path_factory.mktemp("healing-long"), texts, 240)
    return path, {r["id"] for r in rows}


def _args(path, out, *extra):
    return embed_args(path, out, *extra, devices="cpu,cpu")


def test_a_killed_worker_is_replaced_and_the_run_completes_exactly(corpus, tmp_path):
    path, ids = corpus
    out = tmp_path / "out"

    def kill_a_worker(run) -> list:
        wait_for_units(out, 2, run)
        workers = workers_here()
        assert len(workers) == 2
        workers[0].send_signal(signal.SIGKILL)
        return workers

    env = {"CHATSPACE_PROGRESS_EVERY": "0.01"}  # a line per report
    proc, workers = run_cli_alongside(_args(path, out), kill_a_worker, env=env, timeout=600)
    victim, stderr = workers[0], proc.stderr
    assert proc.returncode == 0, stderr
    assert "was killed by SIGKILL" in stderr and "starting a new worker on cpu:" in stderr
    assert "Traceback" not in stderr
    shown = [(int(d.replace(",", "")), int(t.replace(",", ""))) for d, t in PROGRESS.findall(stderr)]
    assert shown and all(done <= total for done, total in shown), shown  # the lost unit's rows taken back
    got = run_table(out).column("id").to_pylist()
    assert len(got) == len(ids) and set(got) == ids  # exactly the planned rows: no gap, no duplicate
    m = run_manifest(out)
    assert m["status"] == "complete" and m["totals"]["rows"] == len(ids)
    (lost,) = m["lost_workers"]
    rank = lost["rank"]
    assert lost["device"] == f"cpu:{rank}" and lost["exit_code"] == -signal.SIGKILL
    assert "SIGKILL" in lost["cause"] and lost["restarted"] is True
    assert set(lost["units"]) <= set(range(10)) and m["units_redone"] == sorted(lost["units"])
    assert {s["unit"] for s in m["shards"]} == set(range(10))
    assert m["workers"][rank]["restarts"] == 1 and m["workers"][rank]["pid"] != victim.pid
    assert run_cli("verify", str(out)).returncode == 0
    assert_all_gone(workers)


def _worker_hook_env(**variables: str) -> dict[str, str]:
    hook = str(REPO / "tests" / "helpers" / "worker_hook")
    return {"PYTHONPATH": os.pathsep.join([hook, os.environ.get("PYTHONPATH", "")]), **variables}


def test_when_a_device_cannot_take_a_new_worker_the_others_finish(long_corpus, tmp_path):
    path, ids = long_corpus
    out = tmp_path / "out"
    gone = tmp_path / "device-gone"  # once it exists, a worker dies while loading its model
    proc = start_cli(_args(path, out), env=_worker_hook_env(CHATSPACE_TEST_CRASH_ON_LOAD_IF=str(gone)))
    wait_for_units(out, 2, proc)
    deadline = time.monotonic() + 300
    while sum(p.read_text().count("] ready: ") for p in out.glob("logs/*.log")) < 2:  # both loaded
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    workers = worker_processes(proc)
    gone.touch()
    workers[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "could not be restarted, going on with 1 other worker(s)" in stderr
    got = run_table(out).column("id").to_pylist()
    assert len(got) == len(ids) and set(got) == ids
    m = run_manifest(out)
    first, second = m["lost_workers"]
    assert first["rank"] == second["rank"] and first["restarted"] is True and second["restarted"] is False
    assert second["units"] == []  # a replacement gets work only once loaded
    assert run_cli("verify", str(out)).returncode == 0
    assert_all_gone(workers)


def test_a_unit_that_kills_every_worker_is_named_with_its_rows(tmp_path, texts):
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts[:64])]
    rows[37]["text"] = "POISON-ROW " + rows[37]["text"]  # unit 2 holds rows 32-47
    data = write_jsonl(tmp_path / "poison.jsonl", rows)
    out = tmp_path / "out"
    env = _worker_hook_env(CHATSPACE_TEST_CRASH_MARKER="POISON-ROW")
    t0 = time.monotonic()
    proc = run_cli(*_args(data, out, "--max-worker-restarts", "5"), env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "unit 2 (dataset rows 32-47, 16 rows)" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    m = run_manifest(out)
    assert m["status"] == "failed"
    assert m["poison_units"] == [{"unit": 2, "dataset_rows": [32, 47], "rows": 16, "workers_lost": 2}]
    assert all(2 in lost["units"] for lost in m["lost_workers"]) and len(m["lost_workers"]) == 2
    done = {s["unit"] for s in m["shards"]}
    assert {0, 1} <= done and 2 not in done
    assert time.monotonic() - t0 < 600
