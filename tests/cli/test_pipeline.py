"""End to end through the real CLI: embeddings equal SentenceTransformer.encode, bad rows are counted,
outputs read directly in pandas/polars/duckdb/datasets, and verify catches a flipped byte."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import orjson
import pytest

from tests.helpers import cosine_rows, run_cli, run_manifest, run_table, write_jsonl

pytestmark = pytest.mark.slow

BAD_ROWS = [
    ({"id": "bad-null", "text": None}, "null"),
    ({"id": "bad-empty", "text": ""}, "empty"),
    ({"id": "bad-space", "text": "  \n "}, "empty"),
    ({"id": "bad-number", "text": 42}, "not_text"),
    ({"id": "bad-list", "text": [1, 2]}, "not_text"),
    ({"id": "bad-dict", "text": {"a": 1}}, "not_text"),
    ({"id": "bad-missing"}, "missing_field"),
    ({"text": "a row without an id"}, "missing_id"),
]


@pytest.fixture(scope="module")
def mixed_bag(tmp_path_factory, texts):
    d = tmp_path_factory.mktemp("mixed")
    good = [{"id": f"doc-{i}", "text": t, "extra": i if i % 2 else None} for i, t in enumerate(texts[:300])]
    rows = list(good)
    for k, (row, _) in enumerate(BAD_ROWS):
        rows.insert(17 + 31 * k, row)
    path = write_jsonl(d / "mixed.jsonl", rows)
    with open(path, "ab") as fh:
        fh.write(b"{this line is not json\n")
    return path, good


def _embed(path, out, *extra: str):
    """`chatspace embed-hf` on one CPU worker, ids from the data, plain logs."""
    args = ["--dataset", str(path), "--id-field", "id", "--devices", "cpu", "--output-root", str(out)]
    return run_cli("embed-hf", *args, "--no-progress", *extra)


@pytest.fixture(scope="module")
def run_output(mixed_bag, tmp_path_factory):
    path, good = mixed_bag
    out = tmp_path_factory.mktemp("out")
    proc = _embed(path, out, "--rows-per-shard", "64")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_embeddings_equal_sentence_transformers_encode(run_output, st_model):
    out, _ = run_output
    table = run_table(out)
    texts = table.column("text").to_pylist()
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    ref = st_model.encode(texts, batch_size=32, convert_to_numpy=True)
    assert ours.shape == ref.shape == (len(texts), 384)
    assert cosine_rows(ours, ref).min() >= 0.99999


def test_mixed_bag_gives_exactly_the_good_rows(run_output, mixed_bag):
    out, proc = run_output
    _, good = mixed_bag
    table = run_table(out)
    by_id = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    meta = dict(zip(table.column("id").to_pylist(), table.column("metadata").to_pylist(), strict=True))
    assert set(by_id) == {r["id"] for r in good}  # exact rows
    cut = 0
    for r in good:  # `text` is exactly what the model embedded: the whole text, or the part before the cut
        m = orjson.loads(meta[r["id"]])
        if m["truncated"]:
            cut += 1
            assert m["text_chars"] == len(r["text"]) and r["text"].startswith(by_id[r["id"]])
            assert 0 < len(by_id[r["id"]]) < len(r["text"])
        else:
            assert by_id[r["id"]] == r["text"] and "text_chars" not in m
    assert cut > 0
    m = run_manifest(out)
    expected: dict[str, int] = {}
    for _, reason in BAD_ROWS:
        expected[reason] = expected.get(reason, 0) + 1
    expected["invalid_row"] = 1
    assert m["skipped"] == dict(sorted(expected.items()))
    assert m["status"] == "complete"
    assert m["totals"]["rows"] == len(good)
    assert m["totals"]["rows"] + m["totals"]["skipped_rows"] == m["sampling"]["selected_rows"]
    assert "skipped" in proc.stdout and str(out) in proc.stdout


def test_rows_carry_provenance(run_output):
    out, _ = run_output
    table = run_table(out)
    assert table.schema.field("embedding").type.list_size == 384
    row = table.slice(0, 1).to_pylist()[0]
    columns = "id source dataset split text metadata embedding model created_at run_id"
    assert set(row) == set(columns.split())
    meta = orjson.loads(row["metadata"])
    assert meta["field"] == "text" and meta["extract"] == "text"
    assert {"row", "file", "file_row", "tokens", "truncated"} <= set(meta)
    assert row["source"] == "local" and row["split"] == "train"
    assert row["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    m = run_manifest(out)
    assert row["run_id"] == m["run_id"]
    for key in ("git_sha", "versions", "config", "sampling", "timings", "shards", "tool"):
        assert key in m
    assert m["sampling"]["seed"] == 42
    assert all(len(s["sha256"]) == 64 and s["rows"] > 0 for s in m["shards"])
    assert (out / m["layout"]["log"]).is_file()


def test_readers_pandas_polars_duckdb_datasets(run_output):
    out, _ = run_output
    files = sorted(str(p) for p in out.glob("embeddings/*/*/*/shard-*.parquet"))
    n = run_manifest(out)["totals"]["rows"]
    import duckdb
    import pandas as pd
    import polars as pl

    df = pd.read_parquet(files)
    assert len(df) == n and len(df["embedding"].iloc[0]) == 384
    assert pl.read_parquet(files).height == n
    glob = str(out / "embeddings" / "**" / "*.parquet")
    assert duckdb.sql(f"select count(*), min(len(embedding)) from '{glob}'").fetchall()[0] == (n, 384)
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(
        "parquet", data_files=files, split="train", cache_dir=str(out / "cache" / "hf")
    )
    assert ds.num_rows == n and len(ds[0]["embedding"]) == 384


def test_verify_accepts_then_rejects_a_flipped_byte(run_output, tmp_path):
    out, _ = run_output
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ok = run_cli("verify", str(copy))
    assert ok.returncode == 0, ok.stderr
    shard = sorted(copy.glob("embeddings/*/*/*/shard-*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = run_cli("verify", str(copy))
    assert bad.returncode != 0
    assert "sha256 mismatch" in bad.stderr and shard.name in bad.stderr
    assert "Traceback" not in bad.stderr


def test_same_seed_same_rows_whatever_the_shard_size(mixed_bag, tmp_path):
    path, _ = mixed_bag
    ids = []
    for rows_per_shard in ("7", "1000"):
        out = tmp_path / rows_per_shard
        proc = _embed(path, out, "--n", "40", "--seed", "3", "--rows-per-shard", rows_per_shard)
        assert proc.returncode == 0, proc.stderr
        ids.append(sorted(run_table(out).column("id").to_pylist()))
    assert ids[0] == ids[1] and len(ids[0]) > 30


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--text-field", "body"], "--text-field 'body' is not a column"),
        (["--id-field", "uuid"], "--id-field 'uuid' is not a column"),
        (["--n", "5", "--p", "0.5"], "--n or --p, not both"),
        (["--p", "1.5"], "--p must be a probability"),
        (["--gpus", "7"], "GPU 7 is not available"),
    ],
)
def test_usage_errors_are_one_line_exit_2(mixed_bag, tmp_path, args, needle):
    path, _ = mixed_bag
    proc = run_cli("embed-hf", "--dataset", str(path), "--output-root", str(tmp_path), "--no-progress", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("embeddings/**/*.parquet"))


def test_missing_dataset_and_unwritable_root(tmp_path, mixed_bag):
    proc = run_cli("embed-hf", "--dataset", str(tmp_path / "nope.jsonl"), "--output-root", str(tmp_path))
    assert proc.returncode == 2 and "no such file: " in proc.stderr and "Traceback" not in proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path, _ = mixed_bag
    proc = run_cli("embed-hf", "--dataset", str(path), "--output-root", str(blocker / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_start_up_imports_nothing_heavy():
    code = (
        "import sys, chatspace.cli; from click.testing import CliRunner;"
        "r = CliRunner().invoke(chatspace.cli.cli, ['--help']); assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in ('torch','transformers','sentence_transformers','datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
