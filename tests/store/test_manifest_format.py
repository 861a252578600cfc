"""The manifest format, documented once (chatspace/resources/manifest.schema.json) and typed once
(chatspace.store.records): the pinned format 1 run matches both, the types write back exactly what they
read, and the checks can fail."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chatspace.store.format_schema import CHECK_ENV, check_before_writing, format_problems
from chatspace.store.records import RecordError, ShardEntry, UnitRecord, WorkerEntry, manifest_shards

RUN = Path(__file__).parent / "fixtures" / "run_format1" / "out"
INDEX = RUN / "indexes" / "sentence-transformers__all-MiniLM-L6-v2" / "corpus" / "train"


def _manifest() -> dict:
    return orjson.loads((INDEX / "manifest.json").read_bytes())


def _records() -> list[dict]:
    return [orjson.loads(p.read_bytes()) for p in sorted((INDEX / "units").glob("unit-*.json"))]


def test_the_pinned_format1_run_matches_the_schema():
    assert format_problems(_manifest()) == []
    for record in _records():
        assert format_problems(record, "unit_record") == []


def test_the_records_write_back_exactly_what_they_read():
    manifest = _manifest()
    for record in _records():  # same keys, same order, same values: the bytes of a rewrite are the same
        assert list(UnitRecord.from_json(record).to_json().items()) == list(record.items())
    for shard in manifest["shards"]:
        assert list(ShardEntry.from_json(shard).to_json().items()) == list(shard.items())
    for worker in manifest["workers"]:
        assert list(WorkerEntry.from_json(worker).to_json().items()) == list(worker.items())


def test_a_record_folds_into_the_manifest_shard_entry_it_was_listed_as():
    by_unit = {s.unit: s for s in manifest_shards(_manifest())}
    for record in _records():
        typed = UnitRecord.from_json(record)
        assert typed.shard_entry() == by_unit[typed.unit]
        assert typed.rows + typed.skipped_rows == typed.selected


def test_a_worker_that_finished_without_saying_it_was_ready_has_rank_device_and_stats():
    entry = WorkerEntry(3, "cuda:3").finished({"rows": 10})
    assert entry.to_json() == {"rank": 3, "device": "cuda:3", "stats": {"rows": 10}}


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r: r.update(run_id="other"), "written by run other"),
        (lambda r: r.update(config_hash="0" * 16), "written with another config"),
        (lambda r: r.update(source="elsewhere"), "another version of the dataset"),
        (lambda r: r.update(selected=15), "records 15 selected rows, the plan has 16"),
        (lambda r: r.update(rows=14), "14 rows + 1 skipped != 16 selected"),
        (lambda r: r["shard"].update(path="elsewhere.parquet"), "shard entry does not match"),
        (lambda r: r.update(unit=9), "not a unit of this plan (3 units)"),
        (lambda r: r.pop("selected"), "records None selected rows, the plan has 16"),
        (lambda r: r.pop("rows"), "a malformed record"),
    ],
)
def test_a_record_names_what_does_not_match_its_plan(change, problem):
    record = _records()[0]
    manifest = _manifest()
    expected = dict(
        plan_sizes=[16, 16, 8],
        run_id=manifest["run_id"],
        config_hash=manifest["config_hash"],
        source=record["source"],
        shard_path=record["shard"]["path"],
    )
    assert UnitRecord.from_json(record).plan_problem(**expected) is None
    change(record)
    found = UnitRecord.from_json(record).plan_problem(**expected)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    "broken",
    [
        {"selected": 1, "rows": 1},
        {"unit": "first", "selected": 1, "rows": 1},
        {"unit": 0, "selected": "many", "rows": 1, "skipped": {}},
        {"unit": 0, "selected": 1, "rows": 1, "skipped": {}, "shard": {"path": "x"}},
        {"format": "chatspace.manifest/2", "unit": 0, "selected": 1, "rows": 1, "skipped": {}},
    ],
)
def test_a_record_this_version_would_not_write_is_refused(broken):
    with pytest.raises(RecordError):
        UnitRecord.from_json(broken)


def test_the_schema_check_finds_what_is_wrong_and_refuses_to_write_it(monkeypatch):
    manifest = _manifest()
    manifest["status"] = "done"
    del manifest["shards"][0]["sha256"]
    manifest["totals"]["rows"] = -1
    problems = format_problems(manifest)
    assert len(problems) == 3
    assert any(p.startswith("status:") for p in problems)
    assert any(p.startswith("shards/0:") and "sha256" in p for p in problems)
    monkeypatch.setenv(CHECK_ENV, "1")
    with pytest.raises(Exception, match="does not describe: shards/0"):
        check_before_writing(manifest, "manifest")
    monkeypatch.delenv(CHECK_ENV)
    check_before_writing(manifest, "manifest")  # only checked where asked for
