"""The worker pool under faults: same results with 2 workers, a killed worker, SIGINT/SIGTERM, a model
that fails to load, and refusals that protect existing output. All on CPU workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import CHATSPACE, REPO, cosine_rows, run_cli, run_manifest, run_table, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, texts):
    d = tmp_path_factory.mktemp("pool")
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts[:480])]
    return write_jsonl(d / "corpus.jsonl", rows), {r["id"] for r in rows}


def _args(path, out, *extra):
    return [
        "embed-hf",
        "--dataset",
        str(path),
        "--id-field",
        "id",
        "--output-root",
        str(out),
        "--no-progress",
        *extra,
    ]


def _start(args) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [*CHATSPACE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_units(out: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(out.glob("indexes/*/*/*/units/unit-*.json"))) >= count:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the run made no progress")


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    kids = psutil.Process(proc.pid).children(recursive=True)
    return [k for k in kids if "resource_tracker" not in " ".join(k.cmdline())]


def _assert_all_gone(procs: list[psutil.Process], timeout: float = 10) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"orphaned processes: {[p.pid for p in alive]}"


def test_two_workers_match_one(corpus, tmp_path):
    path, ids = corpus
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run_cli(*_args(path, one, "--devices", "cpu", "--n", "200", "--rows-per-shard", "25"))
    p2 = run_cli(*_args(path, two, "--devices", "cpu,cpu", "--n", "200", "--rows-per-shard", "25"))
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
    assert sum(w["stats"]["rows"] for w in m["workers"]) == m["totals"]["rows"] == 200
    # Same shards whatever the number of workers.
    assert [s["rows"] for s in m["shards"]] == [s["rows"] for s in run_manifest(one)["shards"]]


def test_killed_worker_fails_fast_and_resume_finishes_exactly(corpus, tmp_path):
    path, ids = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16")
    proc = _start(args)
    _wait_for_units(out, 2, proc)
    workers = _workers(proc)
    assert len(workers) == 2
    victim = workers[1]
    victim.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode not in (0, None)
    assert time.monotonic() - t0 < 15
    assert "was killed by SIGKILL" in stderr and "Traceback" not in stderr
    _assert_all_gone(workers)
    m = run_manifest(out)
    assert m["status"] == "failed" and m["totals"]["units_done"] < m["totals"]["units_planned"]

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got = run_table(out).column("id").to_pylist()
    assert len(got) == len(set(got)) and set(got) == ids
    assert run_manifest(out)["status"] == "complete"
    assert run_cli("verify", str(out)).returncode == 0


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_clean_and_resumable(corpus, tmp_path, sig, code):
    path, ids = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu,cpu", "--rows-per-shard", "16")
    proc = _start(args)
    _wait_for_units(out, 1, proc)
    workers = _workers(proc)
    # Ctrl-C in a terminal reaches the whole process group.
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    _assert_all_gone(workers)
    assert run_manifest(out)["status"] == "interrupted"
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got = run_table(out).column("id").to_pylist()
    assert len(got) == len(set(got)) and set(got) == ids


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


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(corpus, tmp_path):
    path, _ = corpus
    out = tmp_path / "out"
    args = _args(path, out, "--devices", "cpu", "--rows-per-shard", "16")
    first = _start(args)
    try:
        _wait_for_units(out, 1, first)
        second = run_cli(*args, "--resume")
        assert second.returncode == 2 and "another chatspace run is writing" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_a_stalled_worker_stops_the_run(corpus, tmp_path):
    """A worker that stays alive but finishes nothing (here: a deadline shorter than one chunk)."""
    path, _ = corpus
    proc = _start(
        _args(
            path, tmp_path / "out", "--devices", "cpu", "--threads-per-worker", "1", "--stall-timeout", "0.3"
        )
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "made no progress" in stderr and "Traceback" not in stderr
