"""The run configuration in parts: the output hash is the one runs were made with, every part checks
itself, and exactly the identity fields change the hash."""

from __future__ import annotations

import dataclasses

import click
import pytest

from chatspace.cli import cli
from chatspace.cli.options import build_run_config
from chatspace.config import (
    DataConfig,
    ExecutorConfig,
    OpenAIConfig,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    SentenceTransformerConfig,
    check_run_name,
)
from chatspace.errors import UsageError
from chatspace.store.layout import slug

# Options and the output_hash() the flat RunConfig gave them before it was split into parts: a run made
# then must still be found (and resumed) by the same options now.
RECORDED_HASHES = [
    ({"dataset": "demo.jsonl"}, "f3e972abdb90097d"),
    (
        {
            "dataset": "org/chats",
            "subset": "default",
            "split": "train[:1000]",
            "source": "huggingface",
            "text_field": "conversation",
            "extract": "first-assistant",
            "id_field": "id",
            "n": 500,
            "seed": 7,
            "rows_per_shard": 128,
            "embedding_dtype": "float16",
            "bucket_max_tokens": 256,
            "trust_remote_code": True,
        },
        "20f96262b764aea3",
    ),
    (
        {
            "dataset": "demo.jsonl",
            "p": 0.25,
            "prompt": "query: ",
            "normalize": True,
            "truncate_dim": 128,
            "revision": "abc123",
            "model": "local/model",
        },
        "3f28c17dc2b3dbdb",
    ),
    ({"dataset": "demo.jsonl", "max_rows": 10, "prompt_name": "query"}, "37f59eb30f1c44ec"),
    (
        {
            "dataset": "demo.jsonl",
            "mode": "openai",
            "model": "text-embedding-3-small",
            "devices": ("api:0",),
            "dimensions": 256,
            "on_long": "skip",
            "concurrency": 8,
            "request_max_inputs": 100,
        },
        "22a65991fdd01841",
    ),
    (
        {
            "dataset": "demo.jsonl",
            "devices": ("cpu:0", "cpu:1"),
            "dtype": "bfloat16",
            "batch_size": 64,
            "tokens_per_batch": 4096,
            "compile_model": True,
            "attn_implementation": "eager",
            "stall_timeout": 5.0,
            "executor": "ray",
            "threads_per_worker": 2,
            "output_root": "/tmp/x",
            "run_id": "r1",
            "resume": True,
        },
        "f3e972abdb90097d",  # tuning and placement only: the same rows as the defaults
    ),
]


@pytest.mark.parametrize(("options", "recorded"), RECORDED_HASHES)
def test_output_hash_is_the_one_existing_runs_recorded(options, recorded):
    assert RunConfig.from_options(**options).output_hash() == recorded


@pytest.mark.parametrize(("options", "recorded"), RECORDED_HASHES)
def test_a_manifests_recorded_config_rebuilds_the_same_run(options, recorded):
    cfg = RunConfig.from_options(**options)
    recorded_config = cfg.to_dict()
    # Flat, every option of both encoder kinds, as the manifest has always recorded it.
    assert {"mode", "dataset", "model", "devices", "dimensions", "batch_size", "config_file"} <= set(
        recorded_config
    )
    assert isinstance(recorded_config["devices"], list)
    again = RunConfig.from_options(**recorded_config)
    assert again == cfg and again.output_hash() == recorded


# A second value for every field of every part; the identity fields must change the hash, no other.
OTHER_VALUES = {
    DataConfig: {
        "dataset": "other.jsonl",
        "subset": "s",
        "split": "test",
        "source": "local",
        "text_field": "body",
        "extract": "all-turns",
        "id_field": "id",
        "long_text": "chunk",
        "chunk_overlap": 8,
        "roles": "assistant",
    },
    SamplingConfig: {"n": 3, "p": 0.5, "max_rows": 4, "seed": 1, "sampler": 2},
    OutputConfig: {
        "output_root": "/tmp/elsewhere",
        "run_id": "r2",
        "run_name": "v2",
        "resume": True,
        "overwrite": True,
        "rows_per_shard": 7,
        "embedding_dtype": "float16",
        "progress": False,
    },
    SentenceTransformerConfig: {
        "model": "org/other",
        "dtype": "float16",
        "prompt": "q: ",
        "prompt_name": "query",
        "normalize": True,
        "truncate_dim": 64,
        "revision": "main",
        "trust_remote_code": True,
        "batch_size": 8,
        "tokens_per_batch": 512,
        "bucket_min_tokens": 16,
        "bucket_max_tokens": 128,
        "compile_model": True,
        "compile_mode": "max-autotune",
        "prefetch_batches": 1,
        "attn_implementation": "eager",
        "backend": "onnx",
        "quantize": "int8",
    },
    OpenAIConfig: {
        "model": "text-embedding-3-large",
        "dimensions": 64,
        "execute": True,
        "concurrency": 1,
        "max_retries": 0,
        "on_long": "skip",
        "request_max_inputs": 10,
        "request_max_tokens": 1000,
    },
    ExecutorConfig: {
        "executor": "ray",
        "devices": ("cpu:0", "cpu:1"),
        "threads_per_worker": 1,
        "stall_timeout": 0.0,
        "max_worker_restarts": 0,
        "ray_address": "auto",
        "ray_workers": 2,
        "ray_device": "cpu",
    },
}


@pytest.mark.parametrize("part", list(OTHER_VALUES), ids=lambda p: p.__name__)
def test_exactly_the_identity_fields_change_the_hash(part):
    mode = "openai" if part is OpenAIConfig else "hf"
    base = RunConfig.from_options(mode=mode, dataset="d.jsonl", output_root="/tmp/x")
    assert set(OTHER_VALUES[part]) == set(part.field_names()), "a value for every field"
    for name, value in OTHER_VALUES[part].items():
        if name == "quantize":  # int8 weights come with the ONNX backend, which alone keeps the hash
            base = base.replace(backend="onnx")
        if name == "chunk_overlap":  # overlap applies to chunks only
            base = base.replace(long_text="chunk")
        if name == "roles":  # roles apply to conversations' turns only
            base = base.replace(extract="each-turn")
        if name == "sampler":  # the sampler's version applies to --n only
            base = base.replace(n=3)
        changed = base.replace(**{name: value})
        assert changed.option_value(name) == value
        differs = changed.output_hash() != base.output_hash()
        assert differs == (name in part.identity_fields()), name
        assert (name in RunConfig.OUTPUT_FIELDS) == (name in part.identity_fields()), name


@pytest.mark.parametrize(
    ("part", "options", "message"),
    [
        (DataConfig, {"dataset": ""}, "--dataset is required"),
        (DataConfig, {"dataset": "d", "split": "train[a:b]"}, "--split 'train\\[a:b\\]'"),
        (DataConfig, {"dataset": "d", "source": "s3"}, "--source must be auto, huggingface or local"),
        (DataConfig, {"dataset": "d\x00"}, "--dataset must be text without NUL"),
        (SamplingConfig, {"n": 1, "p": 0.5}, "give --n or --p, not both"),
        (SamplingConfig, {"p": 1.5}, "--p must be a probability"),
        (OutputConfig, {"resume": True, "overwrite": True}, "give --resume or --overwrite, not both"),
        (OutputConfig, {"run_id": "../x"}, "--run-id '../x' is not a valid run id"),
        (OutputConfig, {"run_name": "a__b"}, "--run-name 'a__b'"),
        (OutputConfig, {"embedding_dtype": "int8"}, "--embedding-dtype must be float32 or float16"),
        (SentenceTransformerConfig, {"prompt": "", "prompt_name": "q"}, "give --prompt or --prompt-name"),
        (SentenceTransformerConfig, {"bucket_min_tokens": 0}, "bucket sizes must satisfy"),
        (SentenceTransformerConfig, {"truncate_dim": 0}, "--truncate-dim must be a positive number"),
        (SentenceTransformerConfig, {"model": " "}, "--model must not be empty"),
        (SentenceTransformerConfig, {"quantize": "int8"}, "--quantize int8 needs --backend onnx"),
        (SentenceTransformerConfig, {"backend": "onnx", "dtype": "bfloat16"}, "--backend onnx runs float32"),
        (SentenceTransformerConfig, {"backend": "gpu"}, "--backend must be torch, onnx or openvino"),
        (
            SentenceTransformerConfig,
            {"backend": "openvino", "compile_model": True},
            "--compile-model compiles torch models",
        ),
        (OpenAIConfig, {"request_max_inputs": 0}, "--batch-size must be positive"),
        (OpenAIConfig, {"on_long": "drop"}, "--on-long must be truncate or skip"),
        (ExecutorConfig, {"devices": ()}, "no devices to run on"),
        (ExecutorConfig, {"stall_timeout": -1.0}, "--stall-timeout must be >= 0"),
    ],
)
def test_each_part_refuses_its_own_mistakes(part, options, message):
    with pytest.raises(UsageError, match=message):
        part(**options)


def test_an_option_of_the_other_encoder_is_refused_unless_at_its_default():
    with pytest.raises(UsageError, match="dimensions does not apply to mode 'hf'"):
        RunConfig.from_options(dataset="d", dimensions=64)
    with pytest.raises(UsageError, match="batch_size does not apply to mode 'openai'"):
        RunConfig.from_options(dataset="d", mode="openai", batch_size=8)
    cfg = RunConfig.from_options(dataset="d", dimensions=None, on_long="truncate")
    assert (
        cfg.mode == "hf"
        and cfg.option_value("dimensions") is None
        and cfg.encoder == SentenceTransformerConfig()
    )


def test_parts_are_what_a_run_is_built_from():
    cfg = RunConfig(
        data=DataConfig(dataset="d.jsonl", split="train[:10]"),
        encoder=OpenAIConfig(dimensions=8),
        output=OutputConfig(output_root="/tmp/x"),
    )
    assert cfg.mode == "openai" and cfg.encoder.model == "text-embedding-3-small"
    assert cfg.base_split == "train" and cfg.sampling.seed == 42 and cfg.execution.devices == ("cpu:0",)
    assert cfg == RunConfig.from_options(
        mode="openai", dataset="d.jsonl", split="train[:10]", dimensions=8, output_root="/tmp/x"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.dataset = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match="RunConfig.sampling must be a SamplingConfig"):
        RunConfig(data=cfg.data, sampling=cfg.output)  # type: ignore[arg-type]


def test_command_line_defaults_are_the_parts_defaults(monkeypatch, tmp_path):
    """An embed-hf given only a dataset builds the same config as the parts' own defaults."""
    monkeypatch.setenv("CHATSPACE_ROOT", str(tmp_path))
    command = cli.commands["embed-hf"]
    params = command.make_context("embed-hf", ["--dataset", "d.jsonl"]).params
    cfg = build_run_config("hf", params, devices=("cpu:0",))
    assert cfg == RunConfig.from_options(dataset="d.jsonl")
    assert cfg.output.output_root == str(tmp_path)
    for param in command.params:
        if isinstance(param.type, click.Choice) and param.name in RunConfig.option_names("hf"):
            part = next(
                p
                for p in (DataConfig, OutputConfig, SentenceTransformerConfig, ExecutorConfig)
                if param.name in p.field_names()
            )
            assert tuple(param.type.choices) == part.choices(param.name)


@pytest.mark.parametrize(
    "name",
    ["v2", "a.b", "x+y=z", "-", "a" * 120, "a" * 121, "_a", "a_", ".a", "a.", "a__b", "a/b", "a b", "é"],
)
def test_a_run_name_is_accepted_exactly_when_it_is_one_path_component_as_written(name):
    as_written = slug(name) == name and "__" not in name
    if as_written:
        check_run_name(name)
    else:
        with pytest.raises(UsageError, match="--run-name"):
            check_run_name(name)
