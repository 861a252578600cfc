"""Names mean what they say, through the whole CLI on real files: a single file's one split, a mistyped
path that is a path (not a Hub id), config-relative paths, and command line > environment > config file
> default for every option, mutually exclusive ones included."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import real_texts, run_cli, write_jsonl


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(real_texts(30))]
    write_jsonl(folder / "docs.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), folder / "docs.parquet")
    return folder


def _embed(*args: str, env: dict | None = None):
    return run_cli("embed-hf", "--devices", "cpu", "--no-progress", *args, env=env)


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.parquet"])
def test_a_single_file_has_one_split(data, tmp_path, name):
    proc = _embed("--dataset", str(data / name), "--split", "test", "--output-root", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"{name} has one split: train" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "indexes").exists()
    proc = run_cli("describe-dataset", "--name", str(data / name), "--output-root", str(tmp_path / "d"))
    assert proc.returncode == 0 and "train" in proc.stdout


@pytest.mark.parametrize("command", ["embed-hf", "describe-dataset"])
def test_a_mistyped_local_path_is_a_path_not_a_hub_id(data, tmp_path, command):
    typo = str(data / "doc.jsonl")
    flag = "--dataset" if command == "embed-hf" else "--name"
    proc = run_cli(command, flag, typo, "--output-root", str(tmp_path / "out"), unset=("HF_HUB_OFFLINE",))
    assert proc.returncode == 2, proc.stderr
    assert f"no such file: {typo}; did you mean docs.jsonl" in proc.stderr
    assert "Hugging Face" not in proc.stderr and "HF_HUB_OFFLINE" not in proc.stderr
    for name in ("data/doc.jsonl", "./doc.jsonl", "nowhere/at/all"):  # relative, as typed in a shell
        proc = run_cli(command, flag, name, "--output-root", str(tmp_path / "out"))
        assert proc.returncode == 2 and "no such file" in proc.stderr, proc.stderr


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(data, tmp_path):
    job = data / "job.toml"
    job.write_text('dataset = "docs.jsonl"\noutput_root = "../out"\nid_field = "id"\nn = 5\n')
    proc = _embed("--config", str(job))  # run from the repository root, far from the config file
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").glob("embeddings/*/docs/train/shard-*.parquet"))) == 1


def test_the_command_line_beats_the_environment_which_beats_the_config_file(data, tmp_path):
    out = str(tmp_path / "out")
    job = data / "job.toml"
    job.write_text('gpus = "all"\nn = 7\n')
    env = {"CHATSPACE_EMBED_HF_N": "50", "CHATSPACE_EMBED_HF_GPUS": "all"}
    # --p and --devices on the command line set aside the variables' --n and --gpus (and the file's)
    proc = _embed("--dataset", str(data / "docs.jsonl"), "--p", "0.3", "--output-root", out, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("runs", out, "--json", check=True)
    assert '"mode"' in proc.stdout
    import orjson

    run = orjson.loads(proc.stdout.splitlines()[0])
    m = orjson.loads(Path(run["manifest"]).read_bytes())
    assert m["config"]["p"] == 0.3 and m["config"]["n"] is None and m["config"]["devices"] == ["cpu:0"]
    # the environment's --n beats the config file's, which gives way whole (no "not both")
    out2 = str(tmp_path / "out2")
    proc = run_cli(
        "embed-hf", "--config", str(job), "--dataset", str(data / "docs.jsonl"), "--output-root", out2,
        "--devices", "cpu", "--no-progress", env={"CHATSPACE_EMBED_HF_N": "4"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = orjson.loads(run_cli("runs", out2, "--json", check=True).stdout.splitlines()[0])
    assert run["selected_rows"] == 4


def test_messages_about_a_variable_name_it(data, tmp_path):
    base = ["--dataset", str(data / "docs.jsonl"), "--output-root", str(tmp_path / "out")]
    proc = _embed(*base, env={"CHATSPACE_EMBED_HF_N": "5", "CHATSPACE_EMBED_HF_P": "0.5"})
    assert proc.returncode == 2
    assert "CHATSPACE_EMBED_HF_N (--n) and CHATSPACE_EMBED_HF_P (--p) exclude each other" in proc.stderr
    proc = _embed(*base, env={"CHATSPACE_EMBED_HF_N": "many"})
    assert proc.returncode == 2 and "$CHATSPACE_EMBED_HF_N" in proc.stderr


def test_two_extractions_are_refused(data, tmp_path):
    proc = _embed(
        "--dataset", str(data / "docs.jsonl"), "--output-root", str(tmp_path / "out"),
        "--extract", "first-user", "--extract-first-assistant",
    )  # fmt: skip
    assert proc.returncode == 2 and "give --extract first-user or --extract-first-assistant" in proc.stderr


def test_each_skipped_row_is_named_in_a_small_parquet_file(tmp_path):
    import orjson

    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(real_texts(20))]
    rows[3]["text"] = None
    rows[7]["text"] = ""
    rows[11] = {"id": "doc-11"}
    path = write_jsonl(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    proc = _embed("--dataset", str(path), "--id-field", "id", "--output-root", str(out))
    assert proc.returncode == 0, proc.stderr
    m = orjson.loads(next(out.glob("indexes/*/*/*/manifest.json")).read_bytes())
    listed = m["skipped_rows_file"]
    assert listed["rows"] == 3 == m["totals"]["skipped_rows"]
    skipped = pq.read_table(out / listed["path"]).to_pylist()
    assert [(r["row_index"], r["id"], r["reason"]) for r in skipped] == [
        (3, "doc-3", "null"),
        (7, "doc-7", "empty"),
        (11, "doc-11", "missing_field"),
    ]


def test_a_wrong_text_field_is_found_on_the_first_rows_before_any_worker(tmp_path):
    rows = [
        {"id": i, "num": i, "request": {"messages": [{"role": "user", "content": t}]}}
        for i, t in enumerate(real_texts(40))
    ]
    path = write_jsonl(tmp_path / "logs.jsonl", rows)
    out = tmp_path / "out"
    proc = _embed("--dataset", str(path), "--text-field", "num", "--output-root", str(out))
    assert proc.returncode == 2 and "--text-field 'num' holds numbers (e.g. 0, 1, 2)" in proc.stderr
    assert "ready:" not in proc.stderr and not (out / "indexes").exists()  # no model loaded, no run
    proc = _embed(
        "--dataset", str(path), "--text-field", "request.mesages", "--extract", "first-user",
        "--output-root", str(out),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "'request.mesages' leads nowhere" in proc.stderr and "request holds keys messages" in proc.stderr
