"""Long texts and conversations under the Ray executor: one row per message (`--extract each-turn`) and
`--long-text chunk` give the same rows as the local workers, on the session's two-node cluster. (Here,
with the other Ray tests, because a distributed test run keeps every test that uses Ray in one process,
one after another.)"""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.test_long_texts import _long_text, conversation_of, short_texts
from tests.helpers import cosine_rows, embed_args, run_cli, run_manifest, run_table, write_jsonl


@pytest.mark.slow
def test_ray_executor_writes_the_same_chunk_and_turn_rows_as_local_workers(
    tmp_path, texts, st_model, ray_cluster
):
    rows = [
        {"id": f"c{i}", "messages": conversation_of(short_texts(texts, st_model, 6, 40 * i), 6)}
        for i in range(6)
    ]
    rows[3]["messages"][2]["content"] = _long_text(texts, 900, st_model)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    shape = [
        "--text-field", "messages", "--extract", "each-turn", "--long-text", "chunk", "--chunk-overlap", "16",
        "--rows-per-shard", "2",
    ]  # fmt: skip
    local = run_cli(*embed_args(path, tmp_path / "local", *shape, "--devices", "cpu"))
    assert local.returncode == 0, local.stderr
    ray = ray_cluster.embed(
        path, tmp_path / "ray", *shape, "--ray-workers", "2", "--ray-device", "cpu", "--threads-per-worker", "1"
    )  # fmt: skip
    assert ray.returncode == 0, ray.stderr
    a, b = run_table(tmp_path / "local").sort_by("id"), run_table(tmp_path / "ray").sort_by("id")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert any("#" in i for i in b.column("id").to_pylist())
    assert a.column("text").to_pylist() == b.column("text").to_pylist()
    eb = np.asarray(b.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine_rows(eb, st_model.encode(b.column("text").to_pylist())).min() >= 0.99999
    assert (
        run_manifest(tmp_path / "ray")["totals"]["expansion"]
        == run_manifest(tmp_path / "local")["totals"]["expansion"]
    )
