"""`embed-hf` (local SentenceTransformer workers) and `embed-dataset` (the OpenAI embeddings API)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from chatspace.cli.help import SectionedCommand
from chatspace.cli.options import apply_config_file, choice_option, common_config, data_options
from chatspace.config import DEFAULT_MODEL, DEFAULT_OPENAI_MODEL, RunConfig
from chatspace.errors import UsageError
from chatspace.logs import plural


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


@click.command("embed-hf", cls=SectionedCommand)
@data_options
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
@choice_option(
    "--executor",
    choices=["local", "ray"],
    default="local",
    help="Spawned local processes, or tasks on a Ray cluster.",
)
@click.option("--ray-address", help="With --executor ray: the cluster to join (default: start a local one).")
@click.option("--ray-workers", type=int, help="With --executor ray: number of workers.")
@choice_option(
    "--ray-device",
    choices=["cuda", "cpu"],
    default="cuda",
    help="With --executor ray: one GPU per worker, or --threads-per-worker CPUs.",
)
@choice_option(
    "--dtype",
    choices=["float32", "float16", "bfloat16"],
    help="Model precision (default: bfloat16 on CUDA, float32 on CPU).",
)
@choice_option(
    "--embedding-dtype",
    choices=["float32", "float16"],
    default="float32",
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
    from chatspace.hardware.devices import device_flags, resolve_devices

    params = apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    if params["executor"] == "ray":
        if not params.get("ray_workers") or params["ray_workers"] <= 0:
            raise UsageError("--executor ray needs --ray-workers N")
        labels = tuple(f"ray-{params['ray_device']}:{i}" for i in range(params["ray_workers"]))
    else:
        gpus, devices = device_flags(params.get("gpus"), params.get("devices"), params.get("device"))
        labels = tuple(d.label for d in resolve_devices(gpus, devices))
    cfg = RunConfig(
        **common_config(params),
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


@click.command("embed-dataset", cls=SectionedCommand)
@data_options
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
@choice_option(
    "--on-long",
    choices=["truncate", "skip"],
    default="truncate",
    help="What to do with inputs over the model's token limit.",
)
@click.pass_context
def embed_dataset(ctx: click.Context, **params: Any) -> None:
    """Embed a dataset through the OpenAI embeddings API (or an OpenAI-compatible server)."""
    from chatspace.encoders.openai.settings import load_dotenv

    params = apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    load_dotenv()
    model = params.get("model") or os.environ.get("OPENAI_EMBED_MODEL") or DEFAULT_OPENAI_MODEL
    cfg = RunConfig(
        **common_config(params),
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
        from chatspace.encoders.openai.dry_run import dry_run
        from chatspace.store.layout import RunLayout, ensure_writable_root

        # Even a dry run writes (the line index of a JSONL file, a converted CSV) under the root.
        report = dry_run(cfg, RunLayout.for_config(cfg, ensure_writable_root(cfg.output_root)))
        click.echo(report.render())
        return
    from chatspace.encoders.openai.settings import openai_settings
    from chatspace.pool.supervisor import run_embedding

    openai_settings(require_key=True)  # one clear line now if the key is missing
    _print_run_summary(run_embedding(cfg))
