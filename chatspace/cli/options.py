"""Options the embedding commands share, and how --config and the flags become one RunConfig's keywords."""

from __future__ import annotations

import os
from typing import Any

import click

from chatspace.config import EXTRACT_MODES, default_output_root, load_config_file
from chatspace.errors import UsageError


def data_options(f):
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="TOML or YAML file of options (long names); the command line overrides it.",
        ),
        click.option(
            "--dataset",
            help="Hugging Face dataset id, or a local .parquet/.jsonl/.json/.csv file or folder (incl. save_to_disk folders).",
        ),
        click.option("--subset", help="Hub configuration (e.g. sample-10BT)."),
        click.option(
            "--split",
            default="train",
            show_default=True,
            help="Split to read; a `datasets` slice such as train[:1000] or train[10%:20%] reads part of it.",
        ),
        choice_option(
            "--source",
            choices=["auto", "huggingface", "local"],
            default="auto",
            help="Force hub or local; auto decides by whether the path exists.",
        ),
        click.option(
            "--text-field",
            default="text",
            show_default=True,
            help="Column holding the text or the conversation.",
        ),
        choice_option(
            "--extract",
            choices=EXTRACT_MODES,
            default="text",
            help="Plain text, or which turn(s) of a conversation to embed.",
        ),
        click.option("--extract-first-assistant", is_flag=True, help="Same as --extract first-assistant."),
        click.option(
            "--id-field", help="Column to use as row id (default: a stable id from the split and row index)."
        ),
        click.option(
            "--n", "n", type=int, help="Sample exactly N rows uniformly without replacement. Excludes --p."
        ),
        click.option(
            "--p", "p", type=float, help="Keep each row independently with probability P. Excludes --n."
        ),
        click.option(
            "--max-rows",
            type=int,
            help="Compatibility option: only the first N rows, in dataset order (quick tests). "
            "Excludes --n and --p.",
        ),
        click.option(
            "--seed", type=int, default=42, show_default=True, help="Seed of the sample (--n / --p)."
        ),
        click.option("--output-root", help="Root of all output (default: $CHATSPACE_ROOT, else /workspace)."),
        click.option(
            "--rows-per-shard",
            type=int,
            default=10_000,
            show_default=True,
            help="Rows per work unit and per output shard.",
        ),
        click.option("--run-id", help="Name of this run (default: timestamp + random suffix)."),
        click.option(
            "--run-name",
            help="Folder name for this run under the split, instead of the text field and extraction "
            "(keeps several runs of one dataset and model side by side).",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Finish a run of the same config that stopped early. Excludes --overwrite.",
        ),
        click.option(
            "--overwrite",
            is_flag=True,
            help="Replace an existing run of this model/dataset/split. Excludes --resume.",
        ),
        click.option("--no-progress", is_flag=True, help="Plain log lines instead of a progress bar."),
        click.option(
            "--stall-timeout",
            type=float,
            default=1800.0,
            show_default=True,
            help="Stop the run when a worker finishes no chunk for this many seconds (0: never).",
        ),
        click.option(
            "--max-worker-restarts",
            type=int,
            default=2,
            show_default=True,
            help="Replace a lost worker (killed, crashed) this many times per device; 0: stop the run instead.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


# Options that exclude each other: one given on the command line overrides the others from a config file.
EXCLUSIVE_OPTIONS = (
    ("gpus", "devices", "device"),
    ("n", "p", "max_rows"),
    ("resume", "overwrite"),
    ("prompt", "prompt_name"),
    ("extract", "extract_first_assistant"),
)


def apply_config_file(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """Options from --config fill in whatever the command line left at its default.

    The command line wins: a config value is dropped when the command line set that option, or an
    option that excludes it (a config's `gpus = "all"` gives way to `--devices cpu`).
    """
    path = params.pop("config_file", None)
    if not path:
        return params
    values = load_config_file(path)
    known = {p.name: p for p in ctx.command.params}
    unknown = sorted(k for k in values if k not in known or k == "config_file")
    if unknown:
        raise UsageError(f"{path}: unknown option(s): {', '.join(unknown)}")
    default = (click.core.ParameterSource.DEFAULT, None)
    on_command_line = {name for name in known if ctx.get_parameter_source(name) not in default}
    overridden = set(on_command_line)
    for group in EXCLUSIVE_OPTIONS:
        if on_command_line & set(group):
            overridden |= set(group)
    for name, value in values.items():
        if value is None:  # `key: ~` in YAML: leave the option at its default
            continue
        if name not in overridden:
            param = known[name]
            if isinstance(value, dict):
                raise UsageError(f"{path}: {name}: expected a value, not a table")
            if isinstance(value, list):
                # gpus = [0, 1] / devices = ["cpu", "cpu"]: the comma-separated form of the option.
                if not isinstance(param.type, click.types.StringParamType):
                    raise UsageError(f"{path}: {name}: expected one value, not a list")
                value = ",".join(str(v) for v in value)
            try:
                params[name] = param.type_cast_value(ctx, value)
            except click.BadParameter as e:
                raise UsageError(f"{path}: {name}: {e.message}") from None
    params["_config_file"] = os.path.abspath(path)
    return params


def common_config(params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("dataset"):
        raise UsageError("--dataset is required (or set `dataset` in --config)")
    extract = params["extract"]
    if params.get("extract_first_assistant"):
        extract = "first-assistant"
    return {
        "dataset": params["dataset"],
        "subset": params.get("subset"),
        "split": params["split"],
        "source": params["source"],
        "text_field": params["text_field"],
        "extract": extract,
        "id_field": params.get("id_field"),
        "n": params.get("n"),
        "p": params.get("p"),
        "max_rows": params.get("max_rows"),
        "seed": params["seed"],
        "output_root": params.get("output_root") or default_output_root(),
        "rows_per_shard": params["rows_per_shard"],
        "run_id": params.get("run_id"),
        "run_name": params.get("run_name"),
        "resume": params["resume"],
        "overwrite": params["overwrite"],
        "progress": not params["no_progress"],
        "stall_timeout": params["stall_timeout"],
        "max_worker_restarts": params["max_worker_restarts"],
        "config_file": params.get("_config_file"),
    }


def choice_option(*param_decls: str, choices, default: Any = None, help: str) -> Any:
    """A click option that takes one of `choices`; a default, when there is one, is shown in --help."""
    return click.option(
        *param_decls,
        type=click.Choice(choices),
        default=default,
        show_default=default is not None,
        help=help,
    )
