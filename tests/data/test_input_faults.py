"""Hostile input files: a damaged Parquet row group is named, a UTF-8 byte-order mark is not data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatspace.data.sources import open_source
from chatspace.errors import ChatspaceError
from tests.helpers import run_embed_dataset, run_manifest, run_table
from tests.helpers.openai_fake_server import FakeEmbeddingServer

BOM = b"\xef\xbb\xbf"


def _damaged_parquet(path: Path) -> Path:
    """300 rows in 3 row groups; the page header of row group 1 overwritten (as a bad disk would)."""
    pq.write_table(pa.table({"text": [f"row {i} " * 5 for i in range(300)]}), path, row_group_size=100)
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(0)
    offset = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_row_group_is_named_and_the_others_still_read(tmp_path):
    path = _damaged_parquet(tmp_path / "d.parquet")
    src = open_source(str(path), cache_dir=tmp_path / "cache")  # the footer is intact: planning works
    assert src.num_rows == 300
    assert src.read(np.array([0, 250]), ["text"]) == [{"text": "row 0 " * 5}, {"text": "row 250 " * 5}]
    with pytest.raises(ChatspaceError) as info:
        src.read(np.array([5, 150]), ["text"])
    message = str(info.value)
    assert str(path) in message and "row group 1 (rows 100-199 of the file)" in message
    assert "thrift" in message  # the cause stays, after the place


@pytest.fixture(scope="module")
def server():
    with FakeEmbeddingServer(dimension=8) as srv:
        yield srv


def _embed(server, dataset: Path, out: Path, *extra: str):
    args = ("--model", "m", "--dimensions", "8", *extra)
    return run_embed_dataset(server, dataset, out, *args, key="sk-test-input-0123456789")


@pytest.mark.slow
@pytest.mark.parametrize("execute", [True, False], ids=["execute", "dry-run"])
def test_a_run_over_a_damaged_row_group_stops_with_one_line_naming_it(server, tmp_path, execute):
    path = _damaged_parquet(tmp_path / "d.parquet")
    out = tmp_path / "out"
    proc = _embed(server, path, out, *(["--execute", "--rows-per-shard", "100"] if execute else []))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("chatspace: error:")
    assert f"{path}: row group 1 (rows 100-199 of the file) cannot be read" in last
    if execute:
        assert "worker 0 (api:0) failed while reading data" in last
        assert run_manifest(out)["status"] == "failed"


def _bom_csv(path: Path) -> Path:
    path.write_bytes(BOM + b"id,text\r\na1,first text\r\na2,second text\r\n")
    return path


def test_a_csv_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    src = open_source(str(_bom_csv(tmp_path / "d.csv")), cache_dir=tmp_path / "cache")
    assert set(src.columns) == {"id", "text"}
    assert src.read(np.arange(2), ["id", "text"]) == [
        {"id": "a1", "text": "first text"},
        {"id": "a2", "text": "second text"},
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_json_byte_order_mark_does_not_cost_the_first_row(tmp_path, suffix):
    rows = [{"id": "a1", "text": "first"}, {"id": "a2", "text": "second"}]
    if suffix == ".jsonl":
        body = b"\n".join(orjson.dumps(r) for r in rows) + b"\n"
    else:
        body = orjson.dumps(rows)
    path = tmp_path / f"d{suffix}"
    path.write_bytes(BOM + body)
    src = open_source(str(path), cache_dir=tmp_path / "cache")
    assert {"id", "text"} <= set(src.columns)
    assert src.read(np.arange(2), ["id", "text"]) == rows


@pytest.mark.slow
def test_embed_a_bom_csv_by_its_id_column(server, tmp_path):
    path = _bom_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    dry = _embed(server, path, out, "--id-field", "id")
    assert dry.returncode == 0, dry.stderr
    proc = _embed(server, path, out, "--id-field", "id", "--execute")
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    assert sorted(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True)) == [
        ("a1", "first text"),
        ("a2", "second text"),
    ]
