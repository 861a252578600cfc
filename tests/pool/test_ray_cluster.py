"""A real two-node Ray cluster on this machine (tests/helpers/ray_cluster): the session's (`ray_cluster`,
tests/conftest.py), or a test's own where it takes a node down or runs another chatspace on a node.

A run with no --ray-workers takes the whole cluster (one worker per node), writes exactly the rows the
local pool writes, and records which node and actor did the work. A test attaches only to a cluster the
tests started, and every process a cluster started is stopped with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest

import chatspace
from tests.helpers import (
    assert_same_vectors,
    cosine_rows,
    embed_args,
    run_cli,
    run_manifest,
    run_table,
    write_corpus,
    write_jsonl,
)
from tests.helpers.ray_cluster import LoopbackCluster, cluster_auth, process_tree, running_cluster

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'chatspace[ray]')")


def test_a_run_with_no_worker_count_uses_every_node_and_writes_the_local_pools_rows(
    texts, tmp_path, ray_cluster
):
    rows = [{"id": f"d{i}", "text": f"{texts[i % len(texts)]} ({i})"} for i in range(60)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    sample = ("--n", "40", "--rows-per-shard", "10")
    local = run_cli(*embed_args(data, tmp_path / "local", *sample, "--devices", "cpu"))
    assert local.returncode == 0, local.stderr
    _both_nodes_work(
        ray_cluster, data, tmp_path / "ray", *sample, "--ray-device", "cpu", "--threads-per-worker", "1"
    )
    assert_same_vectors(tmp_path / "local", tmp_path / "ray")

    m = run_manifest(tmp_path / "ray")
    workers = m["workers"]
    assert len(workers) == 2  # no --ray-workers: one 1-CPU worker per node
    assert len({w["ray_node_id"] for w in workers}) == 2, workers  # both nodes did work
    assert len({w["ray_actor_id"] for w in workers}) == 2
    for w in workers:
        assert w["hostname"] == socket.gethostname() and w["node_ip"]
        assert w["device"].startswith("ray-cpu:") and w["stats"]["rows"] > 0
    assert sum(w["stats"]["rows"] for w in workers) == 40
    assert run_cli("verify", str(tmp_path / "ray")).returncode == 0

    # The shutdown path: the run's actors are gone from the cluster; the cluster itself lives on.
    assert not ray_cluster.actors_left(), "the run left actors behind"
    assert all(node.poll() is None for node in ray_cluster.nodes)


def _both_nodes_work(cluster: LoopbackCluster, data: Path, out, *extra: str, env=None) -> None:
    """`cluster.embed`, which must succeed, with its workers held until both hold units (4 units, two
    each): both nodes do work however far apart their actors load, so a small sample is enough."""
    with cluster.held_embed(data, out, *extra, env=env) as (proc, hold):
        workers = hold.wait_for(2, proc)
        hold.release()
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert len({w["ray_node_id"] for w in workers}) == 2, workers


def _refusal(proc) -> str:
    """The one line a refused driver gets (rc 2, no traceback, nothing else on stderr)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


_NO_TOKEN = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def test_a_driver_without_the_clusters_token_gets_one_line(tmp_path, ray_cluster):
    """Token authentication (Ray's default): ray.init would retry ~45 s and raise ConnectionError."""
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "hello"}])
    args = embed_args(data, tmp_path / "out", "--executor", "ray", "--ray-address", ray_cluster.address)
    args += ["--ray-device", "cpu"]
    t0 = time.monotonic()
    line = _refusal(run_cli(*args, unset=_NO_TOKEN, timeout=120))
    assert time.monotonic() - t0 < 40, "ray.init would have retried for ~45 s"
    assert line == (
        f"chatspace: error: the Ray cluster at {ray_cluster.address} refused this driver's authentication "
        "token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (a file holding the cluster's token) or "
        "RAY_AUTH_TOKEN (the token itself)"
    )
    wrong = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    line = _refusal(run_cli(*args, env=wrong, unset=("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"), timeout=120))
    assert "refused this driver's authentication token" in line and "is not the cluster's" in line
    assert not list((tmp_path / "out").rglob("manifest.json"))  # refused before any work


def test_a_cluster_of_other_ray_and_python_versions_gets_one_line(tmp_path, ray_cluster):
    """The versions a cluster records at start (its CLUSTER_METADATA, which ray.init checks), set to
    others for the length of the test."""
    import ray

    original = _cluster_metadata(ray_cluster)
    assert orjson.loads(original)["python_version"] == ".".join(map(str, sys.version_info[:3]))
    other = {**orjson.loads(original), "ray_version": "2.9.3", "python_version": "3.10.14"}
    _cluster_metadata(ray_cluster, orjson.dumps(other))
    try:
        data = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "hello"}])
        proc = ray_cluster.embed(data, tmp_path / "out", "--ray-device", "cpu")
    finally:
        _cluster_metadata(ray_cluster, original)
    line = _refusal(proc)
    assert line.startswith(f"chatspace: error: the Ray cluster at {ray_cluster.address} runs Ray 2.9.3 ")
    assert f"(this driver has Ray {ray.__version__})" in line and "Python 3.10.14" in line
    assert "pip install 'ray==2.9.3'" in line and "use a Python 3.10.14 environment" in line


def _cluster_metadata(cluster: LoopbackCluster, replace_with: bytes | None = None) -> bytes:
    """The cluster's recorded versions (JSON), read (and replaced) through its GCS with its token."""
    code = (
        "import sys\n"
        "from ray._raylet import InnerGcsClient\n"
        f"gcs = InnerGcsClient.standalone({cluster.address!r}, None, 30_000)\n"
        f"new = {replace_with!r}\n"
        "if new is not None: gcs.internal_kv_put(b'CLUSTER_METADATA', new, True, b'cluster', 30)\n"
        "sys.stdout.buffer.write(gcs.internal_kv_get(b'CLUSTER_METADATA', b'cluster', 30))\n"
    )
    env = {**os.environ, **cluster_auth(cluster.base)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def _other_chatspace(folder: Path, version: str) -> Path:
    """A second chatspace install, as a node with another release has: a package whose version is
    `version`, first on that node's PYTHONPATH."""
    package = folder / "chatspace"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    return folder


def test_a_node_with_another_chatspace_gets_one_line_naming_it(tmp_path):
    """The head runs this chatspace, the second node another release: refused in one line that names
    that node, what it imports and the fix, before any output is written. (The driver runs from a
    folder without chatspace in it, since Ray puts the driver's working directory on every worker's
    path.)"""
    other = _other_chatspace(tmp_path / "site", "0.0.9")
    with running_cluster(node2_env={"PYTHONPATH": str(other)}) as cluster:
        data = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "hello"}])
        proc = cluster.embed(data, tmp_path / "out", "--ray-device", "cpu", cwd=tmp_path)
    line = _refusal(proc)
    assert line.startswith(
        f"chatspace: error: the Ray cluster at {cluster.address} does not run this driver's chatspace "
        f"{chatspace.__version__}: node "
    ), line
    assert line.count("Ray node ") == 1, line  # the second node only: the head runs this chatspace
    assert f"runs chatspace 0.0.9 from {other / 'chatspace'}" in line
    assert f"Install chatspace {chatspace.__version__} where that node runs `ray start`" in line
    assert not list((tmp_path / "out").rglob("manifest.json"))  # refused before any work


def test_ray_workers_caps_the_cluster(texts, tmp_path, ray_cluster):
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:40])])
    proc = ray_cluster.embed(
        data, tmp_path / "out", "--rows-per-shard", "10", "--ray-device", "cpu", "--ray-workers", "1"
    )
    assert proc.returncode == 0, proc.stderr
    (worker,) = run_manifest(tmp_path / "out")["workers"]
    assert worker["ray_node_id"] and worker["stats"]["rows"] == 40


def test_a_cluster_without_gpus_says_so(tmp_path, ray_cluster):
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "hello"}])
    proc = ray_cluster.embed(data, tmp_path / "out")  # --ray-device cuda by default
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "has no room for a worker of GPU" in last and "--ray-device cpu" in last
    assert "Traceback" not in proc.stderr


def test_a_lost_node_is_survived_with_exact_rows(texts, tmp_path):
    """The second node dies mid-run (as a preempted spot node does): its worker's units are redone on
    the node that is left, the run completes with every row once, and the manifest names the node."""
    # The workers wait at their first text until the node is down (tests/helpers/worker_hook): the node
    # certainly dies while its worker holds units, on any machine, so a small dataset (10 units) is enough.
    rows = [{"id": f"d{i}", "text": f"{texts[i % len(texts)]} ({i})"} for i in range(100)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "out"
    # A cluster of the test's own (one of its nodes goes down), its workers held.
    extra = ("--rows-per-shard", "10", "--ray-device", "cpu", "--threads-per-worker", "1")
    with running_cluster(hold=True) as cluster, cluster.held_embed(data, out, *extra) as (proc, hold):
        workers = hold.wait_for(2, proc)  # one worker per node, each holding units
        assert len({w["ray_node_id"] for w in workers}) == 2, workers
        on_node2 = {p.pid for p in process_tree(cluster.nodes[1].pid)}
        (dying,) = [w for w in workers if w["pid"] in on_node2]
        node2 = cluster.nodes[1]
        cluster.kill_node(1)
        hold.release()
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    got = run_table(out).column("id").to_pylist()
    assert sorted(got) == sorted(r["id"] for r in rows)  # every row, once
    m = run_manifest(out)
    # Ray may place the replacement on the dying node before it knows the node is dead: that actor is
    # lost too, before it started (no node recorded, no units held), and is placed again.
    holding = [e for e in m["lost_workers"] if e["units"]]
    assert len(holding) == 1, m["lost_workers"]
    (lost,) = holding
    others = [e for e in m["lost_workers"] if e is not lost]
    assert all(e["rank"] == lost["rank"] and "ray_node_id" not in e for e in others), others
    assert lost["ray_node_id"] == dying["ray_node_id"] and lost["ray_actor_id"] == dying["ray_actor_id"]
    head_node = next(w["ray_node_id"] for w in workers if w["ray_node_id"] != lost["ray_node_id"])
    assert lost["units"]
    assert m["status"] == "complete" and sorted(m["units_redone"]) == sorted(lost["units"])
    redone = {s["unit"]: s for s in m["shards"] if s["unit"] in lost["units"]}
    assert len(redone) == len(lost["units"])
    assert node2.poll() is not None and head_node
    assert run_cli("verify", str(out)).returncode == 0


def test_a_ray_run_writes_straight_to_object_storage(texts, tmp_path, ray_cluster, s3_server, monkeypatch):
    """No shared filesystem: the workers on both nodes write their shards and unit records into an
    S3-compatible store (moto's server on loopback; credentials on the nodes, as on a real cluster)."""
    from chatspace.store.frames import to_numpy

    data, rows = write_corpus(tmp_path, texts, 40)
    assert (
        run_cli(*embed_args(data, tmp_path / "local", "--rows-per-shard", "10", devices="cpu")).returncode
        == 0
    )
    url = f"s3://{s3_server.make_bucket(f'ray-{uuid.uuid4().hex[:12]}')}/out"  # its own, on a shared server
    _both_nodes_work(
        ray_cluster, data, url, "--rows-per-shard", "10", "--ray-device", "cpu", env=s3_server.env
    )
    verify = run_cli("verify", url, env=s3_server.env)
    assert verify.returncode == 0, verify.stderr
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    got = chatspace.load_embeddings(url)
    want = chatspace.load_embeddings(tmp_path / "local")
    (got_ids, got_vectors), (want_ids, want_vectors) = to_numpy(got), to_numpy(want)
    assert sorted(got_ids.tolist()) == sorted(want_ids.tolist()) == sorted(r["id"] for r in rows)
    order_got, order_want = np.argsort(got_ids), np.argsort(want_ids)
    assert cosine_rows(got_vectors[order_got], want_vectors[order_want]).min() >= 0.9999
    (manifest,) = [orjson.loads(s3_server.filesystem().cat_file(k)) for k in s3_server.filesystem().glob(
        url.removeprefix("s3://") + "/indexes/*/*/*/manifest.json"
    )]  # fmt: skip
    assert len({w["ray_node_id"] for w in manifest["workers"]}) == 2
    assert all(w["stats"]["rows"] > 0 for w in manifest["workers"])  # both nodes wrote shards
