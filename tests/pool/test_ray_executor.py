"""The same workers as Ray actors, on a local Ray instance a run starts (or the session's two-node cluster),
give the same output as local workers; a cluster that cannot be used is one line, in seconds."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import numpy as np
import psutil
import pytest

from tests.helpers import CHATSPACE, REPO, cosine_rows, run_cli, run_manifest, run_table, write_jsonl
from tests.helpers.faults import assert_all_gone, worker_processes
from tests.helpers.ray_cluster import cmdline

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'chatspace[ray]')")

#: Two Ray actors on the CPU, one thread each.
TWO_CPU_ACTORS = ("--ray-workers", "2", "--ray-device", "cpu", "--threads-per-worker", "1")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stale_ray_tmpdir():
    """A Ray temp dir whose `ray_current_cluster` names a cluster that died (nothing listens there).

    Short path on purpose: Ray puts unix sockets under it."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    with open(f"{path}/ray_current_cluster", "w") as fh:
        fh.write(f"127.0.0.1:{_closed_port()}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run_watching_processes(*args: str, env: dict[str, str]):
    """`chatspace ARGS` in a process of its own (RAY_ADDRESS unset), and every process it started that
    was seen while it ran (looked at every 0.2 s), with its command line: its local Ray instance's GCS,
    raylet and actors."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    full_env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [*CHATSPACE, *args], cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: dict[int, tuple[psutil.Process, str]] = {}  # pid -> (process, its command line)

    def watch() -> None:
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for p in worker_processes(proc):
                    if p.pid not in seen:
                        seen[p.pid] = (p, " ".join(cmdline(p)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), list(seen.values())


def test_ray_workers_match_local_workers(texts, tmp_path, stale_ray_tmpdir):
    """Also: a dead cluster recorded in Ray's temp dir is never attached to; a local one is started, and
    stopped with the run, every process of it."""
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:200])])
    common = [
        "--dataset",
        str(data),
        "--id-field",
        "id",
        "--n",
        "40",
        "--rows-per-shard",
        "10",
        "--no-progress",
    ]
    local = run_cli("embed-hf", *common, "--devices", "cpu", "--output-root", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray, ray_processes = _run_watching_processes(
        "embed-hf",
        *common,
        "--executor",
        "ray",
        *TWO_CPU_ACTORS,
        "--output-root",
        str(tmp_path / "ray"),
        env={"RAY_TMPDIR": stale_ray_tmpdir},
    )
    assert ray.returncode == 0, ray.stderr
    a, b = run_table(tmp_path / "local").sort_by("id"), run_table(tmp_path / "ray").sort_by("id")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    ea = np.asarray(a.column("embedding").to_pylist())
    eb = np.asarray(b.column("embedding").to_pylist())
    assert cosine_rows(ea, eb).min() >= 0.9999
    assert run_cli("verify", str(tmp_path / "ray")).returncode == 0
    workers = run_manifest(tmp_path / "ray")["workers"]  # Ray did the work: two actors, both recorded
    assert len({w["ray_actor_id"] for w in workers}) == 2 and all(w["ray_node_id"] for w in workers)
    # The actors' log lines reach the run's log file (and the console once), tagged with their devices.
    (log_file,) = (tmp_path / "ray" / "logs").glob("*.log")
    ready = re.findall(r"\[([^\]]+)\] ready: ", log_file.read_text())
    assert sorted(ready) == sorted(w["device"] for w in workers), ready
    assert len(re.findall(r"\] ready: ", ray.stderr)) == 2, ray.stderr
    assert any("raylet" in line for _, line in ray_processes), "a local Ray instance of its own"
    assert_all_gone(
        [p for p, _ in ray_processes], timeout=60
    )  # the shutdown path leaves no Ray process or actor behind


def test_ray_worker_count_must_be_positive(tmp_path):
    args = ["embed-hf", "--dataset", "x.jsonl", "--executor", "ray", "--output-root", str(tmp_path)]
    proc = run_cli(*args, "--ray-workers", "0")
    assert proc.returncode == 2 and "--ray-workers must be at least 1" in proc.stderr


def test_an_address_that_answers_but_is_not_ray_is_one_line(tmp_path):
    """An HTTP server where the cluster should be: named as not Ray at once, not after ray.init's
    ~45 s of retries."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
        t0 = time.monotonic()
        proc = run_cli(
            "embed-hf", "--dataset", str(data), "--executor", "ray", "--ray-device", "cpu",
            "--ray-address", f"127.0.0.1:{server.server_port}", "--output-root", str(tmp_path / "out"),
            "--no-progress", unset=("RAY_ADDRESS",), timeout=120,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"chatspace: error: 127.0.0.1:{server.server_port} answers but is not a Ray cluster (no gRPC reply "
        f"on port {server.server_port}); point --ray-address / RAY_ADDRESS at the head's GCS port (the "
        "--port of `ray start --head`, 6379 by default)"
    ]
    assert elapsed < 40, "ray.init would have retried for ~45 s"


@pytest.mark.parametrize("how", ["option", "env", "auto"])
def test_a_ray_cluster_that_does_not_answer_fails_fast(tmp_path, stale_ray_tmpdir, how):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    dead = f"127.0.0.1:{_closed_port()}"
    args = ["embed-hf", "--dataset", str(data), "--executor", "ray", "--ray-workers", "1"]
    args += ["--ray-device", "cpu", "--output-root", str(tmp_path / "out"), "--no-progress"]
    env = {"RAY_TMPDIR": stale_ray_tmpdir}
    if how == "option":
        args += ["--ray-address", dead]
    elif how == "env":
        env["RAY_ADDRESS"] = dead
    else:
        args += ["--ray-address", "auto"]  # the stale cluster file names a dead address
    t0 = time.monotonic()
    proc = run_cli(*args, env=env, unset=() if how == "env" else ("RAY_ADDRESS",), timeout=120)
    assert time.monotonic() - t0 < 60, "a dead cluster must be reported within seconds, not minutes"
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("chatspace: error: the Ray cluster at 127.0.0.1:")
    assert "does not answer" in lines[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "indexes").exists() or not any(
        (tmp_path / "out" / "indexes").rglob("*.json")
    )


def test_a_killed_ray_worker_is_replaced_and_the_run_completes_exactly(texts, tmp_path, ray_cluster):
    """On the session's two-node cluster: one actor's process is killed mid-run; a new actor takes its
    place (where the killed one freed its CPU) and the run completes with every row once."""
    # The workers wait at their first text until the replacement has its unit (tests/helpers/worker_hook):
    # the kill lands while both hold units, on any machine, so a small dataset (10 units) is enough.
    rows = [{"id": f"d{i}", "text": f"{texts[i % len(texts)]} ({i})"} for i in range(100)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "out"
    extra = ("--rows-per-shard", "10", *TWO_CPU_ACTORS)
    with ray_cluster.held_embed(data, out, *extra) as (proc, hold):
        first, second = hold.wait_for(2, proc)  # both actors loaded, each holding units
        assert first["pid"] != second["pid"] and first["ray_actor_id"] != second["ray_actor_id"]
        cluster_pids = {p.pid for p in ray_cluster.processes()}
        assert first["pid"] in cluster_pids, "the worker must be a Ray actor on the cluster's nodes"
        os.kill(first["pid"], signal.SIGKILL)
        # A lost unit goes only to an empty worker: the replacement, once loaded, takes one and waits too.
        replacement_actor = hold.wait_for(3, proc)[2]["ray_actor_id"]
        hold.release()
        _, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr
    assert "starting a new worker" in stderr
    got = run_table(out).column("id").to_pylist()
    assert sorted(got) == sorted(r["id"] for r in rows)
    m = run_manifest(out)
    (lost,) = m["lost_workers"]
    assert lost["restarted"] is True and m["status"] == "complete"
    # Which actor and node were lost, as the actor itself saw them.
    assert lost["ray_actor_id"] == first["ray_actor_id"] and lost["ray_node_id"] == first["ray_node_id"]
    replacement = m["workers"][lost["rank"]]
    assert replacement["restarts"] == 1
    assert replacement["ray_actor_id"] == replacement_actor != first["ray_actor_id"]
    assert sorted(m["units_redone"]) == sorted(lost["units"]) and lost["units"]
    assert run_cli("verify", str(out)).returncode == 0
    assert not ray_cluster.actors_left(), "the shutdown path leaves no actor behind"
