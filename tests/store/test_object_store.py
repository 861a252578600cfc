"""`--output-root s3://bucket/prefix` end to end, against a real S3-compatible server on loopback (moto's
server mode, over HTTP): the run, `verify`, `runs`, `load_embeddings`, the duckdb view, a run killed
mid-way and resumed, an --overwrite interrupted and finished, and the lock between two runs.

Credentials and the endpoint reach chatspace only as a user sets them: AWS_* environment variables."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import numpy as np
import orjson
import pytest

import chatspace
from chatspace.store.frames import to_numpy
from chatspace.store.reader import shard_paths
from tests.helpers import cosine_rows, embed_args, run_cli, write_corpus
from tests.helpers.faults import assert_all_gone, start_cli, worker_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(s3_server):
    return s3_server


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The server's AWS_* variables in this process too (for load_embeddings and connect)."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3.env


def _vectors(table) -> dict[str, np.ndarray]:
    ids, vectors = to_numpy(table)
    return dict(zip(ids.tolist(), vectors, strict=True))


def _wait_for_remote_units(fs, pattern: str, count: int, proc, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(fs.glob(pattern)) >= count:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    raise AssertionError("the run made no progress")


def _runs(url: str, env: dict) -> list[dict]:
    proc = run_cli("runs", url, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return [orjson.loads(line) for line in proc.stdout.splitlines()]


def test_a_run_into_s3_verifies_lists_and_reads_back_as_the_local_run(s3, s3_env, tmp_path, texts, st_model):
    bucket = s3.make_bucket("roundtrip")
    url = f"s3://{bucket}/out"
    path, rows = write_corpus(tmp_path, texts, 40)
    remote = run_cli(*embed_args(path, url, devices="cpu"), env=s3_env)
    assert remote.returncode == 0, remote.stderr
    local = tmp_path / "local"
    assert run_cli(*embed_args(path, local, devices="cpu")).returncode == 0

    # What the bucket holds: the same files a local root would (less its lock file: the lock object is
    # removed when the run ends), and nothing half-written.
    fs = s3.filesystem()
    keys = [k.removeprefix(f"{bucket}/out/") for k in fs.find(f"{bucket}/out")]
    local_files = sorted(
        p.relative_to(local).as_posix()
        for p in local.rglob("*")
        if p.is_file() and p.parts[len(local.parts)] in ("embeddings", "indexes") and p.suffix != ".lock"
    )
    assert sorted(k for k in keys if k.startswith(("embeddings/", "indexes/"))) == local_files
    assert [k for k in keys if k.startswith("logs/") and k.endswith(".log")]
    assert not [k for k in keys if ".tmp-" in k or k.endswith(".lock")]

    verify = run_cli("verify", url, env=s3_env)
    assert verify.returncode == 0 and "ok: 1 run(s) verified" in verify.stdout, verify.stderr
    (run,) = _runs(url, s3_env)
    assert run["status"] == "complete" and run["rows"] == 40 and run["manifest"].startswith(f"{url}/indexes/")

    table = chatspace.load_embeddings(url)
    ours, theirs = _vectors(table), _vectors(chatspace.load_embeddings(local))
    assert sorted(ours) == sorted(theirs) == sorted(r["id"] for r in rows)
    ids = sorted(ours)
    assert np.allclose(np.stack([ours[i] for i in ids]), np.stack([theirs[i] for i in ids]), atol=1e-6)
    by_id = {r["id"]: r["text"] for r in rows}
    ref = st_model.encode([by_id[i] for i in ids], batch_size=32, convert_to_numpy=True)
    assert cosine_rows(np.stack([ours[i] for i in ids]), ref).min() >= 0.99999
    assert all(p.startswith(f"{url}/embeddings/") for p in shard_paths(url))

    # SQL over the shards in the bucket, through the same filesystem.
    pytest.importorskip("duckdb")
    con = chatspace.connect(url)
    assert con.sql("select count(*) from embeddings").fetchall()[0][0] == 40
    nearest = con.sql(
        "select id from embeddings order by array_cosine_similarity(embedding, "
        "(select embedding from embeddings where id = 'doc-7')) desc limit 1"
    ).fetchall()[0][0]
    assert nearest == "doc-7"

    # A shard changed in the bucket after the run is caught.
    shard = sorted(fs.glob(f"{bucket}/out/embeddings/*/*/*/shard-*.parquet"))[0]
    fs.pipe_file(shard, fs.cat_file(shard)[:-8] + b"\0" * 8)
    tampered = run_cli("verify", url, env=s3_env)
    assert tampered.returncode == 1 and "sha256 mismatch" in tampered.stderr


def test_a_run_killed_mid_way_resumes_into_s3_with_exact_rows(s3, s3_env, tmp_path, texts):
    bucket = s3.make_bucket("killed")
    url = f"s3://{bucket}/out"
    path, rows = write_corpus(tmp_path, texts, 128)
    args = embed_args(path, url, devices="cpu")
    fs = s3.filesystem()
    proc = start_cli(args, env=s3_env)
    _wait_for_remote_units(fs, f"{bucket}/out/indexes/*/*/*/units/unit-*.json", 2, proc)
    workers = worker_processes(proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert_all_gone(workers)
    done_before = len(fs.glob(f"{bucket}/out/indexes/*/*/*/units/unit-*.json"))
    assert 2 <= done_before < 8  # killed mid-way: 128 rows are 8 units of 16

    # The killed run holds no lock (its process is gone), so it reads as interrupted, not running.
    (run,) = _runs(url, s3_env)
    assert run["status"] == "interrupted" and run["units_done"] >= 2
    again = run_cli(*args, env=s3_env)
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = run_cli(*args, "--resume", env=s3_env)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = _runs(url, s3_env)
    assert run["status"] == "complete" and run["rows"] == 128 and run["units_done"] == 8
    assert run_cli("verify", url, env=s3_env).returncode == 0

    table = chatspace.load_embeddings(url, columns=["id", "embedding"])
    assert table.num_rows == 128 and sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in rows)
    local = tmp_path / "local"
    assert run_cli(*embed_args(path, local, devices="cpu")).returncode == 0
    ours, theirs = _vectors(table), _vectors(chatspace.load_embeddings(local, columns=["id", "embedding"]))
    ids = sorted(theirs)
    assert np.allclose(np.stack([ours[i] for i in ids]), np.stack([theirs[i] for i in ids]), atol=1e-6)


def test_an_interrupted_overwrite_in_s3_keeps_the_old_run_until_resume_switches(s3, s3_env, tmp_path, texts):
    bucket = s3.make_bucket("overwrite")
    url = f"s3://{bucket}/out"
    path, _ = write_corpus(tmp_path, texts, 240)
    old_args = embed_args(path, url, "--n", "32", "--seed", "1", devices="cpu")
    assert run_cli(*old_args, env=s3_env).returncode == 0
    fs = s3.filesystem()
    old_shards = {k: fs.info(k)["ETag"] for k in fs.glob(f"{bucket}/out/embeddings/*/*/*/shard-*.parquet")}

    new_args = embed_args(path, url, "--n", "128", "--seed", "7", devices="cpu")  # 8 units
    proc = start_cli([*new_args, "--overwrite"], env=s3_env)
    _wait_for_remote_units(fs, f"{bucket}/out/.staging/*/index/units/unit-*.json", 2, proc)
    # A second run into the same output is refused while the first holds the lock object.
    second = run_cli(*new_args, "--overwrite", env=s3_env)
    assert second.returncode == 2 and "another chatspace run is writing" in second.stderr
    # Readers still see the old run, whole.
    assert chatspace.load_embeddings(url, columns=["id"]).num_rows == 32
    workers = worker_processes(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert_all_gone(workers)
    assert {
        k: fs.info(k)["ETag"] for k in fs.glob(f"{bucket}/out/embeddings/*/*/*/shard-*.parquet")
    } == old_shards
    assert run_cli("verify", url, env=s3_env).returncode == 0

    finished = run_cli(*new_args, "--resume", env=s3_env)
    assert finished.returncode == 0, finished.stderr
    (run,) = _runs(url, s3_env)
    assert run["status"] == "complete" and run["rows"] == 128
    assert chatspace.load_embeddings(url, columns=["id"]).num_rows == 128
    assert run_cli("verify", url, env=s3_env).returncode == 0
    assert not fs.glob(f"{bucket}/out/.staging/**")


def test_the_lock_object_refuses_a_live_owner_beats_and_takes_over_a_dead_one(s3, s3_env, monkeypatch):
    from chatspace.errors import UsageError
    from chatspace.store import root as root_module
    from chatspace.store.root import LOCK_STALE_S, OutputRoot

    monkeypatch.setattr(root_module, "LOCK_HEARTBEAT_S", 0.2)
    output = OutputRoot(f"s3://{s3.make_bucket('locks')}/out")
    path = output.join("indexes", ".m--d--train.lock")
    held = output.lock(path, "busy")
    first_beat = orjson.loads(output.read_bytes(path))["heartbeat"]
    assert output.is_locked(path)
    with pytest.raises(UsageError, match="busy"):
        output.lock(path, "busy")
    time.sleep(1.5)
    assert orjson.loads(output.read_bytes(path))["heartbeat"] > first_beat  # the holder keeps it fresh
    held.close()
    assert not output.exists(path) and not output.is_locked(path)

    # Another machine's lock: refused while its heartbeat is fresh, taken over once it has gone silent.
    output.write_json(path, {"owner": "elsewhere:1:abc", "heartbeat": time.time()})
    assert output.is_locked(path)
    with pytest.raises(UsageError, match="busy"):
        output.lock(path, "busy")
    output.write_json(path, {"owner": "elsewhere:1:abc", "heartbeat": time.time() - LOCK_STALE_S - 1})
    assert not output.is_locked(path)
    taken = output.lock(path, "busy")
    assert orjson.loads(output.read_bytes(path))["owner"] == taken.owner
    taken.close()

    # A lock of this machine whose process is gone (a SIGKILLed run) needs no wait for its heartbeat.
    dead = subprocess.Popen(["true"])
    dead.wait()
    output.write_json(path, {"owner": f"{socket.gethostname()}:{dead.pid}:abc", "heartbeat": time.time()})
    assert not output.is_locked(path)


def test_an_unreachable_store_or_missing_credentials_is_one_line_and_exit_2(tmp_path, texts):
    from tests.helpers.s3_server import _free_port

    nobody = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}", "AWS_ACCESS_KEY_ID": "k"}
    # One attempt per request (AWS_MAX_ATTEMPTS, as a user may set it): botocore's retries of a refused
    # connection end in the same error, seconds later.
    nobody |= {"AWS_SECRET_ACCESS_KEY": "s", "AWS_MAX_ATTEMPTS": "1"}
    for command in (["verify", "s3://bucket/out"], ["runs", "s3://bucket/out"]):
        proc = run_cli(*command, env=nobody)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("chatspace: error: output root s3://bucket/out cannot be read (")
    path, _ = write_corpus(tmp_path, texts, 4)
    no_keys = run_cli(
        *embed_args(path, "s3://bucket/out", devices="cpu"),
        env={
            "AWS_ENDPOINT_URL": nobody["AWS_ENDPOINT_URL"],
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance role to look for here
        },
        unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"),
    )
    assert no_keys.returncode == 2 and "Traceback" not in no_keys.stderr
    assert "output root s3://bucket/out is not writable (NoCredentialsError" in no_keys.stderr


def test_reduce_embeddings_reads_runs_and_shard_folders_in_s3(s3, s3_env, tmp_path, texts):
    pytest.importorskip("sklearn")
    import pyarrow.parquet as pq

    bucket = s3.make_bucket("maps")
    url = f"s3://{bucket}/out"
    path, rows = write_corpus(tmp_path, texts, 40)
    assert run_cli(*embed_args(path, url, devices="cpu"), env=s3_env).returncode == 0
    points = {}
    for name, source in (("root", url), ("folder", f"{url}/embeddings")):
        out = tmp_path / f"{name}.parquet"
        proc = run_cli(
            "reduce-embeddings", source, "--method", "pca", "-o", str(out), "--no-progress", env=s3_env
        )
        assert proc.returncode == 0, proc.stderr
        points[name] = pq.read_table(out).sort_by("id")
    assert points["root"].column("id").to_pylist() == sorted(r["id"] for r in rows)
    assert points["root"].equals(points["folder"])  # the same vectors, whichever way they were found
    missing = run_cli(
        "reduce-embeddings", f"s3://{bucket}/nothing", "-o", str(tmp_path / "x.parquet"), env=s3_env
    )
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr
    assert f"s3://{bucket}/nothing does not exist" in missing.stderr
