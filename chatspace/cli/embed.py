"""`embed-hf` (local SentenceTransformer workers) and `embed-dataset` (the OpenAI embeddings API)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import click

from chatspace.cli.help import SectionedCommand
from chatspace.cli.options import (
    apply_config_file,
    build_run_config,
    config_option,
    data_options,
)
from chatspace.config import Mode, OpenAIConfig
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
    output = result.layout.output
    click.echo(f"  shards:   {plural(t['shards'], 'shard')} in {output.url(result.layout.embeddings_dir)}")
    click.echo(f"  manifest: {output.url(result.manifest_path)}")
    rows_per_s = stats.get("rows_per_wall_second")
    elapsed = m.get("timings", {}).get("elapsed_seconds")
    if elapsed:
        click.echo(
            f"  time:     {elapsed:.1f}s total"
            + (f", {rows_per_s:.1f} rows/s per worker" if rows_per_s else "")
        )


@contextlib.contextmanager
def _no_empty_root_left(root: str):
    """A run that fails before writing anything leaves no empty folders behind in a root it created."""
    from chatspace.store.root import is_url

    created = None if is_url(root) or os.path.exists(os.path.expanduser(root)) else os.path.expanduser(root)
    try:
        yield
    except BaseException:
        if created is not None:
            for folder, _, _ in sorted(os.walk(created), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only empty folders go
        raise


def _sentence_transformers_name(model: str | None) -> str | None:
    """A bare name that is no local folder (`all-MiniLM-L6-v2`) is the sentence-transformers model of
    that name, as SentenceTransformer(name) resolves it; so both spellings are one run."""
    if not model or "/" in model or model.startswith((".", "~")) or os.path.exists(model):
        return model
    return f"sentence-transformers/{model}"


@click.command("embed-hf", cls=SectionedCommand)
@data_options
@config_option("model", help="SentenceTransformer hub id or local path.")
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
@config_option("threads_per_worker", help="Torch threads per CPU worker (default: cores / workers).")
@config_option("executor", help="Spawned local processes, or tasks on a Ray cluster.")
@config_option("ray_address", help="With --executor ray: the cluster to join (default: start a local one).")
@config_option(
    "ray_workers",
    help="With --executor ray: at most this many workers (default: the whole cluster, one worker per GPU "
    "or per --threads-per-worker CPUs).",
)
@config_option("ray_device", help="With --executor ray: one GPU per worker, or --threads-per-worker CPUs.")
@config_option("dtype", help="Model precision (default: bfloat16 on CUDA, float32 on CPU).")
@config_option("embedding_dtype", help="Precision of the stored vectors.")
@config_option(
    "batch_size",
    help="Rows per batch (default: a padded-token budget, 16384 on CUDA, 2048 on CPU). --tokens-per-batch overrides it.",
)
@config_option("tokens_per_batch", help="Padded-token budget per batch (overrides --batch-size).")
@config_option(
    "bucket_min_tokens",
    help="Smallest length bucket (tokens); buckets grow ~10% each up to --bucket-max-tokens.",
)
@config_option(
    "bucket_max_tokens", help="Largest bucket = truncation length (default and cap: the model's maximum)."
)
@config_option(
    "compile_model", help="torch.compile with dynamic batch/length dimensions, warmed up before the run."
)
@config_option(
    "compile_mode",
    help="Compatibility option: torch.compile mode (default, reduce-overhead, max-autotune) used with "
    "--compile-model; without it, accepted and ignored.",
)
@config_option(
    "attn_implementation",
    "--attn-implementation",
    "--attention",
    "attn_implementation",
    help="Attention kernel: sdpa (default), flash_attention_2, eager. --attention: compatibility alias.",
)
@config_option(
    "backend",
    help="The transformer's runtime on the CPU: torch (default), or an ONNX export (made once, cached in the "
    "output root's cache/) run by onnx (ONNX Runtime) or openvino; same vectors within float rounding. "
    "Needs chatspace[cpu-backends].",
)
@config_option(
    "quantize",
    help="With --backend onnx: int8 weights (dynamic quantization): slightly different vectors "
    "(a run of its own).",
)
@config_option(
    "prefetch_batches",
    help="Compatibility option: chunks of rows each worker reads and tokenizes ahead of the model "
    "(default 3).",
)
@config_option("trust_remote_code", help="Allow the model repository's own code to run.")
@config_option(
    "prompt",
    help="Text put before every input, as SentenceTransformer.encode(prompt=...) does "
    '(e.g. "query: "; "" for none). Excludes --prompt-name.',
)
@config_option(
    "prompt_name",
    help="Use the model's named prompt (a key of its `prompts`, e.g. query or document). "
    "Default: the model's default_prompt_name, if it sets one. Excludes --prompt.",
)
@config_option("normalize", help="Store unit-length vectors (normalize_embeddings=True).")
@config_option(
    "truncate_dim",
    help="Keep the first N dimensions of every vector (Matryoshka models); with --normalize, "
    "normalized after truncation.",
)
@config_option("revision", help="The model's hub revision to load (branch, tag or commit hash).")
@click.pass_context
def embed_hf(ctx: click.Context, **params: Any) -> None:
    """Embed a dataset with a SentenceTransformer, one spawned worker per device."""
    from chatspace.hardware.devices import device_flags, resolve_devices

    params = apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    if params["executor"] == "ray":
        labels = ()  # the Ray executor places its workers itself, across the cluster
    else:
        gpus, devices = device_flags(params.get("gpus"), params.get("devices"), params.get("device"))
        labels = tuple(d.label for d in resolve_devices(gpus, devices))
    params["model"] = _sentence_transformers_name(params.get("model"))
    cfg = build_run_config(Mode.SENTENCE_TRANSFORMER, params, devices=labels)
    from chatspace.pool.supervisor import run_embedding

    with _no_empty_root_left(cfg.output.output_root):
        result = run_embedding(cfg)
    _print_run_summary(result)


@click.command("embed-dataset", cls=SectionedCommand)
@data_options
@click.option(
    "--model",
    default=None,
    help=f"Embedding model (default: $OPENAI_EMBED_MODEL, else {OpenAIConfig.default('model')}).",
)
@config_option("dimensions", help="Ask the API for vectors of this size (text-embedding-3 models).")
@config_option("execute", help="Really call the API (the default is a dry run that sends nothing).")
@config_option("concurrency", help="Requests in flight.")
@config_option(
    "request_max_inputs",
    "--batch-size",
    help="Compatibility option: most inputs per request (the API's own cap is 2048).",
)
@config_option("max_retries", help="Retries of a request that hit 429, 5xx or a timeout (with backoff).")
@config_option("on_long", help="What to do with inputs over the model's token limit.")
@click.pass_context
def embed_dataset(ctx: click.Context, **params: Any) -> None:
    """Embed a dataset through the OpenAI embeddings API (or an OpenAI-compatible server)."""
    from chatspace.encoders.openai.settings import load_dotenv

    params = apply_config_file(ctx, params)
    _setup_console_logging(params["verbose"])
    load_dotenv()
    model = params.get("model") or os.environ.get("OPENAI_EMBED_MODEL") or OpenAIConfig.default("model")
    cfg = build_run_config(
        Mode.OPENAI, params, model=model, devices=("api:0",), request_max_inputs=params["batch_size"]
    )
    if not cfg.encoder.execute:
        from chatspace.encoders.openai.dry_run import dry_run
        from chatspace.store.layout import RunLayout, ensure_writable_output

        # Even a dry run writes (the line index of a JSONL file, a converted CSV) under the root.
        report = dry_run(cfg, RunLayout.for_config(cfg, ensure_writable_output(cfg.output.output_root)))
        click.echo(report.render())
        return
    from chatspace.encoders.openai.settings import openai_settings
    from chatspace.pool.supervisor import run_embedding

    openai_settings(require_key=True)  # one clear line now if the key is missing
    _print_run_summary(run_embedding(cfg))
