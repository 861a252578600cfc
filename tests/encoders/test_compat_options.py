"""The original tool's command lines, config files giving way to the command line, and split slices
read exactly as `datasets` reads them."""

from __future__ import annotations

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.config.splits import parse_split
from chatspace.data.sampling import select_rows
from chatspace.errors import UsageError
from tests.helpers import cosine_rows, cut_or_whole, run_cli, run_manifest, run_table, write_jsonl


def _chats(texts: list[str], n: int) -> list[dict]:
    """WildChat-like rows: a conversation list and a hash id; every 4th has no assistant turn."""
    rows = []
    for i in range(n):
        conv = [{"role": "user", "content": texts[2 * i]}]
        if i % 4 != 3:
            conv.append({"role": "assistant", "content": texts[2 * i + 1]})
        rows.append({"conversation_hash": f"h{i:04d}", "conversation": conv})
    return rows


# --- split slices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["train[:5]", "train[10%:20%]", "train[-7:]", "train[3:-3]", "train[:33%]", "train[95%:]"]
)
def test_slices_select_what_datasets_selects(tmp_path, spec):
    import datasets

    rows = [{"k": i} for i in range(101)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    expected = datasets.load_dataset("json", data_files={"train": str(path)}, split=spec)["k"]
    split = parse_split(spec)
    assert split.name == "train" and split.sliced
    sel = select_rows(101, n=None, p=None, seed=1, row_range=split.row_range(101))
    assert sel.indices.tolist() == expected


def test_slice_then_sample_and_cap():
    split = parse_split("train[10%:20%]")
    rng = split.row_range(1000)
    assert rng == (100, 200)
    by_n = select_rows(1000, n=10, p=None, seed=3, row_range=rng).indices
    assert len(by_n) == 10 and by_n.min() >= 100 and by_n.max() < 200
    by_p = select_rows(1000, n=None, p=0.5, seed=3, row_range=rng).indices
    full_p = select_rows(1000, n=None, p=0.5, seed=3).indices
    assert by_p.tolist() == [i for i in full_p.tolist() if 100 <= i < 200]  # the same rows as unsliced
    capped = select_rows(1000, n=None, p=None, seed=3, row_range=rng, max_rows=7)
    assert capped.indices.tolist() == list(range(100, 107)) and capped.method == "first"


def test_split_specs_that_are_refused():
    with pytest.raises(UsageError, match="one split per run"):
        parse_split("train[:10]+test")
    with pytest.raises(UsageError, match="not a split name or a slice"):
        parse_split("train[:5")
    with pytest.raises(UsageError, match="--split 'train\\[a:b\\]'"):
        parse_split("train[a:b]")
    with pytest.raises(UsageError, match="selects no rows"):
        parse_split("train[50:10]").row_range(100)
    assert parse_split("train[:5]").folder == "train.start..5"
    assert parse_split("train[10%:20%]").folder == "train.10pct..20pct"
    assert parse_split("validation").folder == "validation"
    # The slice is part of the run's identity: a sliced run never resumes into a full one.
    base = RunConfig.from_options(dataset="d", output_root="/tmp/x")
    assert base.replace(split="train[:5]").output_hash() != base.output_hash()
    assert base.replace(max_rows=5).output_hash() != base.output_hash()
    with pytest.raises(UsageError, match="--max-rows or --n/--p"):
        RunConfig.from_options(dataset="d", output_root="/tmp/x", max_rows=5, n=3)


@pytest.mark.slow
def test_sliced_split_end_to_end(tmp_path, texts, st_model):
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:60])]
    path = write_jsonl(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    proc = run_cli(
        "embed-hf", "--dataset", str(path), "--split", "train[10%:20%]", "--devices", "cpu",
        "--output-root", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    assert table.column("id").to_pylist() == [f"train-{i}" for i in range(6, 12)]
    assert cut_or_whole(table.column("text").to_pylist(), [r["text"] for r in rows[6:12]])
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine_rows(ours, st_model.encode(table.column("text").to_pylist())).min() >= 0.99999
    assert next(out.glob("embeddings/*/*/*")).name == "train.10pct..20pct"
    assert run_manifest(out)["dataset"]["split"] == "train[10%:20%]"

    proc = run_cli("embed-hf", "--dataset", str(path), "--split", "train+test", "--output-root", str(out))
    assert proc.returncode == 2 and "one split per run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- the original tool's command line, with a config file under it --------------------------------


@pytest.mark.slow
def test_original_command_line_with_a_config_file(tmp_path, texts, st_model):
    rows = _chats(texts, 40)
    path = write_jsonl(tmp_path / "wildchat.jsonl", rows)
    config = tmp_path / "run.toml"
    config.write_text('gpus = "all"\nn = 30\nrows-per-shard = 5\n')
    out = tmp_path / "out"
    proc = run_cli(
        "embed-hf", "--config", str(config), "--dataset", str(path), "--text-field", "conversation",
        "--extract-first-assistant", "--tokens-per-batch", "131072", "--rows-per-shard", "8192",
        "--device", "cpu", "--dtype", "float32", "--compile-mode", "max-autotune", "--max-rows", "9",
        "--attention", "eager", "--prefetch-batches", "2", "--output-root", str(out), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = run_manifest(out)
    cfg = manifest["config"]
    assert cfg["devices"] == ["cpu:0"] and cfg["n"] is None and cfg["max_rows"] == 9
    assert cfg["rows_per_shard"] == 8192 and cfg["attn_implementation"] == "eager"
    assert cfg["compile_mode"] == "max-autotune" and cfg["compile_model"] is False
    assert manifest["model"]["attn_implementation"] == "eager"
    assert manifest["sampling"]["method"] == "first"
    table = run_table(out)
    # The first 9 rows in dataset order; rows 3 and 7 have no assistant turn.
    assert table.column("id").to_pylist() == [f"train-{i}" for i in (0, 1, 2, 4, 5, 6, 8)]
    assert manifest["skipped"] == {"no_matching_turn": 2}
    stored = table.column("text").to_pylist()
    assert cut_or_whole(stored, [rows[i]["conversation"][1]["content"] for i in (0, 1, 2, 4, 5, 6, 8)])
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine_rows(ours, st_model.encode(stored)).min() >= 0.99999


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cpu", "--gpus", "0"], "give one of --device, --gpus or --devices"),
        (["--device", "tpu"], "--device must be cuda, cuda:N, cpu or auto"),
        (["--max-rows", "5", "--n", "3"], "give --max-rows or --n/--p, not both"),
        (["--max-rows", "0"], "--max-rows must be a positive number"),
        (["--prefetch-batches", "0"], "--prefetch-batches must be positive"),
    ],
)
def test_compat_option_mistakes_are_one_line(tmp_path, args, message):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}])
    proc = run_cli("embed-hf", "--dataset", str(path), "--output-root", str(tmp_path / "o"), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_embed_dataset_batch_size_is_inputs_per_request(tmp_path, texts):
    rows = [{"text": t} for t in texts[:50]]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    env = {"OPENAI_API_KEY": "sk-test-not-used"}
    small = run_cli(
        "embed-dataset", "--dataset", str(path), "--batch-size", "8", "--output-root", str(tmp_path), env=env
    )
    assert small.returncode == 0, small.stderr
    assert "requests:   7 (at most 8 inputs" in small.stdout  # 50 inputs, at most 8 per request
    proc = run_cli(
        "embed-dataset", "--dataset", str(path), "--batch-size", "0", "--output-root", str(tmp_path), env=env
    )
    assert proc.returncode == 2 and "--batch-size must be positive" in proc.stderr


def test_help_names_compatibility_options_and_exclusions():
    proc = run_cli("embed-hf", "--help")
    text = " ".join(proc.stdout.split())
    for option in ("--device", "--max-rows", "--compile-mode", "--prefetch-batches"):
        assert option in text
    assert text.count("Compatibility option") >= 4
    assert "--attention" in text and "Excludes --gpus, --devices" in text and "Excludes --n and --p" in text
    proc = run_cli("embed-dataset", "--help")
    assert "--batch-size" in proc.stdout and "Compatibility option" in " ".join(proc.stdout.split())
