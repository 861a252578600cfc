"""Options the embedding commands share, derived from the config parts, and how --config and the flags
become one RunConfig."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chatspace.config import RunConfig, load_config_file, part_of
from chatspace.config.base import field_choices, field_default, field_type, option_name
from chatspace.errors import UsageError


def config_option(name: str, *param_decls: str, help: str, part: type | None = None, **attrs: Any) -> Any:
    """A click option for one field of an options dataclass (by default the run config part that holds
    `name`), its type, default and choices taken from there, so they are written once; `attrs` refine
    it (a click.IntRange for a bounded number)."""
    part = part or part_of(name)
    decls = param_decls or (option_name(name),)
    value_type, default, choices = (
        field_type(part, name),
        field_default(part, name),
        field_choices(part, name),
    )
    if value_type is bool:
        return click.option(*decls, is_flag=True, default=default, help=help, **attrs)
    if choices:
        return choice_option(*decls, choices=choices, default=default, help=help)
    attrs.setdefault("type", None if value_type is str else value_type)
    return click.option(*decls, default=default, show_default=default is not None, help=help, **attrs)


# The options every embedding command takes, in --help order: a config field's help, or an option of
# the command line's own.
SHARED_OPTIONS: dict[str, str | Callable] = {
    "config_file": click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="TOML or YAML file of options (long names); the command line overrides it.",
    ),
    "dataset": "Hugging Face dataset id, or a local .parquet/.jsonl/.json/.csv file or folder (incl. save_to_disk folders).",
    "subset": "Hub configuration (e.g. sample-10BT).",
    "split": "Split to read; a `datasets` slice such as train[:1000] or train[10%:20%] reads part of it.",
    "source": "Force hub or local; auto decides by whether the path exists.",
    "text_field": "Column holding the text or the conversation.",
    "extract": "Plain text, or which turn(s) of a conversation to embed.",
    "extract_first_assistant": click.option(
        "--extract-first-assistant", is_flag=True, help="Same as --extract first-assistant."
    ),
    "roles": "each-turn / all-turns: only these roles' messages, e.g. user,assistant "
    "(human = user, gpt = assistant; also system, tool).",
    "long_text": "Texts over the model's token limit: truncate (keep the first tokens), chunk (one row per "
    "window of the limit, id {id}#{k}) or mean (one row, the token-weighted mean of its chunks).",
    "chunk_overlap": "Tokens consecutive chunks share (--long-text chunk or mean).",
    "id_field": "Column to use as row id (default: a stable id from the split and row index).",
    "n": "Sample exactly N rows uniformly without replacement. Excludes --p.",
    "p": "Keep each row independently with probability P. Excludes --n.",
    "max_rows": "Compatibility option: only the first N rows, in dataset order (quick tests). "
    "Excludes --n and --p.",
    "seed": "Seed of the sample (--n / --p).",
    "output_root": "Root of all output: a folder or a URL such as s3://bucket/prefix (default: "
    "$CHATSPACE_ROOT, else /workspace).",
    "rows_per_shard": "Rows per work unit and per output shard.",
    "run_id": "Name of this run (default: timestamp + random suffix).",
    "run_name": "Folder name for this run under the split, instead of the text field and extraction "
    "(keeps several runs of one dataset and model side by side).",
    "resume": "Finish a run of the same config that stopped early. Excludes --overwrite.",
    "overwrite": "Replace an existing run of this model/dataset/split. Excludes --resume.",
    "no_progress": click.option(
        "--no-progress", is_flag=True, help="Plain log lines instead of a progress bar."
    ),
    "stall_timeout": "Stop the run when a worker finishes no chunk for this many seconds (0: never).",
    "max_worker_restarts": "Replace a lost worker (killed, crashed) this many times per device; "
    "0: stop the run instead.",
    "verbose": click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
}


def data_options(f):
    """Add SHARED_OPTIONS to a command."""
    for name, option in reversed(SHARED_OPTIONS.items()):
        f = config_option(name, help=option)(f) if isinstance(option, str) else option(f)
    return f


# Options that exclude each other: one given on the command line overrides the others from a config file.
EXCLUSIVE_OPTIONS = (
    ("gpus", "devices", "device"),
    ("n", "p", "max_rows"),
    ("resume", "overwrite"),
    ("prompt", "prompt_name"),
    ("extract", "extract_first_assistant"),
)


#: Options naming a path: in a --config file, relative to the file's own folder.
PATH_OPTIONS = ("dataset", "output_root")


def env_var(ctx: click.Context, name: str) -> str:
    """The environment variable that sets option `name` of this command (CHATSPACE_EMBED_HF_N)."""
    return f"{ctx.auto_envvar_prefix or 'CHATSPACE'}_{name.upper()}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _settle_environment(ctx: click.Context, params: dict[str, Any]) -> set[str]:
    """The command line wins over the environment, mutually exclusive options included: a variable
    whose option (or one it excludes) was given on the command line is dropped. Two variables that
    exclude each other are one line naming both. Returns the options the environment set."""
    source = ctx.get_parameter_source
    command_line = {n for n in params if source(n) == click.core.ParameterSource.COMMANDLINE}
    environment = {n for n in params if source(n) == click.core.ParameterSource.ENVIRONMENT}
    known = {p.name: p for p in ctx.command.params}
    if {"extract", "extract_first_assistant"} <= command_line and params["extract"] != "first-assistant":
        raise UsageError(f"give --extract {params['extract']} or --extract-first-assistant, not both")
    for group in EXCLUSIVE_OPTIONS:
        group_env = [n for n in group if n in environment and params.get(n) not in (None, False)]
        if command_line & set(group):
            for name in group_env:
                if name not in command_line:
                    params[name] = _default_of(known[name]) if name in known else None
                    environment.discard(name)
        elif len(group_env) > 1:
            names = " and ".join(f"{env_var(ctx, n)} ({_flag(n)})" for n in group_env)
            raise UsageError(f"{names} exclude each other; unset one")
    return environment


def _default_of(param: click.Parameter) -> Any:
    """An option's own default (None where click keeps an "unset" marker)."""
    value = param.default() if callable(param.default) else param.default
    return None if type(value).__name__ == "Sentinel" else value


def apply_config_file(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """Where each option comes from: the command line, else the environment, else --config, else the
    default; for mutually exclusive options too (a config's `gpus = "all"` gives way to `--devices cpu`
    or CHATSPACE_EMBED_HF_DEVICES, and `CHATSPACE_EMBED_HF_N=50` to `--p 0.05`). Relative paths in a
    config file are relative to the file's folder.
    """
    environment = _settle_environment(ctx, params)
    path = params.pop("config_file", None)
    if not path:
        return params
    values = load_config_file(path)
    known = {p.name: p for p in ctx.command.params}
    unknown = sorted(k for k in values if k not in known or k == "config_file")
    if unknown:
        raise UsageError(f"{path}: unknown option(s): {', '.join(unknown)}")
    default = (click.core.ParameterSource.DEFAULT, None)
    given = {name for name in known if ctx.get_parameter_source(name) not in default} | environment
    overridden = set(given)
    for group in EXCLUSIVE_OPTIONS:
        if given & set(group):
            overridden |= set(group)
    folder = Path(path).expanduser().resolve().parent
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
            if name in PATH_OPTIONS and isinstance(value, str):
                value = _relative_to(folder, name, value, str(values.get("source") or "auto"))
            try:
                params[name] = param.type_cast_value(ctx, value)
            except click.BadParameter as e:
                raise UsageError(f"{path}: {name}: {e.message}") from None
    params["_config_file"] = os.path.abspath(path)
    return params


def _relative_to(folder: Path, name: str, value: str, source: str) -> str:
    """A relative local path in a config file, taken from the file's folder (a Hub id or a URL as is)."""
    from chatspace.data.sources import is_local
    from chatspace.store.root import is_url

    if is_url(value) or Path(value).expanduser().is_absolute() or value.startswith("~"):
        return value
    if name == "dataset" and not (is_local(value, source) or (folder / value).exists()):
        return value  # a Hub id
    return os.path.normpath(folder / value)


def build_run_config(mode: str, params: dict[str, Any], **resolved: Any) -> RunConfig:
    """The RunConfig of a command's options: those named like a config field pass as they are; `resolved`
    holds what the command worked out itself (device labels, the model named by the environment)."""
    if not params.get("dataset"):
        raise UsageError("--dataset is required (or set `dataset` in --config)")
    fields = RunConfig.option_names(mode)
    options = {name: value for name, value in params.items() if name in fields}
    if params.get("extract_first_assistant"):
        options["extract"] = "first-assistant"
    options["progress"] = not params["no_progress"]
    options["config_file"] = params.get("_config_file")
    return RunConfig.from_options(mode=mode, **{**options, **resolved})


def choice_option(*param_decls: str, choices, default: Any = None, help: str) -> Any:
    """A click option that takes one of `choices`; a default, when there is one, is shown in --help."""
    return click.option(
        *param_decls,
        type=click.Choice(choices),
        default=default,
        show_default=default is not None,
        help=help,
    )


# What selects runs under an output root (`sql`, and `reduce-embeddings` given roots).
RUN_FILTERS = {
    "--model": "runs of this model (hub id, folder name or its last part)",
    "--dataset": "runs of this dataset (hub id, local path or label)",
    "--split": "runs of this split",
    "--subset": "runs of this hub configuration",
    "--run-id": "this run",
    "--run-name": "this run folder (`train__NAME`, as `chatspace runs` shows) or --run-name",
}


def run_filter_options(scope: str = "", incomplete: bool = True):
    """Add RUN_FILTERS (and --include-incomplete, for readers) to a command; `scope` opens each help line."""

    def add(f):
        if incomplete:
            f = click.option(
                "--include-incomplete", is_flag=True, help="Also read the finished shards of unfinished runs."
            )(f)
        for flag, selects in reversed(RUN_FILTERS.items()):
            text = f"{scope}only {selects}." if scope else f"Only {selects}."
            f = click.option(flag, help=text)(f)
        return f

    return add
