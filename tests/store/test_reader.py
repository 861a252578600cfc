"""Reading results back from the manifests: `load_embeddings`, `to_numpy`, `list_runs`, `chatspace runs`,
and the same output read by pandas, polars, duckdb and datasets. One real run; other runs are made by
copying it and editing its manifest, as the reader must follow manifests, not file names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import chatspace
from chatspace.errors import ChatspaceError, UsageError
from chatspace.store.reader import format_runs, list_runs, load_embeddings, shard_paths, to_numpy
from chatspace.store.schema import embedding_schema
from tests.helpers import run_cli, write_jsonl

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def run_root(tmp_path_factory, texts):
    d = tmp_path_factory.mktemp("reader")
    data = write_jsonl(d / "notes.jsonl", [{"id": f"note-{i}", "text": t} for i, t in enumerate(texts[:150])])
    out = d / "out"
    proc = run_cli(
        "embed-hf", "--dataset", str(data), "--id-field", "id", "--n", "120", "--devices", "cpu",
        "--rows-per-shard", "50", "--output-root", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def manifest_path(run_root) -> Path:
    return next(run_root.glob("indexes/*/*/*/manifest.json"))


def _manifest(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def _direct(root: Path, manifest: dict) -> pa.Table:
    return pa.concat_tables(pq.read_table(root / s["path"]) for s in manifest["shards"])


@pytest.mark.slow
def test_load_embeddings_returns_every_row_of_the_run(run_root, manifest_path):
    m = _manifest(manifest_path)
    table = chatspace.load_embeddings(run_root)
    assert table.num_rows == m["totals"]["rows"] == 120
    stored = table.select(list(embedding_schema(384).names))
    assert stored.schema.remove_metadata().equals(embedding_schema(384))
    assert table.column_names[-3:] == ["run_name", "text_field", "extract"]  # which run each row is from
    assert set(table.column("run_name").to_pylist()) == {"train"}
    assert stored.equals(_direct(run_root, m))  # every shard, in unit order
    ids, vectors = to_numpy(table)
    assert ids.tolist() == table.column("id").to_pylist() and len(set(ids)) == 120
    assert vectors.shape == (120, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[7], np.asarray(table.column("embedding")[7].as_py(), np.float32))


@pytest.mark.slow
def test_filters_match_the_names_a_user_would_type(run_root):
    for model in (MODEL, "all-MiniLM-L6-v2", "sentence-transformers__all-MiniLM-L6-v2"):
        assert load_embeddings(run_root, model=model).num_rows == 120
    dataset_path = next(run_root.parent.glob("notes.jsonl"))
    for dataset in ("notes", str(dataset_path)):
        assert load_embeddings(run_root, dataset=dataset, split="train").num_rows == 120
    with pytest.raises(UsageError, match="no run under .* matches split='test'") as e:
        load_embeddings(run_root, split="test")
    assert "notes" in str(e.value)  # lists what is there
    with pytest.raises(UsageError, match="no run under .* matches model='other/model'"):
        load_embeddings(run_root, model="other/model")


@pytest.mark.slow
def test_columns_and_shard_paths(run_root, manifest_path):
    t = load_embeddings(run_root, columns=["id", "text"])
    assert t.column_names == ["id", "text"] and t.num_rows == 120
    with pytest.raises(UsageError, match="unknown column"):
        load_embeddings(run_root, columns=["vector"])
    m = _manifest(manifest_path)
    assert shard_paths(run_root) == [str(run_root / s["path"]) for s in m["shards"]]


@pytest.mark.slow
def test_dataframe_libraries_read_the_output(run_root, manifest_path):
    import datasets
    import duckdb
    import pandas as pd
    import polars as pl

    table = load_embeddings(run_root)
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 120 and len(df["embedding"].iloc[0]) == 384
    pdf = pl.from_arrow(table)
    assert pdf.height == 120 and pdf.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert pl.scan_parquet(shard_paths(run_root)).select(pl.len()).collect().item() == 120
    glob = f"{run_root}/embeddings/**/*.parquet"
    assert duckdb.sql(f"select count(*), count(distinct id) from '{glob}'").fetchall() == [(120, 120)]
    assert duckdb.sql(f"select len(embedding) from '{glob}' limit 1").fetchall() == [(384,)]
    ds = datasets.Dataset(table)
    assert len(ds) == 120 and len(ds[0]["embedding"]) == 384
    ds2 = datasets.load_dataset("parquet", data_files=shard_paths(run_root), split="train")
    assert sorted(ds2["id"]) == sorted(table.column("id").to_pylist())

    # The vectors are stored byte-split (no dictionary); every reader decodes the same floats from the files.
    import numpy as np
    import pyarrow.parquet as pq

    column = (
        pq.ParquetFile(shard_paths(run_root)[0])
        .metadata.row_group(0)
        .column(table.schema.get_field_index("embedding"))
    )
    assert "BYTE_STREAM_SPLIT" in column.encodings and "RLE_DICTIONARY" not in column.encodings
    ids, vectors = to_numpy(table)
    want = dict(zip(ids.tolist(), vectors, strict=True))
    by_polars = pl.read_parquet(shard_paths(run_root)).select("id", "embedding").rows()
    by_duckdb = duckdb.sql(f"select id, embedding from '{glob}'").fetchall()
    by_datasets = list(zip(ds2["id"], ds2["embedding"], strict=True))
    for rows in (by_polars, by_duckdb, by_datasets):
        assert len(rows) == 120
        assert all(np.array_equal(np.asarray(v, np.float32), want[i]) for i, v in rows)


@pytest.mark.slow
def test_list_runs_and_the_runs_command(run_root, manifest_path):
    m = _manifest(manifest_path)
    (run,) = list_runs(run_root)
    assert run["model"] == MODEL and run["dataset_label"] == "notes" and run["split"] == "train"
    assert (run["rows"], run["dimension"], run["status"]) == (120, 384, "complete")
    assert run["when"] == m["finished_at"] and run["run_id"] == m["run_id"] and run["shards"] == 3
    assert run["manifest"] == str(manifest_path)
    text = format_runs([run])
    assert text.splitlines()[0].split() == [
        "MODEL",
        "DATASET",
        "SPLIT",
        "TEXT",
        "ROWS",
        "DIM",
        "STATUS",
        "WHEN",
        "RUN",
        "ID",
    ]
    proc = run_cli("runs", str(run_root), timeout=60)
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.splitlines()[1].split()
    assert row[:7] == [MODEL, "notes", "train", "text", "120", "384", "complete"] and row[-1] == m["run_id"]
    proc = run_cli("runs", str(run_root), "--json", timeout=60)
    assert orjson.loads(proc.stdout)["rows"] == 120


# --- more runs, made from the real one ---------------------------------------------------------------


def _copy_run(root: Path, manifest_path: Path, edit, new_parts: tuple[str, str, str], rename=None) -> Path:
    """Copy the run's shards and manifest to a new model/dataset/split place, editing the manifest."""
    m = _manifest(manifest_path)
    emb_rel = Path("embeddings", *new_parts)
    idx_rel = Path("indexes", *new_parts)
    (root / emb_rel).mkdir(parents=True, exist_ok=True)
    for s in m["shards"]:
        name = rename(Path(s["path"]).name) if rename else Path(s["path"]).name
        shutil.copy(root / s["path"], root / emb_rel / name)
        s["path"] = (emb_rel / name).as_posix()
    m["layout"]["embeddings_dir"], m["layout"]["index_dir"] = emb_rel.as_posix(), idx_rel.as_posix()
    edit(m)
    (root / idx_rel).mkdir(parents=True, exist_ok=True)
    (root / idx_rel / "manifest.json").write_bytes(orjson.dumps(m))
    return root / idx_rel / "manifest.json"


@pytest.fixture
def copied_root(run_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(run_root, root)  # a moved output root must still read
    return root, next(root.glob("indexes/*/*/*/manifest.json"))


@pytest.mark.slow
def test_runs_of_one_model_concatenate_by_dataset_and_split(copied_root):
    root, mpath = copied_root
    model_dir = mpath.parent.parent.parent.name

    def as_test_split(m):
        m["dataset"]["split"] = m["config"]["split"] = "test"

    # Odd file names on purpose: the reader goes by the manifest's shard list.
    _copy_run(root, mpath, as_test_split, (model_dir, "notes", "test"), rename=lambda n: "x-" + n)
    (root / "embeddings" / model_dir / "notes" / "train" / "shard-00099.parquet").write_bytes(
        (root / "embeddings" / model_dir / "notes" / "train" / "shard-00000.parquet").read_bytes()
    )  # a stray file the manifest does not list is not read
    both = load_embeddings(root)
    assert both.num_rows == 240
    names = [Path(p).name for p in shard_paths(root)]  # ordered by split, then unit
    assert names == [f"x-shard-0000{i}.parquet" for i in range(3)] + [
        f"shard-0000{i}.parquet" for i in range(3)
    ]
    assert both.slice(120).equals(load_embeddings(root, split="train"))
    assert load_embeddings(root, split="train").num_rows == 120
    assert [r["split"] for r in list_runs(root)] == ["test", "train"]


@pytest.mark.slow
def test_runs_of_different_models_are_never_mixed(copied_root):
    root, mpath = copied_root

    def other_model(m):
        m["model"]["name"] = m["config"]["model"] = "org/other-model"

    _copy_run(root, mpath, other_model, ("org__other-model", "notes", "train"))
    with pytest.raises(UsageError, match="2 runs of different models .* Pass model=") as e:
        load_embeddings(root)
    assert "org/other-model" in str(e.value) and MODEL in str(e.value)
    assert load_embeddings(root, model="org/other-model").num_rows == 120
    assert {r["model"] for r in list_runs(root)} == {MODEL, "org/other-model"}


@pytest.mark.slow
def test_unfinished_runs_and_damaged_outputs(copied_root):
    root, mpath = copied_root
    m = _manifest(mpath)
    m["status"] = "interrupted"
    m["shards"] = m["shards"][:2]
    m["totals"]["units_done"] = 2
    mpath.write_bytes(orjson.dumps(m))
    with pytest.raises(
        ChatspaceError, match="no complete run matches: .*interrupted.* include_incomplete=True"
    ):
        load_embeddings(root)
    assert load_embeddings(root, include_incomplete=True).num_rows == 100
    assert "interrupted (2/3 units)" in format_runs(list_runs(root))

    (root / m["shards"][1]["path"]).unlink()
    with pytest.raises(ChatspaceError, match="shard-00001.parquet is listed in .* but missing"):
        load_embeddings(root, include_incomplete=True)

    mpath.write_text("{ torn")
    runs = list_runs(root)
    assert runs == [{"status": "unreadable", "manifest": str(mpath)}]
    assert "unreadable" in format_runs(runs)


def test_empty_and_missing_roots(tmp_path):
    assert list_runs(tmp_path) == []
    assert format_runs([]) == "no runs found"
    with pytest.raises(UsageError, match="no chatspace runs under"):
        load_embeddings(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        list_runs(tmp_path / "absent")
    proc = run_cli("runs", str(tmp_path), timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"no chatspace runs under {tmp_path}"
    proc = run_cli("runs", str(tmp_path / "absent"), timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_to_numpy_widens_float16_and_respects_slices():
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float16()), 3),
        }
    )
    ids, got = to_numpy(table.slice(1, 2))
    assert ids.tolist() == ["b", "c"] and got.dtype == np.float32
    np.testing.assert_allclose(got, vectors[1:3], rtol=1e-3)
    with pytest.raises(UsageError, match="no `embedding` column"):
        to_numpy(table.select(["id"]))
