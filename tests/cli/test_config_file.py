"""`--config FILE` (TOML or YAML) on embed-hf and embed-dataset: long option names with dashes or
underscores, the command line overriding the file, one-line errors, the effective config in the
manifest, and the shipped configs/ files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chatspace import cli
from chatspace.config import RunConfig
from chatspace.store.reader import list_runs, load_embeddings
from tests.helpers import REPO, run_cli, write_jsonl


class _Captured(Exception):
    pass


@pytest.fixture
def data(tmp_path, texts) -> Path:
    return write_jsonl(
        tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:60])]
    )


def _effective(monkeypatch, *args: str, command: str = "embed-hf") -> RunConfig:
    """The RunConfig the CLI builds, caught where it is handed to the run (nothing is embedded)."""
    got: dict[str, RunConfig] = {}

    def capture(cfg, *_a, **_k):
        got["cfg"] = cfg
        raise _Captured

    if command == "embed-hf":
        import chatspace.pool.supervisor as supervisor

        monkeypatch.setattr(supervisor, "run_embedding", capture)
    else:
        import chatspace.encoders.openai.dry_run as dry
        import chatspace.encoders.openai.settings as openai_env

        monkeypatch.setattr(dry, "dry_run", capture)
        monkeypatch.setattr(openai_env, "load_dotenv", lambda *a, **k: None)
    with pytest.raises(_Captured):
        cli.main([command, *args])
    return got["cfg"]


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    return err


TOML = """
dataset = "{data}"
text-field = "text"         # dashes, as on the command line
id_field = "id"             # or underscores
n = 40
seed = 7
split = "train"
rows-per-shard = 16
devices = "cpu"
no_progress = true
tokens_per_batch = 4096
dtype = "float32"
output_root = "{out}"
"""

YAML = """
dataset: {data}
text-field: text
id_field: id
n: 40
seed: 7
rows-per-shard: 16
devices: [cpu, cpu]       # a list is the option's comma-separated form
subset: ~                 # null: leave the default
extract_first_assistant: false
output_root: {out}
"""


def test_toml_values_apply(monkeypatch, tmp_path, data):
    path = tmp_path / "run.toml"
    path.write_text(TOML.format(data=data, out=tmp_path / "out"))
    cfg = _effective(monkeypatch, "--config", str(path))
    data_part, sampling = cfg.data, cfg.sampling
    assert (data_part.dataset, data_part.text_field, data_part.id_field) == (str(data), "text", "id")
    assert (sampling.n, sampling.seed) == (40, 7)
    assert (cfg.output.rows_per_shard, cfg.encoder.tokens_per_batch, cfg.encoder.dtype) == (
        16,
        4096,
        "float32",
    )
    assert cfg.execution.devices == ("cpu:0",) and cfg.output.progress is False
    assert cfg.config_file == str(path.resolve())


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_values_apply(monkeypatch, tmp_path, data, suffix):
    path = tmp_path / f"run{suffix}"
    path.write_text(YAML.format(data=data, out=tmp_path / "out"))
    cfg = _effective(monkeypatch, "--config", str(path))
    data_part, sampling = cfg.data, cfg.sampling
    assert (data_part.dataset, data_part.text_field, data_part.id_field) == (str(data), "text", "id")
    assert (sampling.n, sampling.seed) == (40, 7)
    assert (
        cfg.execution.devices == ("cpu:0", "cpu:1") and cfg.data.subset is None and cfg.data.extract == "text"
    )
    assert cfg.config_file == str(path.resolve())


def test_the_command_line_overrides_the_file(monkeypatch, tmp_path, data):
    path = tmp_path / "run.toml"
    path.write_text(TOML.format(data=data, out=tmp_path / "out"))
    cfg = _effective(
        monkeypatch, "--config", str(path), "--n", "5", "--seed", "42", "--extract-first-assistant",
        "--text-field", "body",
    )  # fmt: skip
    # --seed 42 is also the default: given on the command line, it still wins over the file's 7.
    assert (cfg.sampling.n, cfg.sampling.seed, cfg.data.extract, cfg.data.text_field) == (
        5,
        42,
        "first-assistant",
        "body",
    )
    assert cfg.output.rows_per_shard == 16 and cfg.data.id_field == "id"  # the rest still from the file


def test_embed_dataset_takes_a_config_too(monkeypatch, tmp_path, data):
    path = tmp_path / "openai.yaml"
    path.write_text(f"dataset: {data}\nmodel: text-embedding-3-large\ndimensions: 256\nconcurrency: 2\n")
    cfg = _effective(monkeypatch, "--config", str(path), "--concurrency", "8", command="embed-dataset")
    assert (cfg.mode, cfg.encoder.model, cfg.encoder.dimensions, cfg.encoder.concurrency) == (
        "openai",
        "text-embedding-3-large",
        256,
        8,
    )
    assert cfg.config_file == str(path.resolve())


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", 'dataset = "x"\nbogus = 1\nconfig = "y"\n', "unknown option(s): bogus, config"),
        ("table.toml", 'dataset = "x"\n[embed]\nn = 1\n', "unknown option(s): embed"),
        ("type.toml", 'dataset = "x"\nn = "many"\n', "n: 'many' is not a valid integer"),
        ("choice.yaml", "dataset: x\nextract: second-user\n", "extract: 'second-user' is not one of"),
        ("list.toml", 'dataset = "x"\nn = [1, 2]\n', "n: expected one value, not a list"),
        ("broken.toml", 'dataset = "x\n', "cannot parse config file"),
        ("broken.yaml", "dataset: [x\n", "cannot parse config file"),
        ("list.yaml", "- dataset\n", "must hold a table of options"),
        ("gpus.toml", 'dataset = "x"\ngpus = "all"\n', "unknown option(s): gpus"),  # embed-hf only
    ],
)
def test_bad_config_files_are_one_line_usage_errors(capsys, tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    command = "embed-dataset" if name == "gpus.toml" else "embed-hf"
    err = _fails(capsys, command, "--config", str(path))
    assert message in err and err.startswith("chatspace: error:")


def test_missing_config_file(capsys, tmp_path):
    assert "config file not found" in _fails(capsys, "embed-hf", "--config", str(tmp_path / "nope.toml"))


def test_the_shipped_configs(monkeypatch, tmp_path):
    import chatspace.hardware.devices as devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: ["0", "1"])  # the only fake: no GPUs here
    monkeypatch.setenv("CHATSPACE_ROOT", str(tmp_path))
    monkeypatch.chdir(REPO / "tests")  # paths in a config are relative to its own folder, not here

    fineweb = _effective(monkeypatch, "--config", "../configs/fineweb-sample-10BT-qwen3.toml")
    assert (fineweb.data.dataset, fineweb.data.subset, fineweb.data.split) == (
        "HuggingFaceFW/fineweb",
        "sample-10BT",
        "train",
    )
    assert (fineweb.encoder.model, fineweb.encoder.tokens_per_batch, fineweb.encoder.dtype) == (
        "Qwen/Qwen3-Embedding-0.6B",
        131072,
        "bfloat16",
    )
    assert fineweb.encoder.compile_model is True and fineweb.execution.devices == ("cuda:0", "cuda:1")
    assert fineweb.output.output_root == str(tmp_path)

    wildchat = _effective(monkeypatch, "--config", "../configs/wildchat-first-assistant.toml")
    assert (
        wildchat.data.dataset,
        wildchat.data.text_field,
        wildchat.data.extract,
        wildchat.data.id_field,
    ) == (
        "allenai/WildChat-4.8M",
        "conversation",
        "first-assistant",
        "conversation_hash",
    )
    assert (
        wildchat.encoder.model,
        wildchat.encoder.tokens_per_batch,
        wildchat.encoder.dtype,
        wildchat.encoder.compile_model,
    ) == (
        "Qwen/Qwen3-Embedding-0.6B",
        131072,
        "bfloat16",
        True,
    )
    assert wildchat.execution.devices == ("cuda:0", "cuda:1")

    demo = _effective(monkeypatch, "--config", "../configs/demo.toml")
    assert (demo.data.dataset, demo.output.output_root, demo.execution.devices) == (
        str(REPO / "chatspace/resources/demo.jsonl"),
        str(REPO / "demo-output"),
        ("cpu:0",),
    )
    assert (demo.data.id_field, demo.output.rows_per_shard, demo.output.progress) == ("id", 100, True)
    assert demo.encoder.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert (REPO / demo.data.dataset).is_file()


@pytest.mark.slow
def test_a_toml_run_with_an_override_records_the_effective_config(tmp_path, data):
    out = tmp_path / "out"
    path = tmp_path / "run.toml"
    path.write_text(TOML.format(data=data, out=out))
    proc = run_cli("embed-hf", "--config", str(path), "--n", "30", "--rows-per-shard", "20")
    assert proc.returncode == 0, proc.stderr
    manifest = orjson.loads(next(out.glob("indexes/*/*/*/manifest.json")).read_bytes())
    cfg = manifest["config"]
    assert cfg["config_file"] == str(path.resolve())
    assert (cfg["n"], cfg["rows_per_shard"]) == (30, 20)  # from the command line
    assert (cfg["seed"], cfg["id_field"], cfg["tokens_per_batch"], cfg["progress"]) == (7, "id", 4096, False)
    assert cfg["dataset"] == str(data) and cfg["output_root"] == str(out)
    assert manifest["command"][-6:] == ["--config", str(path), "--n", "30", "--rows-per-shard", "20"]
    assert manifest["totals"]["rows"] == 30 and manifest["totals"]["shards"] == 2
    assert load_embeddings(out).num_rows == 30
    (run,) = list_runs(out)
    assert run["config_file"] == str(path.resolve()) and run["rows"] == 30


@pytest.mark.parametrize(
    ("file_line", "args", "check"),
    [
        ('gpus = "all"', ["--devices", "cpu"], lambda c: c.execution.devices == ("cpu:0",)),
        ('gpus = "all"', ["--device", "cpu"], lambda c: c.execution.devices == ("cpu:0",)),
        ('devices = "cpu,cpu"', ["--gpus", "1"], lambda c: c.execution.devices == ("cuda:1",)),
        ("n = 40", ["--p", "0.5"], lambda c: (c.sampling.n, c.sampling.p) == (None, 0.5)),
        ("p = 0.5", ["--max-rows", "9"], lambda c: (c.sampling.p, c.sampling.max_rows) == (None, 9)),
        ("overwrite = true", ["--resume"], lambda c: (c.output.overwrite, c.output.resume) == (False, True)),
        (
            'prompt = "q: "',
            ["--prompt-name", "query"],
            lambda c: (c.encoder.prompt, c.encoder.prompt_name) == (None, "query"),
        ),
    ],
)
def test_the_command_line_wins_over_excluding_options_in_the_file(
    monkeypatch, tmp_path, data, file_line, args, check
):
    """A file's option gives way to a command-line option that excludes it, instead of a conflict."""
    import chatspace.hardware.devices as devices

    monkeypatch.setattr(devices, "visible_gpus", lambda: ["0", "1"])  # the only fake: no GPUs here
    path = tmp_path / "run.toml"
    path.write_text(f'dataset = "{data}"\n{file_line}\n')
    cfg = _effective(monkeypatch, "--config", str(path), *args)
    assert check(cfg), cfg
