"""`chatspace verify`: one test per check it makes, each on a copy of a real run tampered in one way.

Where a tampering would also break the checksum, the manifest's checksum and size are updated to match,
so the test shows that the check in question (and not the checksum) catches it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatspace.store.verify import verify
from tests.helpers import run_cli, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, texts):
    d = tmp_path_factory.mktemp("verify")
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts[:40])]
    rows.append({"id": "doc-3", "text": texts[100]})  # the dataset itself repeats one id
    path = write_jsonl(d / "docs.jsonl", rows)
    out = d / "out"
    proc = run_cli(
        "embed-hf",
        *("--dataset", str(path), "--id-field", "id", "--devices", "cpu", "--rows-per-shard", "21"),
        *("--output-root", str(out), "--no-progress"),
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run(finished_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    return copy


def _manifest_path(out: Path) -> Path:
    return next(out.glob("indexes/*/*/*/manifest.json"))


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob("embeddings/*/*/*/shard-*.parquet"))


def _edit_manifest(out: Path, change) -> None:
    path = _manifest_path(out)
    m = orjson.loads(path.read_bytes())
    change(m)
    path.write_bytes(orjson.dumps(m))


def _rewrite(out: Path, shard: Path, table: pa.Table) -> None:
    """Write `table` over `shard` and record its new checksum and size, as if written by the run."""
    pq.write_table(table, shard)
    rel = shard.relative_to(out).as_posix()

    def change(m):
        for s in m["shards"]:
            if s["path"] == rel:
                s["sha256"], s["bytes"] = hashlib.sha256(shard.read_bytes()).hexdigest(), shard.stat().st_size

    _edit_manifest(out, change)


def _problems(out: Path) -> list[str]:
    manifests, problems = verify(out)
    assert len(manifests) == 1
    return problems


def _with_embeddings(table: pa.Table, values: np.ndarray) -> pa.Table:
    dim = values.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), dim)
    return table.set_column(table.schema.get_field_index("embedding"), "embedding", column)


def test_an_untouched_run_verifies_through_the_cli(run):
    assert _problems(run) == []
    proc = run_cli("verify", str(run))
    assert proc.returncode == 0 and "ok: 1 run(s) verified" in proc.stdout
    proc = run_cli("verify", env={"CHATSPACE_ROOT": str(run)})  # the root defaults as for `runs`
    assert proc.returncode == 0 and "ok: 1 run(s) verified" in proc.stdout


def test_missing_shard(run):
    shard = _shards(run)[0]
    shard.unlink()
    assert any(p.endswith(f"{shard.name}: missing") for p in _problems(run))
    proc = run_cli("verify", str(run))
    assert proc.returncode == 1 and "missing" in proc.stderr and "Traceback" not in proc.stderr


def test_unlisted_shard(run):
    shard = _shards(run)[0]
    shutil.copy(shard, shard.with_name("shard-00077.parquet"))
    assert any("shard-00077.parquet: shard not listed in the manifest" in p for p in _problems(run))


def test_size(run):
    shard = _shards(run)[0]
    with open(shard, "ab") as fh:
        fh.write(b"\0" * 10)
    assert any(f"{shard.name}: size" in p and "!= recorded" in p for p in _problems(run))


def test_checksum(run):
    shard = _shards(run)[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert any(f"{shard.name}: sha256 mismatch" in p for p in _problems(run))


def test_row_count(run):
    shard = _shards(run)[0]
    _rewrite(run, shard, pq.read_table(shard).slice(0, 5))
    assert any(f"{shard.name}: 5 rows, manifest says" in p for p in _problems(run))


def test_schema(run):
    shard = _shards(run)[0]
    table = pq.read_table(shard)
    _rewrite(run, shard, table.drop_columns(["text"]))
    problems = _problems(run)
    assert any(f"{shard.name}: schema differs" in p for p in problems), problems


def test_dimension(run):
    shard = _shards(run)[0]
    table = pq.read_table(shard)
    values = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)[:, :383]
    _rewrite(run, shard, _with_embeddings(table, values))
    assert any(f"{shard.name}: embedding dimension 383, expected 384" in p for p in _problems(run))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(run, bad):
    shard = _shards(run)[1]
    table = pq.read_table(shard)
    values = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    values[2, 7] = bad
    _rewrite(run, shard, _with_embeddings(table, values))
    assert any(f"{shard.name}: embeddings hold NaN or infinite values" in p for p in _problems(run))


def test_duplicate_ids_the_dataset_has_are_accepted_others_are_not(run):
    m = orjson.loads(_manifest_path(run).read_bytes())
    assert m["duplicate_ids"]["distinct_ids_repeated"] == 1 and m["duplicate_ids"]["examples"] == ["doc-3"]
    assert _problems(run) == []  # doc-3 twice, as in the dataset
    # A row copied from one shard into another repeats an id the dataset has once.
    first, second = _shards(run)
    table = pq.read_table(second)
    extra = pq.read_table(first).filter(pa.compute.equal(pq.read_table(first).column("id"), "doc-7"))
    _rewrite(run, second, pa.concat_tables([table, extra]))
    problems = _problems(run)
    assert any("dataset rows embedded more than once" in p and "doc-7" in p for p in problems), problems


def test_duplicate_ids_are_problems_when_none_were_recorded(run):
    _edit_manifest(run, lambda m: m.pop("duplicate_ids"))
    problems = _problems(run)
    assert any("1 duplicate id(s), e.g. 'doc-3'" in p for p in problems), problems


def test_recorded_duplicates_must_match_the_shards(run):
    # Same row index, another id: a row of another dataset version whose id now repeats.
    first, second = _shards(run)
    table = pq.read_table(second)
    ids = table.column("id").to_pylist()
    ids[0] = "doc-5"
    table = table.set_column(0, pa.field("id", pa.string(), nullable=False), pa.array(ids, pa.string()))
    _rewrite(run, second, table)
    problems = _problems(run)
    assert any("are not the 1 the run found in its dataset" in p for p in problems), problems


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_an_unfinished_run_is_listed_not_damage(run, status):
    """Readers leave an unfinished run out; verify names it and fails only for damage."""
    _edit_manifest(run, lambda m: m.update(status=status))
    assert _problems(run) == []
    proc = run_cli("verify", str(run))
    shown = "interrupted" if status == "running" else status  # no live supervisor holds a `running` one
    assert proc.returncode == 0, proc.stderr
    assert "ok: 1 run(s) verified (1 not complete)" in proc.stdout
    assert f"train: {shown} (" in proc.stderr and "readers leave them out" in proc.stderr
    _shards(run)[0].unlink()  # damage in an unfinished run is still damage
    proc = run_cli("verify", str(run))
    assert proc.returncode == 1 and "missing" in proc.stderr
