"""`OutputRoot.read_many`, what `--resume` reads unit records with: every file's bytes or the error
reading it met, on a local root and on an S3 server (all requested at once there); and
`load_unit_records` over it: a torn record is no record, a malformed one is named."""

from __future__ import annotations

import pytest

from chatspace.store.layout import RunLayout
from chatspace.store.manifest import load_unit_records, write_unit_record
from chatspace.store.records import ShardFile, UnitRecord
from chatspace.store.root import OutputRoot


def _record(unit: int) -> UnitRecord:
    shard = ShardFile(f"embeddings/m/d/train/shard-{unit:05d}.parquet", 4, 1000, "ab" * 32, 1.0, 1.0)
    return UnitRecord(unit, 4, 4, {}, shard, 0, "cpu", "run", "c0ffee", "5eed", "2026-01-01T00:00:00Z")


def _check(root: OutputRoot) -> None:
    layout = RunLayout.for_run(root, "m", "d", None, "train")
    for unit in range(30):
        write_unit_record(layout, _record(unit))
    root.write_atomic(layout.unit_record_path(30), b'{"unit": 30, "sel')  # torn
    root.write_atomic(layout.unit_record_path(31), b'{"unit": 31, "selected": "many"}')  # malformed
    paths = root.glob(layout.units_dir, "unit-*.json")
    missing = layout.unit_record_path(99)
    read = root.read_many([*paths, missing])
    assert list(read) == [*paths, missing]
    assert isinstance(read[missing], OSError)
    assert read[paths[0]] == root.read_bytes(paths[0])
    malformed: list[int] = []
    records = load_unit_records(layout, malformed)
    assert sorted(records) == list(range(30)) and malformed == [31]
    assert records[7] == _record(7)
    assert root.read_many([]) == {}


def test_read_many_on_a_local_root(tmp_path):
    _check(OutputRoot(tmp_path))


@pytest.mark.slow
def test_read_many_on_an_s3_server(s3_server, monkeypatch):
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.make_bucket("read-many")
    _check(OutputRoot(f"s3://{bucket}/root"))
