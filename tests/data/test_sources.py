"""Every local format, folders, save_to_disk, and the Hub path through local files."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatspace.data import hub
from chatspace.data.sources import Source, open_source
from chatspace.errors import UsageError
from tests.helpers import real_texts, write_jsonl


def _read_all(src: Source, cols=("text",)):
    return src.read(np.arange(src.num_rows), list(cols))


def test_parquet_file_with_many_row_groups(tmp_path):
    table = pa.table({"text": [f"row {i}" for i in range(1000)], "n": list(range(1000))})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=64)
    src = open_source(str(tmp_path / "d.parquet"), cache_dir=tmp_path / "cache")
    assert src.num_rows == 1000 and set(src.columns) == {"text", "n"}
    idx = np.array([0, 63, 64, 500, 999])
    assert [r["text"] for r in src.read(idx, ["text"])] == [f"row {i}" for i in idx]
    assert src.read(np.array([5]), ["n"]) == [{"n": 5}]


def test_folder_of_mixed_files_is_one_sequence(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    pq.write_table(pa.table({"text": ["a0", "a1"]}), d / "a.parquet")
    write_jsonl(d / "b.jsonl", [{"text": "b0"}, {"text": "b1"}, {"text": "b2"}])
    (d / "c.csv").write_text("text,other\nc0,x\n")
    (d / ".hidden").mkdir()
    pq.write_table(pa.table({"text": ["hidden"]}), d / ".hidden" / "z.parquet")
    src = open_source(str(d), cache_dir=tmp_path / "cache")
    assert [r["text"] for r in _read_all(src)] == ["a0", "a1", "b0", "b1", "b2", "c0"]
    assert src.locate(3) == (1, 1)


def test_jsonl_with_types_that_change_row_to_row(tmp_path):
    rows = [
        {"text": "a", "score": None},
        {"text": "b", "score": 3},
        {"text": 7, "score": "high"},
        {"score": [1, 2]},
    ]
    p = write_jsonl(tmp_path / "mixed.jsonl", rows)
    with open(p, "ab") as fh:
        fh.write(b"\n{not json}\n\n" + orjson.dumps({"text": "last"}) + b"\n")
    src = open_source(str(p), cache_dir=tmp_path / "cache")
    assert src.num_rows == 6  # blank lines are not rows; the broken line is
    got = src.read(np.arange(6), ["text", "score"])
    assert got[0] == {"text": "a", "score": None}
    assert got[2] == {"text": 7, "score": "high"}
    assert got[3] == {"score": [1, 2]}
    assert got[4] is None
    assert got[5] == {"text": "last"}
    # The index is cached: reopening does not rescan (same object count, same answers).
    again = open_source(str(p), cache_dir=tmp_path / "cache")
    assert again.read(np.array([5]), ["text"]) == [{"text": "last"}]


def test_json_array_file(tmp_path):
    (tmp_path / "a.json").write_bytes(orjson.dumps([{"text": "x"}, {"text": "y"}]))
    src = open_source(str(tmp_path / "a.json"), cache_dir=tmp_path / "cache")
    assert [r["text"] for r in _read_all(src)] == ["x", "y"]


def test_csv_with_quoted_newlines(tmp_path):
    (tmp_path / "c.csv").write_text('id,text\n1,"line one\nline two"\n2,plain\n3,\n')
    src = open_source(str(tmp_path / "c.csv"), cache_dir=tmp_path / "cache")
    assert src.num_rows == 3
    assert _read_all(src, ("id", "text")) == [
        {"id": "1", "text": "line one\nline two"},
        {"id": "2", "text": "plain"},
        {"id": "3", "text": ""},
    ]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(10)], "id": list(range(10))})
    ds.save_to_disk(str(tmp_path / "single"))
    src = open_source(str(tmp_path / "single"), cache_dir=tmp_path / "cache")
    assert src.num_rows == 10 and src.read(np.array([9]), ["text", "id"]) == [{"text": "t9", "id": 9}]
    dd = datasets.DatasetDict({"train": ds, "test": ds.select(range(3))})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert open_source(str(tmp_path / "dict"), split="test", cache_dir=tmp_path / "cache").num_rows == 3
    with pytest.raises(UsageError, match="split 'dev'"):
        open_source(str(tmp_path / "dict"), split="dev", cache_dir=tmp_path / "cache")


def test_missing_path_and_empty_folder_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        open_source(str(tmp_path / "nope.jsonl"), cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no .parquet"):
        open_source(str(tmp_path / "empty"), cache_dir=tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UsageError, match="unsupported file type"):
        open_source(str(tmp_path / "x.txt"), cache_dir=tmp_path)


def test_hub_parquet_read_in_place(tmp_path, monkeypatch):
    """The Hub path with HfFileSystem swapped for the local filesystem: footers, then row groups."""
    import fsspec.implementations.local
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "datasets" / "org" / "corpus@main" / "data"
    repo.mkdir(parents=True)
    for k in range(2):
        pq.write_table(
            pa.table({"text": [f"f{k}-{i}" for i in range(50)]}),
            repo / f"train-{k}.parquet",
            row_group_size=16,
        )
    urls = [f"hf://datasets/org/corpus@main/data/train-{k}.parquet" for k in range(2)]
    monkeypatch.setattr(hub, "resolve_hub_files", lambda name, subset, split: urls)
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", fsspec.implementations.local.LocalFileSystem)
    src = open_source("org/corpus", source="huggingface", cache_dir=tmp_path / "cache")
    assert src.spec.source == "huggingface" and src.spec.filesystem == "hf"
    assert src.num_rows == 100
    assert [r["text"] for r in src.read(np.array([0, 49, 50, 99]), ["text"])] == [
        "f0-0",
        "f0-49",
        "f1-0",
        "f1-49",
    ]
    # A worker reopens from the picklable spec.
    import pickle

    again = Source(pickle.loads(pickle.dumps(src.spec)))
    assert again.read(np.array([77]), ["text"]) == [{"text": "f1-27"}]


def test_tab_separated_csv_and_a_file_lacking_the_column(tmp_path):
    (tmp_path / "t.csv").write_text("a\tb\n1\thello, world\n")
    src = open_source(str(tmp_path / "t.csv"), cache_dir=tmp_path / "cache")
    assert _read_all(src, ("b",)) == [{"b": "hello, world"}]
    d = tmp_path / "two"
    d.mkdir()
    pq.write_table(pa.table({"text": ["x", "y"]}), d / "a.parquet")
    pq.write_table(pa.table({"other": [1, 2, 3]}), d / "b.parquet")
    src = open_source(str(d), cache_dir=tmp_path / "cache")
    assert _read_all(src) == [{"text": "x"}, {"text": "y"}, {}, {}, {}]


def test_split_folders_and_split_named_files(tmp_path):
    d = tmp_path / "splits"
    for split, n in (("train", 3), ("test", 2)):
        (d / split).mkdir(parents=True)
        pq.write_table(pa.table({"text": [f"{split}{i}" for i in range(n)]}), d / split / "part.parquet")
    assert open_source(str(d), split="test", cache_dir=tmp_path).num_rows == 2
    with pytest.raises(UsageError, match="split folders: test, train"):
        open_source(str(d), split="validation", cache_dir=tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), flat / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": ["z"]}), flat / "test-00000-of-00001.parquet")
    (flat / "dataset_info.json").write_text("{}")
    assert open_source(str(flat), split="train", cache_dir=tmp_path).num_rows == 3
    assert open_source(str(flat), split="test", cache_dir=tmp_path).num_rows == 1
    with pytest.raises(UsageError, match="files name splits"):
        open_source(str(flat), split="dev", cache_dir=tmp_path)


def _resident_file_kib() -> int:
    """File-backed pages in this process's resident set (Linux: RssFile of /proc/self/status)."""
    for line in open("/proc/self/status"):  # noqa: SIM115 - read once
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status (not Linux)")


def test_reading_a_jsonl_file_does_not_keep_it_resident(tmp_path):
    """A worker reads its units through a memory map; the pages it has read leave its resident set, so
    peak memory follows the unit, not the size of the sample (here 24 MB read in 1,000-row units)."""
    texts = real_texts(400)
    rows = [
        {"id": i, "text": (texts[i % 400] + " ") * (2000 // len(texts[i % 400]) + 1)} for i in range(12_000)
    ]
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    assert path.stat().st_size > 24_000_000
    src = open_source(str(path), cache_dir=tmp_path / "cache")
    before = _resident_file_kib()
    for start in range(0, 12_000, 1_000):
        got = src.read(np.arange(start, start + 1_000), ["id"])
        assert [r["id"] for r in got] == list(range(start, start + 1_000))
    grown_kib = _resident_file_kib() - before
    src.close()
    assert grown_kib < 4_000, f"{grown_kib} KiB of the 24 MB file stayed resident"
