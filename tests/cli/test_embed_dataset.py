"""`chatspace embed-dataset` end to end against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cosine_rows, run_cli, run_manifest, run_table, write_jsonl
from tests.helpers.faults import shard_state
from tests.helpers.openai_fake_server import FakeEmbeddingServer, fake_vector

pytestmark = pytest.mark.slow

KEY = "sk-test-secret-key-0123456789"
DIM = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, texts):
    d = tmp_path_factory.mktemp("oa")
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts[:120])]
    rows.insert(5, {"id": "bad", "text": None})
    return write_jsonl(d / "docs.jsonl", rows), {r["id"]: r["text"] for r in rows if r["text"]}


@pytest.fixture
def server():
    with FakeEmbeddingServer(dimension=DIM) as srv:
        yield srv


def _args(path, out, *extra):
    return [
        "embed-dataset",
        "--dataset",
        str(path),
        "--id-field",
        "id",
        "--model",
        "text-embedding-3-small",
        "--dimensions",
        str(DIM),
        "--output-root",
        str(out),
        "--rows-per-shard",
        "30",
        "--no-progress",
        *extra,
    ]


def _env(server):
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}


def _no_key_anywhere(out: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for p in out.rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p


def test_dry_run_sends_nothing_and_prints_an_honest_plan(dataset, server, tmp_path):
    path, good = dataset
    proc = run_cli(*_args(path, tmp_path / "out"), env=_env(server))
    assert proc.returncode == 0, proc.stderr
    assert server.requests == []
    out = proc.stdout
    assert "dry run" in out and "no request sent" in out
    assert f"{len(good)} to embed" in out and "cl100k_base" in out and "$" in out
    assert not list((tmp_path / "out").glob("embeddings/**/*.parquet"))


def test_execute_writes_verified_output_with_the_servers_vectors(dataset, server, tmp_path):
    path, good = dataset
    out = tmp_path / "out"
    proc = run_cli(*_args(path, out, "--execute", "--concurrency", "3"), env=_env(server))
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(good)
    texts = table.column("text").to_pylist()
    assert texts == [good[i] for i in ids]
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    want = np.stack([fake_vector(t, DIM) for t in texts])
    assert cosine_rows(got, want).min() >= 0.99999
    manifest = run_manifest(out)
    assert manifest["status"] == "complete" and manifest["skipped"] == {"null": 1}
    assert manifest["stats"]["requests"] >= 1
    assert run_cli("verify", str(out)).returncode == 0
    _no_key_anywhere(out, proc.stdout, proc.stderr)


def test_missing_key_is_one_line_exit_2(dataset, server, tmp_path):
    path, _ = dataset
    proc = run_cli(
        *_args(path, tmp_path / "out", "--execute"),
        env={"OPENAI_BASE_URL": server.base_url},
        unset=("OPENAI_API_KEY",),
    )
    assert proc.returncode == 2
    assert "OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert server.requests == []


def test_server_failing_mid_run_stops_cleanly_and_resume_finishes(dataset, server, tmp_path):
    path, good = dataset
    out = tmp_path / "out"
    server.fail_after = 2
    args = _args(path, out, "--execute", "--concurrency", "1", "--max-retries", "1")
    proc = run_cli(*args, env=_env(server))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed while encoding" in proc.stderr
    manifest = run_manifest(out)
    assert manifest["status"] == "failed"
    written = manifest["totals"]["rows"]
    assert 0 < written < len(good)
    listed = {Path(s["path"]).name for s in manifest["shards"]}
    kept = {name: state for name, state in shard_state(out).items() if name in listed}
    assert len(kept) == len(listed) > 0
    sent_before = len(server.requests)

    server.fail_after = None
    resumed = run_cli(*args, "--resume", env=_env(server))
    assert resumed.returncode == 0, resumed.stderr
    after = shard_state(out)
    assert {name: after[name] for name in kept} == kept  # finished shards untouched: same bytes, same mtime
    resent = [text for req in server.requests[sent_before:] for text in req.inputs]
    assert sorted(resent) == sorted(t for i, t in good.items() if i not in set(_done_ids(out, listed)))
    ids = run_table(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == set(good)
    assert run_cli("verify", str(out)).returncode == 0
    _no_key_anywhere(out, proc.stderr, resumed.stderr)


def _done_ids(out: Path, shard_names: set[str]) -> list[str]:
    import pyarrow.parquet as pq

    paths = [p for p in out.glob("embeddings/*/*/*/shard-*.parquet") if p.name in shard_names]
    return [i for p in paths for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


def test_a_dead_server_is_one_line_naming_it_after_a_couple_of_quick_tries(dataset, tmp_path):
    """Connection refused is not backed off six times (29 s): two quick retries, then one line."""
    import socket

    path, _ = dataset
    out = tmp_path / "out"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"http://proxy:PASSWORD-{KEY}@127.0.0.1:{port}/v1?api-key={KEY}"
    proc = run_cli(*_args(path, out, "--execute"), env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("chatspace: error:") and "failed while encoding" in last
    assert f"cannot reach the embeddings API at http://127.0.0.1:{port}/v1?<redacted>" in last
    assert "connection refused" in last
    log_text = next(out.glob("logs/*.log")).read_text()
    assert log_text.count("retry 1/6") >= 1 and "retry 3/6" not in log_text  # no long backoff
    assert run_manifest(out)["status"] == "failed"
    _no_key_anywhere(out, proc.stdout, proc.stderr)
    assert "PASSWORD" not in proc.stderr


def test_rows_the_encoder_skips_are_left_out_counted_and_the_rest_keep_their_metadata(
    server, tmp_path, texts
):
    import orjson

    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:40])]
    for i in (3, 17):
        rows[i]["text"] = "word " * 9000  # over the model's 8191 tokens: skipped with --on-long skip
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "out"
    proc = run_cli(*_args(path, out, "--execute", "--on-long", "skip"), env=_env(server))
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(f"d{i}" for i in range(40) if i not in (3, 17))
    assert run_manifest(out)["skipped"].get("too_long") == 2
    for rid, text, meta in zip(
        ids, table.column("text").to_pylist(), table.column("metadata").to_pylist(), strict=True
    ):
        m = orjson.loads(meta)
        n = int(rid[1:])
        assert (m["row"], m["file_row"], m["file"]) == (n, n, str(path)) and text == rows[n]["text"]
        assert m["tokens"] > 0 and m["truncated"] is False and list(m)[:2] == ["field", "extract"]
