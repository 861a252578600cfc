"""A run written by chatspace before its records were typed (manifest format 1, kept in
`fixtures/run_format1`) still reads, verifies and resumes, with its files read as they were written.

The fixture was made by `chatspace embed-hf --dataset corpus.jsonl --id-field id --output-root out
--rows-per-shard 16 --devices cpu` in the fixture folder (40 rows, 2 of them without text, 3 units). Its
dataset identity names the absolute path and modification time of the file it read; a copy here is told
where it lies now (`_relocate`), and nothing else in it is changed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from chatspace.data.identity import identity_digest
from chatspace.store.reader import load_embeddings
from chatspace.store.verify import verify
from tests.helpers import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "run_format1"
INDEX = "indexes/sentence-transformers__all-MiniLM-L6-v2/corpus/train"
RUN_ID = "20261206T083735Z-033aa4"


def _relocate(folder: Path) -> None:
    """Point the copy's recorded dataset identity at the copied corpus (its path and mtime only)."""
    corpus = folder / "corpus.jsonl"
    index = folder / "out" / INDEX
    manifest = orjson.loads((index / "manifest.json").read_bytes())
    identity = manifest["dataset"]["identity"]
    (file,) = identity["files"]
    os.utime(corpus, ns=(file["mtime_ns"], file["mtime_ns"]))
    file["path"] = str(corpus.resolve())
    (index / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    for path in (index / "units").glob("unit-*.json"):
        record = orjson.loads(path.read_bytes())
        record["source"] = identity_digest(identity)
        path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))


@pytest.fixture
def old_run(tmp_path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    _relocate(folder)
    return folder


def _embed(folder: Path, *extra: str):
    """The command the fixture was made with, run from the fixture's folder (its paths are relative)."""
    return run_cli(
        "embed-hf", "--dataset", "corpus.jsonl", "--id-field", "id", "--output-root", "out",
        "--rows-per-shard", "16", "--devices", "cpu", "--no-progress", *extra, cwd=folder, timeout=300,
    )  # fmt: skip


def test_a_format1_run_verifies_and_reads(old_run):
    manifests, problems = verify(old_run / "out")
    assert len(manifests) == 1 and problems == []
    table = load_embeddings(old_run / "out")
    assert table.num_rows == 38
    ids = table.column("id").to_pylist()
    assert "doc-5" not in ids and "doc-20" not in ids and len(set(ids)) == 38
    assert np.asarray(table.column("embedding").to_pylist()).shape == (38, 384)


def test_a_complete_format1_run_resumes_as_already_complete(old_run):
    manifest = old_run / "out" / INDEX / "manifest.json"
    before = manifest.read_bytes()
    proc = _embed(old_run, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stderr + proc.stdout
    assert manifest.read_bytes() == before


@pytest.mark.slow
def test_an_unfinished_format1_run_resumes_and_verifies(old_run):
    index = old_run / "out" / INDEX
    manifest = orjson.loads((index / "manifest.json").read_bytes())
    kept = {s["unit"]: s for s in manifest["shards"] if s["unit"] != 1}
    # As the old version left a run interrupted after units 0 and 2: unit 1's record and shard not written.
    (index / "units" / "unit-00001.json").unlink()
    (old_run / "out" / manifest["shards"][1]["path"]).unlink()
    manifest["status"] = "interrupted"
    manifest["shards"] = list(kept.values())
    (index / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    proc = _embed(old_run, "--resume")
    assert proc.returncode == 0, proc.stderr
    resumed = orjson.loads((index / "manifest.json").read_bytes())
    assert resumed["status"] == "complete" and resumed["run_id"] == RUN_ID
    assert resumed["created_at"] == manifest["created_at"]
    assert [a["status"] for a in resumed["attempts"]] == ["interrupted"]
    by_unit = {s["unit"]: s for s in resumed["shards"]}
    assert sorted(by_unit) == [0, 1, 2]
    for unit, entry in kept.items():  # the old units are kept as written, not redone
        assert by_unit[unit] == entry
    assert by_unit[1]["rows"] == 15 and by_unit[1]["run_id"] == RUN_ID
    assert resumed["totals"]["rows"] == 38 and resumed["totals"]["skipped_rows"] == 2
    assert verify(old_run / "out")[1] == []
    assert load_embeddings(old_run / "out").num_rows == 38


def test_a_format1_run_whose_manifest_is_lost_is_rebuilt_from_its_unit_records(old_run):
    index = old_run / "out" / INDEX
    old = orjson.loads((index / "manifest.json").read_bytes())
    (index / "manifest.json").write_text("{torn")
    proc = _embed(old_run, "--resume")
    assert proc.returncode == 0, proc.stderr
    rebuilt = orjson.loads((index / "manifest.json").read_bytes())
    assert rebuilt["status"] == "complete" and rebuilt["run_id"] == RUN_ID
    assert rebuilt["shards"] == old["shards"]  # every old record kept, none redone
    assert rebuilt["totals"]["rows"] == 38 and rebuilt["skipped"] == old["skipped"]
    assert verify(old_run / "out")[1] == []
