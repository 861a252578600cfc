"""`download-dataset`: metadata of real local files (Parquet folders, JSONL with mixed types, CSV,
save_to_disk folders) and of Hub datasets through the real hub code with its network calls faked."""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import datasets
import huggingface_hub
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatspace.data.describe.local import SAMPLE_BLOCKS
from chatspace.errors import UsageError
from chatspace.store.datasets import download_dataset
from tests.helpers import run_cli, write_jsonl


def _conversation(i: int, text: str) -> list[dict]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"Question {i}?"},
        {"role": "assistant", "content": text},
    ]


@pytest.fixture
def parquet_folder(tmp_path, texts):
    """train/ in two files of many row groups, test/ in one: real prose of many lengths."""
    root = tmp_path / "corpus"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = [
        {"id": f"doc-{i}", "text": t, "score": i / 3, "conversation": _conversation(i, t)}
        for i, t in enumerate(texts[:180])
    ]
    pq.write_table(pa.Table.from_pylist(rows[:100]), root / "train" / "part-0.parquet", row_group_size=10)
    pq.write_table(pa.Table.from_pylist(rows[100:150]), root / "train" / "part-1.parquet", row_group_size=10)
    pq.write_table(pa.Table.from_pylist(rows[150:]), root / "test" / "part-0.parquet")
    return root, rows


def test_parquet_folder_rows_features_files_and_text_stats(parquet_folder, tmp_path):
    root, rows = parquet_folder
    out = tmp_path / "out"
    report = download_dataset(str(root), output_root=str(out), sample_rows=500)

    assert list(report.splits) == ["test", "train"]
    train, test = report.splits["train"], report.splits["test"]
    assert train["rows"] == 150 and test["rows"] == 30
    assert [(f["path"], f["rows"], f["bytes"]) for f in train["files"]] == [
        (str(root / "train" / n), r, (root / "train" / n).stat().st_size)
        for n, r in (("part-0.parquet", 100), ("part-1.parquet", 50))
    ]
    assert train["bytes"] == sum(f["bytes"] for f in train["files"])
    schema = pq.read_schema(root / "train" / "part-0.parquet")
    assert report.features == {f.name: {"type": str(f.type)} for f in schema}
    assert report.features["score"]["type"] == "double"

    # The sample covers the whole train split here, so the statistics are exact.
    assert report.info["sample"] == {"split": "train", "rows": 150, "of": 150, "method": "all rows"}
    fields = {f["field"]: f for f in report.text_fields}
    assert set(fields) == {"conversation", "text"}  # ids are not text to embed
    assert report.info["not_text_fields"] == [{"field": "id", "why": "id-like (distinct, no spaces)"}]
    lengths = [len(r["text"]) for r in rows[:150]]
    assert fields["text"]["kind"] == "text"
    assert fields["text"]["chars"] == {
        "mean": round(statistics.fmean(lengths), 1),
        "median": statistics.median(lengths),
        "min": min(lengths),
        "max": max(lengths),
    }
    conv = fields["conversation"]
    assert conv["kind"] == "conversation" and conv["turns"]["mean"] == 3
    assert conv["roles"] == {"system": 150, "user": 150, "assistant": 150}
    assert conv["extract"]["first-assistant"]["chars"]["max"] == max(lengths)
    assert conv["extract"]["first-user"]["found"] == 150
    assert report.text_fields[0]["field"] == "conversation"  # the likeliest field leads
    assert report.info["id_candidates"] == ["id"]

    # Written where the layout says, and identical to what was returned.
    info_path = out / "datasets" / "raw" / "local" / "corpus" / "default" / "info.json"
    assert report.path == info_path
    assert orjson.loads(info_path.read_bytes()) == orjson.loads(orjson.dumps(report.info))
    assert (info_path.parent / "summary.txt").read_text().strip() == report.render()

    text = report.render()
    assert "train" in text and "150" in text and "double" in text
    assert "--text-field conversation --extract first-assistant --id-field id" in text


def test_only_a_small_sample_of_parquet_data_is_read(parquet_folder, tmp_path, monkeypatch):
    root, _ = parquet_folder
    groups_read = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        groups_read.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("whole file read"))
    report = download_dataset(str(root), split="train", output_root=str(tmp_path / "o"), sample_rows=8)
    assert report.splits["train"]["rows"] == 150  # from the footers
    assert report.info["sample"]["rows"] == 8
    assert 0 < len(groups_read) <= 2 * SAMPLE_BLOCKS  # of the 15 row groups
    assert (tmp_path / "o/datasets/raw/local/corpus/train/info.json").is_file()


def test_cli_prints_and_writes_the_same_counts(parquet_folder, tmp_path):
    root, _ = parquet_folder
    out = tmp_path / "out"
    proc = run_cli("download-dataset", "--name", str(root), "--output-root", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = orjson.loads((out / "datasets/raw/local/corpus/default/info.json").read_bytes())
    assert {k: v["rows"] for k, v in info["splits"].items()} == {"test": 30, "train": 150}
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["train", "150"] for line in lines)
    assert any(line.split()[:2] == ["test", "30"] for line in lines)
    assert (
        "conversation" in proc.stdout
        and "list<element: struct<role: string, content: string>>" in proc.stdout
    )


def test_jsonl_types_are_inferred_and_mixed_types_called_out(tmp_path):
    rows = []
    for i in range(60):
        row = {
            "id": i,
            "label": i if i % 3 else f"L{i}",
            "text": None if i % 10 == 0 else f"sentence number {i}",
            "chat": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": "hello there"}],
        }
        if i % 6 == 0:
            del row["chat"]
        rows.append(row)
    path = write_jsonl(tmp_path / "chats.jsonl", rows)
    with open(path, "ab") as fh:
        fh.write(b"{not json at all\n\n")
    report = download_dataset(str(path), output_root=str(tmp_path / "out"), sample_rows=1000)

    assert report.splits["train"]["rows"] == 61  # blank lines are not rows; the broken line is
    f = report.features
    assert f["id"]["type"] == "int64"
    assert f["label"]["mixed"] is True and f["label"]["types_seen"] == {"int64": 40, "string": 20}
    assert f["label"]["type"].startswith("mixed: int64 (40), string (20)")
    assert f["text"] == {"inferred_from_rows": 60, "nulls": 6, "type": "string"}
    assert (
        f["chat"]["missing"] == 10 and f["chat"]["type"] == "list<item: struct<from: string, value: string>>"
    )
    notes = " ".join(report.info["notes"])
    assert "'label' has mixed types" in notes and "1 of 61 sampled rows is not a JSON object" in notes

    fields = {x["field"]: x for x in report.text_fields}
    assert fields["chat"]["kind"] == "conversation"
    assert fields["chat"]["extract"]["first-assistant"]["found"] == 50
    assert fields["chat"]["roles"] == {"human": 50, "gpt": 50}
    assert fields["text"]["usable"] == 54 and fields["text"]["nulls"] == 6
    assert "label" not in fields  # mostly numbers: not a text field
    assert "mixed: int64 (40), string (20)" in report.render()


def test_csv_columns_are_text_and_json_conversations_are_found(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "id,body,conv\n"
        '1,"a body\nwith a newline","[{""role"": ""user"", ""content"": ""hi""}, '
        '{""role"": ""assistant"", ""content"": ""hello""}]"\n'
        '2,second,"[{""role"": ""user"", ""content"": ""only a question""}]"\n'
    )
    report = download_dataset(str(path), output_root=str(tmp_path / "out"))
    assert report.splits["train"]["rows"] == 2
    assert report.splits["train"]["files"][0] == {
        "path": str(path),
        "format": "csv",
        "rows": 2,
        "bytes": path.stat().st_size,
    }
    assert {k: v["type"] for k, v in report.features.items()} == {
        "id": "string",
        "body": "string",
        "conv": "string",
    }
    fields = {x["field"]: x for x in report.text_fields}
    assert fields["conv"]["kind"] == "conversation" and fields["conv"]["json_string"] is True
    assert fields["conv"]["extract"]["first-assistant"]["found"] == 1
    assert fields["conv"]["extract"]["first-user"]["found"] == 2
    assert fields["body"]["chars"]["max"] == len("a body\nwith a newline")


def test_save_to_disk_dataset_dict_and_dataset(tmp_path, texts):
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": texts[:40], "n": list(range(40))}),
            "validation": datasets.Dataset.from_dict({"text": texts[40:52], "n": list(range(12))}),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    report = download_dataset(str(tmp_path / "dd"), output_root=str(tmp_path / "out"))
    assert report.info["kind"] == "save_to_disk DatasetDict"
    assert {k: v["rows"] for k, v in report.splits.items()} == {"train": 40, "validation": 12}
    assert report.features == {"text": {"type": "string"}, "n": {"type": "int64"}}
    assert all(f["format"] == "arrow" for s in report.splits.values() for f in s["files"])

    only = download_dataset(str(tmp_path / "dd"), split="validation", output_root=str(tmp_path / "out"))
    assert list(only.splits) == ["validation"] and only.info["sample"]["split"] == "validation"
    assert (tmp_path / "out/datasets/raw/local/dd/validation/info.json").is_file()
    with pytest.raises(UsageError, match="split 'test' not in .* train, validation"):
        download_dataset(str(tmp_path / "dd"), split="test", output_root=str(tmp_path / "out"))

    dd["train"].save_to_disk(str(tmp_path / "single"))
    single = download_dataset(str(tmp_path / "single"), output_root=str(tmp_path / "out"))
    assert single.info["kind"] == "save_to_disk Dataset" and single.splits["train"]["rows"] == 40


def test_split_layouts_are_reported_as_embed_hf_reads_them(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    pq.write_table(pa.table({"text": ["a", "b"]}), flat / "train-00000.parquet")
    pq.write_table(pa.table({"text": ["c"]}), flat / "test-00000.parquet")
    report = download_dataset(str(flat), output_root=str(tmp_path / "out"))
    assert {k: v["rows"] for k, v in report.splits.items()} == {"test": 1, "train": 2}

    nested = tmp_path / "nested"
    for split in ("train", "test"):
        (nested / split).mkdir(parents=True)
        pq.write_table(pa.table({"text": ["x"]}), nested / split / "d.parquet")
    report = download_dataset(str(nested), output_root=str(tmp_path / "out"))
    assert {k: v["rows"] for k, v in report.splits.items()} == {"test": 1, "train": 1}
    with pytest.raises(UsageError, match="split 'validation' not in"):
        download_dataset(str(nested), split="validation", output_root=str(tmp_path / "out"))


def test_missing_path_and_sample_rows_zero(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        download_dataset(str(tmp_path / "nope.jsonl"), source="local", output_root=str(tmp_path))
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "one"}, {"text": "two"}])
    report = download_dataset(str(path), output_root=str(tmp_path / "out"), sample_rows=0)
    assert report.splits["train"]["rows"] == 2 and report.text_fields == [] and report.info["sample"] == {}


# --- the Hub, with its network calls faked at the boundary ------------------------------------------


def _no_hf_filesystem(*_a, **_k):
    raise AssertionError("no data file may be opened")


def test_hub_info_files_and_sample_without_downloading(tmp_path, monkeypatch, texts):
    name = "org/chats"
    rev = "0123456789abcdef0123456789abcdef01234567"
    files = {
        "train": [f"data/train-0000{i}-of-00002.parquet" for i in range(2)],
        "test": ["data/test-00000-of-00001.parquet"],
    }
    sizes = {
        files["train"][0]: 1_000_000,
        files["train"][1]: 900_000,
        files["test"][0]: 50_000,
        "README.md": 900,
    }
    repo = SimpleNamespace(
        id=name,
        sha=rev,
        last_modified="2025-01-01T00:00:00Z",
        gated=False,
        private=False,
        siblings=[huggingface_hub.hf_api.RepoSibling(rfilename=k, size=v) for k, v in sizes.items()],
        card_data=huggingface_hub.DatasetCardData(
            license="odc-by", configs=[{"config_name": "default", "data_files": "data/*"}]
        ),
    )
    features = datasets.Features(
        {
            "conversation_hash": datasets.Value("string"),
            "conversation": datasets.List(
                {"role": datasets.Value("string"), "content": datasets.Value("string")}
            ),
            "toxic": datasets.ClassLabel(names=["no", "yes"]),
        }
    )
    builder = SimpleNamespace(
        info=SimpleNamespace(
            features=features,
            splits={
                "train": datasets.SplitInfo(name="train", num_examples=4_800_000, num_bytes=9_000_000),
                "test": datasets.SplitInfo(name="test", num_examples=1000, num_bytes=2000),
            },
            download_size=1_950_000,
            dataset_size=9_002_000,
            description="",
        ),
        config=SimpleNamespace(
            name="default",
            data_files={s: [f"hf://datasets/{name}@{rev}/{f}" for f in fs] for s, fs in files.items()},
        ),
    )
    sample = [
        {"conversation_hash": f"h{i}", "conversation": _conversation(i, t), "toxic": 0}
        for i, t in enumerate(texts[:30])
    ]
    calls = {}

    def dataset_info(self, repo_id, files_metadata=False, **kw):
        calls["dataset_info"] = (repo_id, files_metadata)
        return repo

    def load_dataset_builder(path, name=None, **kw):
        calls["builder"] = (path, name)
        return builder

    def load_dataset(path, name=None, split=None, streaming=False, **kw):
        assert streaming, "the sample must be streamed, not downloaded"
        calls["stream"] = (path, name, split)
        return SimpleNamespace(take=lambda n: iter(sample[:n]))

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", _no_hf_filesystem)
    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)

    report = download_dataset(name, output_root=str(tmp_path), sample_rows=20)
    assert calls == {
        "dataset_info": (name, True),
        "builder": (name, None),
        "stream": (name, None, "train"),
    }
    assert report.info["source"] == "huggingface" and report.info["subsets"] == ["default"]
    train = report.splits["train"]
    assert train["rows"] == 4_800_000 and train["rows_from"] == "dataset info"
    assert [(f["path"], f["bytes"]) for f in train["files"]] == [(f, sizes[f]) for f in files["train"]]
    assert train["bytes"] == 1_900_000 and report.splits["test"]["rows"] == 1000
    assert report.info["hub"]["files"] == 4 and report.info["hub"]["license"] == "odc-by"
    assert report.features["conversation"]["type"] == "list<item: struct<role: string, content: string>>"
    assert report.features["toxic"] == {"type": "int64", "class_names": ["no", "yes"]}
    assert report.info["sample"]["rows"] == 20
    assert report.text_fields[0]["field"] == "conversation"
    assert report.text_fields[0]["extract"]["first-assistant"]["found"] == 20
    assert report.info["id_candidates"] == ["conversation_hash"]
    assert (tmp_path / "datasets/raw/huggingface/org__chats/default/info.json").is_file()
    text = report.render()
    assert "4,800,000" in text and "1.9 MB" in text
    assert (
        "--dataset org/chats --text-field conversation --extract first-assistant --id-field conversation_hash"
        in text
    )


def test_hub_row_counts_from_parquet_footers_when_the_info_has_none(tmp_path, monkeypatch, texts):
    """A Parquet-only Hub dataset has no split sizes in its info: counts come from the footers."""
    local = tmp_path / "mirror"
    local.mkdir()
    for i in range(2):
        pq.write_table(pa.table({"text": texts[i * 25 : (i + 1) * 25]}), local / f"train-{i}.parquet")
    data_files = {"train": [str(local / "train-0.parquet"), str(local / "train-1.parquet")]}
    real_builder = datasets.load_dataset_builder("parquet", data_files=data_files)  # offline, no info
    assert real_builder.info.splits is None
    real_load = datasets.load_dataset
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "dataset_info",
        lambda self, repo_id, **kw: SimpleNamespace(siblings=[], card_data=None, sha="abc"),
    )
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda path, name=None, **kw: real_builder)
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda path, name=None, split=None, streaming=False, **kw: real_load(
            "parquet", data_files=data_files, split=split, streaming=streaming
        ),
    )
    report = download_dataset("org/web", subset="sample", output_root=str(tmp_path / "out"), sample_rows=10)
    assert report.splits["train"]["rows"] == 50 and report.splits["train"]["rows_from"] == "parquet footers"
    assert [f["rows"] for f in report.splits["train"]["files"]] == [25, 25]
    assert report.features == {"text": {"type": "string"}}
    assert report.text_fields[0]["field"] == "text" and report.info["sample"]["rows"] == 10
    assert (tmp_path / "out/datasets/raw/huggingface/org__web/sample/info.json").is_file()


def test_hub_unreachable_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="cannot get Hugging Face dataset 'org/absent'"):
        download_dataset("org/absent", source="huggingface", output_root=str(tmp_path))
    proc = run_cli("download-dataset", "--name", "org/absent", "--output-root", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_hub_json_dataset_without_info_types_come_from_the_sample(tmp_path, monkeypatch):
    url = "hf://datasets/org/notes@main/notes.jsonl"
    builder = SimpleNamespace(
        info=SimpleNamespace(
            features=None, splits=None, download_size=None, dataset_size=None, description=""
        ),
        config=SimpleNamespace(name="default", data_files={"train": [url]}),
    )
    sample = [{"text": f"note {i}", "stars": i if i % 2 else None} for i in range(12)]
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "dataset_info",
        lambda self, repo_id, **kw: SimpleNamespace(
            siblings=[huggingface_hub.hf_api.RepoSibling(rfilename="notes.jsonl", size=4321)], card_data=None
        ),
    )
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", _no_hf_filesystem)
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda path, name=None, **kw: builder)
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **kw: SimpleNamespace(take=lambda n: iter(sample[:n]))
    )
    report = download_dataset("org/notes", split="train", output_root=str(tmp_path))
    train = report.splits["train"]
    assert train["rows"] is None and train["bytes"] == 4321 and train["files"][0]["format"] == "jsonl"
    assert any("row count unknown" in n for n in report.info["notes"])
    assert report.features["text"]["type"] == "string"
    assert report.features["stars"]["type"] == "int64" and report.features["stars"]["nulls"] == 6
    assert report.text_fields[0]["field"] == "text"
    assert "train" in report.render() and "?" in report.render()
    assert (tmp_path / "datasets/raw/huggingface/org__notes/train/info.json").is_file()
