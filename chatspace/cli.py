"""The `chatspace` command line: parse, build a RunConfig, call one library function.

Nothing heavy is imported here at module level: `chatspace --help` must not load torch, transformers,
sentence_transformers or datasets.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from typing import Any

import click

from chatspace import __version__
from chatspace.cli_help import SectionedCommand
from chatspace.config import DEFAULT_MODEL, DEFAULT_OPENAI_MODEL, EXTRACT_MODES, RunConfig, load_config_file
from chatspace.errors import ENVIRONMENT_ERRNOS, ChatspaceError, UsageError, describe_os_error
from chatspace.logs import plural
from chatspace.maps.cli import register as register_map_commands
from chatspace.redact import redact

# --- shared options ---------------------------------------------------------------------------------


def _data_options(f):
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
        click.option(
            "--source",
            type=click.Choice(["auto", "huggingface", "local"]),
            default="auto",
            show_default=True,
            help="Force hub or local; auto decides by whether the path exists.",
        ),
        click.option(
            "--text-field",
            default="text",
            show_default=True,
            help="Column holding the text or the conversation.",
        ),
        click.option(
            "--extract",
            type=click.Choice(EXTRACT_MODES),
            default="text",
            show_default=True,
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


def _apply_config_file(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
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


def _common_config(params: dict[str, Any]) -> dict[str, Any]:
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
        "output_root": params.get("output_root") or os.environ.get("CHATSPACE_ROOT") or "/workspace",
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


def _setup_console_logging(verbose: bool) -> None:
    # A run replaces this console handler with its own (bar-aware, plus the log file) while it runs.
    from chatspace.redact import RedactingFilter

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    if not verbose:
        from chatspace.logs import quiet_libraries

        quiet_libraries()


def _print_run_summary(result) -> None:
    m = result.manifest
    t = m["totals"]
    skipped = ", ".join(f"{k}: {v}" for k, v in m["skipped"].items()) or "none"
    stats = m.get("stats", {})
    click.echo(
        f"run {m['run_id']} {m['status']}: {plural(t['rows'], 'row')} embedded, "
        f"{t['skipped_rows']:,} skipped ({skipped})"
    )
    click.echo(f"  shards:   {t['shards']} in {result.layout.embeddings_dir}")
    click.echo(f"  manifest: {result.manifest_path}")
    rows_per_s = stats.get("rows_per_wall_second")
    elapsed = m.get("timings", {}).get("elapsed_seconds")
    if elapsed:
        click.echo(
            f"  time:     {elapsed:.1f}s total"
            + (f", {rows_per_s:.1f} rows/s per worker" if rows_per_s else "")
        )


# --- commands -----------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="chatspace")
def cli() -> None:
    """Sample a dataset reproducibly, embed it, and keep the vectors with their provenance.

    Any option can also be set as CHATSPACE_{COMMAND}_{OPTION}, e.g. CHATSPACE_EMBED_HF_MODEL.
    """


@cli.command("embed-hf", cls=SectionedCommand)
@_data_options
@click.option(
    "--model", default=DEFAULT_MODEL, show_default=True, help="SentenceTransformer hub id or local path."
)
@click.option(
    "--gpus", help="GPU indices (0,1,2,3) or 'all': one worker per GPU. Excludes --devices, --device."
)
@click.option(
    "--devices", help="Explicit devices, e.g. cpu,cpu for two CPU workers. Excludes --gpus, --device."
)
@click.option(
    "--device",
    help="Compatibility option: cuda (every visible GPU), cuda:N, cpu, or auto (the GPUs, else the CPU). "
    "Excludes --gpus, --devices.",
)
@click.option(
    "--threads-per-worker", type=int, help="Torch threads per CPU worker (default: cores / workers)."
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Spawned local processes, or tasks on a Ray cluster.",
)
@click.option("--ray-address", help="With --executor ray: the cluster to join (default: start a local one).")
@click.option("--ray-workers", type=int, help="With --executor ray: number of workers.")
@click.option(
    "--ray-device",
    type=click.Choice(["cuda", "cpu"]),
    default="cuda",
    show_default=True,
    help="With --executor ray: one GPU per worker, or --threads-per-worker CPUs.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    help="Model precision (default: bfloat16 on CUDA, float32 on CPU).",
)
@click.option(
    "--embedding-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Precision of the stored vectors.",
)
@click.option(
    "--batch-size",
    type=int,
    help="Rows per batch (default: a padded-token budget, 16384 on CUDA, 2048 on CPU). --tokens-per-batch overrides it.",
)
@click.option("--tokens-per-batch", type=int, help="Padded-token budget per batch (overrides --batch-size).")
@click.option(
    "--bucket-min-tokens",
    type=int,
    default=8,
    show_default=True,
    help="Smallest length bucket (tokens); buckets grow ~10% each up to --bucket-max-tokens.",
)
@click.option(
    "--bucket-max-tokens",
    type=int,
    help="Largest bucket = truncation length (default and cap: the model's maximum).",
)
@click.option(
    "--compile-model",
    is_flag=True,
    help="torch.compile with dynamic batch/length dimensions, warmed up before the run.",
)
@click.option(
    "--compile-mode",
    help="Compatibility option: torch.compile mode (default, reduce-overhead, max-autotune) used with "
    "--compile-model; without it, accepted and ignored.",
)
@click.option(
    "--attn-implementation",
    "--attention",
    "attn_implementation",
    help="Attention kernel: sdpa (default), flash_attention_2, eager. --attention: compatibility alias.",
)
@click.option(
    "--prefetch-batches",
    type=int,
    help="Compatibility option: chunks of rows each worker reads and tokenizes ahead of the model "
    "(default 3).",
)
@click.option("--trust-remote-code", is_flag=True, help="Allow the model repository's own code to run.")
@click.option(
    "--prompt",
    help="Text put before every input, as SentenceTransformer.encode(prompt=...) does "
    '(e.g. "query: "; "" for none). Excludes --prompt-name.',
)
@click.option(
    "--prompt-name",
    help="Use the model's named prompt (a key of its `prompts`, e.g. query or document). "
    "Default: the model's default_prompt_name, if it sets one. Excludes --prompt.",
)
@click.option("--normalize", is_flag=True, help="Store unit-length vectors (normalize_embeddings=True).")
@click.option(
    "--truncate-dim",
    type=int,
    help="Keep the first N dimensions of every vector (Matryoshka models); with --normalize, "
    "normalized after truncation.",
)
@click.option("--revision", help="The model's hub revision to load (branch, tag or commit hash).")
@click.pass_context
def embed_hf(ctx: click.Context, **params: Any) -> None:
    """Embed a dataset with a SentenceTransformer, one spawned worker per device."""
    from chatspace.devices import device_flags, resolve_devices

    params = _apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    if params["executor"] == "ray":
        if not params.get("ray_workers") or params["ray_workers"] <= 0:
            raise UsageError("--executor ray needs --ray-workers N")
        labels = tuple(f"ray-{params['ray_device']}:{i}" for i in range(params["ray_workers"]))
    else:
        gpus, devices = device_flags(params.get("gpus"), params.get("devices"), params.get("device"))
        labels = tuple(d.label for d in resolve_devices(gpus, devices))
    cfg = RunConfig(
        **_common_config(params),
        mode="hf",
        model=params["model"],
        devices=labels,
        threads_per_worker=params.get("threads_per_worker"),
        executor=params["executor"],
        ray_address=params.get("ray_address"),
        dtype=params.get("dtype"),
        embedding_dtype=params["embedding_dtype"],
        trust_remote_code=params["trust_remote_code"],
        batch_size=params.get("batch_size"),
        tokens_per_batch=params.get("tokens_per_batch"),
        bucket_min_tokens=params["bucket_min_tokens"],
        bucket_max_tokens=params.get("bucket_max_tokens"),
        compile_model=params["compile_model"],
        compile_mode=params.get("compile_mode"),
        prefetch_batches=params.get("prefetch_batches"),
        attn_implementation=params.get("attn_implementation"),
        prompt=params.get("prompt"),
        prompt_name=params.get("prompt_name"),
        normalize=params["normalize"],
        truncate_dim=params.get("truncate_dim"),
        revision=params.get("revision"),
    )
    from chatspace.pool.supervisor import run_embedding

    _print_run_summary(run_embedding(cfg))


@cli.command("embed-dataset", cls=SectionedCommand)
@_data_options
@click.option(
    "--model",
    default=None,
    help=f"Embedding model (default: $OPENAI_EMBED_MODEL, else {DEFAULT_OPENAI_MODEL}).",
)
@click.option(
    "--dimensions", type=int, help="Ask the API for vectors of this size (text-embedding-3 models)."
)
@click.option(
    "--execute", is_flag=True, help="Really call the API (the default is a dry run that sends nothing)."
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="Requests in flight.")
@click.option(
    "--batch-size",
    type=int,
    default=2048,
    show_default=True,
    help="Compatibility option: most inputs per request (the API's own cap is 2048).",
)
@click.option(
    "--max-retries",
    type=int,
    default=6,
    show_default=True,
    help="Retries of a request that hit 429, 5xx or a timeout (with backoff).",
)
@click.option(
    "--on-long",
    type=click.Choice(["truncate", "skip"]),
    default="truncate",
    show_default=True,
    help="What to do with inputs over the model's token limit.",
)
@click.pass_context
def embed_dataset(ctx: click.Context, **params: Any) -> None:
    """Embed a dataset through the OpenAI embeddings API (or an OpenAI-compatible server)."""
    from chatspace.openai_env import load_dotenv

    params = _apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    load_dotenv()
    model = params.get("model") or os.environ.get("OPENAI_EMBED_MODEL") or DEFAULT_OPENAI_MODEL
    cfg = RunConfig(
        **_common_config(params),
        mode="openai",
        model=model,
        devices=("api:0",),
        dimensions=params.get("dimensions"),
        execute=params["execute"],
        concurrency=params["concurrency"],
        max_retries=params["max_retries"],
        on_long=params["on_long"],
        request_max_inputs=params["batch_size"],
    )
    if not cfg.execute:
        from chatspace.openai_dry_run import dry_run
        from chatspace.store.layout import ensure_writable_root

        # Even a dry run writes (the line index of a JSONL file, a converted CSV) under the root.
        report = dry_run(cfg, ensure_writable_root(cfg.output_root) / "datasets")
        click.echo(report.render())
        return
    from chatspace.openai_env import openai_settings
    from chatspace.pool.supervisor import run_embedding

    openai_settings(require_key=True)  # one clear line now if the key is missing
    _print_run_summary(run_embedding(cfg))


@cli.command(
    "describe-dataset",
    epilog="""\b
Examples:
  chatspace describe-dataset --name chatspace/resources/demo.jsonl --output-root demo-output
  chatspace describe-dataset --name path/to/parquet-folder --split test
  chatspace describe-dataset --name HuggingFaceFW/fineweb --subset sample-10BT""",
)
@click.option("--name", "--dataset", "name", required=True, help="Hub dataset id or local path.")
@click.option("--subset", help="Hub configuration (e.g. sample-10BT).")
@click.option("--split", help="Only this split (default: every split).")
@click.option(
    "--source",
    type=click.Choice(["auto", "huggingface", "local"]),
    default="auto",
    show_default=True,
    help="Force hub or local; auto decides by whether the path exists.",
)
@click.option("--output-root", help="Root of all output (default: $CHATSPACE_ROOT, else /workspace).")
@click.option(
    "--sample-rows", type=int, default=200, show_default=True, help="Rows read for text-field statistics."
)
def describe_dataset(**params: Any) -> None:
    """Describe a dataset without downloading it: splits, rows, files, features, fields to embed."""
    from chatspace.describe import download_dataset as run

    params["output_root"] = params.get("output_root") or os.environ.get("CHATSPACE_ROOT") or "/workspace"
    click.echo(run(**params).render())


# The command's first name, kept working (hidden from the listing).
_download_alias = copy.copy(describe_dataset)
_download_alias.name, _download_alias.hidden = "download-dataset", True
cli.add_command(_download_alias)


@cli.command("verify")
@click.argument("target", required=False)
def verify_cmd(target: str | None) -> None:
    """Re-read every shard under an output root (default: $CHATSPACE_ROOT, else /workspace), or of
    one manifest, and check it."""
    from pathlib import Path

    from chatspace.store.verify import verify

    target = target or os.environ.get("CHATSPACE_ROOT") or "/workspace"
    if not Path(target).exists():
        raise UsageError(f"{target} does not exist")

    manifests, problems = verify(target)
    if not manifests:
        raise ChatspaceError(f"no chatspace manifest found under {target}")
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise ChatspaceError(f"{len(problems)} problem(s) in {len(manifests)} run(s)")
    click.echo(f"ok: {len(manifests)} run(s) verified")


@cli.command("runs")
@click.argument("root", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run (all manifest facts listed).")
def runs_cmd(root: str | None, as_json: bool) -> None:
    """List the runs an output root holds: model, dataset, split, rows, dimension, status, when."""
    from chatspace.store.reader import format_runs, list_runs

    root = root or os.environ.get("CHATSPACE_ROOT") or "/workspace"
    runs = list_runs(root)
    if as_json:
        import orjson

        for run in runs:
            click.echo(orjson.dumps(run).decode())
    elif not runs:
        click.echo(f"no chatspace runs under {root}")
    else:
        click.echo(format_runs(runs))


@cli.command("sql")
@click.argument("root")
@click.argument("query")
@click.option("--model", help="Only runs of this model (hub id, folder name or its last part).")
@click.option("--dataset", help="Only runs of this dataset (hub id, local path or label).")
@click.option("--split", help="Only runs of this split.")
@click.option("--subset", help="Only runs of this hub configuration.")
@click.option("--run-id", help="Only this run.")
@click.option("--include-incomplete", is_flag=True, help="Also read the finished shards of unfinished runs.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="A table for reading, CSV, or one JSON object per row.",
)
def sql_cmd(root: str, query: str, output_format: str, **filters: Any) -> None:
    """Run SQL (duckdb) over a view `embeddings` of the runs under ROOT, `embedding` typed FLOAT[dim]
    (so array_cosine_similarity works as is) and `metadata` typed JSON."""
    from chatspace.store.sql import run_sql

    for line in run_sql(root, query, output_format, **filters):
        click.echo(line)


register_map_commands(cli)  # reduce-embeddings, visualize-embeddings

# One line each in `chatspace --help`, whole (click would cut the docstrings' first sentences off).
_SUMMARIES = {
    "embed-hf": "Embed with local models, one worker per device.",
    "embed-dataset": "Embed via the OpenAI API (dry run unless --execute).",
    "describe-dataset": "Describe a dataset before embedding it (no download).",
    "verify": "Check every shard against its manifest.",
    "runs": "List the runs an output root holds.",
    "sql": "SQL (duckdb) over the embeddings as FLOAT[dim].",
    "reduce-embeddings": "Project runs to 2-D/3-D (UMAP, t-SNE, PCA) for a map.",
    "visualize-embeddings": "An interactive map of the points: HTML, server, PNG.",
}
for _name, _summary in _SUMMARIES.items():
    cli.commands[_name].short_help = _summary

# Real commands at the end of each command's help (`\b` keeps click from rewrapping them).
_EXAMPLES = {
    "embed-hf": [
        "chatspace embed-hf --dataset chatspace/resources/demo.jsonl --id-field id --devices cpu --output-root out",
        "chatspace embed-hf --dataset HuggingFaceFW/fineweb --subset sample-10BT --n 100000 --gpus all",
        "chatspace embed-hf --dataset chats.jsonl --text-field conversation --extract first-assistant",
    ],
    "embed-dataset": [
        "chatspace embed-dataset --dataset chatspace/resources/demo.jsonl --n 100       # dry run: cost",
        "chatspace embed-dataset --dataset my.jsonl --model text-embedding-3-small --execute",
    ],
    "verify": [
        "chatspace verify out",
        "chatspace verify out/indexes/sentence-transformers__all-MiniLM-L6-v2/demo/train   # one run",
    ],
    "runs": ["chatspace runs out", "chatspace runs out --json"],
    "sql": [
        'chatspace sql out "select split, count(*) from embeddings group by split"',
        'chatspace sql out "select id, array_cosine_similarity(embedding, (select embedding from embeddings '
        "where id = 'demo-0001')) as score from embeddings order by score desc limit 5\"",
    ],
}
for _name, _lines in _EXAMPLES.items():
    if not cli.commands[_name].epilog:
        cli.commands[_name].epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in _lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and an exit code, never a traceback."""
    if argv is None:  # the real command line, not a caller in the same process
        sys.excepthook = _redacted_excepthook
    try:
        # Every option can also come from CHATSPACE_{COMMAND}_{OPTION}, e.g. CHATSPACE_EMBED_HF_MODEL.
        cli.main(args=argv, prog_name="chatspace", standalone_mode=False, auto_envvar_prefix="CHATSPACE")
    except click.exceptions.Abort:
        click.echo("chatspace: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ChatspaceError as e:
        click.echo(redact(f"chatspace: error: {e}"), err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("chatspace: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        # The file system said no (full, read-only, a file where a folder belongs): not a bug.
        click.echo(redact(f"chatspace: error: {describe_os_error(e)}"), err=True)
        sys.exit(1)
    sys.exit(0)


def _redacted_excepthook(kind, value, tb) -> None:
    """A bug's traceback is wanted, but never with a credential in it."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


if __name__ == "__main__":
    main()
