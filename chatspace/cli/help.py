"""Help text: the embedding commands' options in sections (data, sampling, model, devices, performance,
output, run control) instead of forty in one flat list, and each command's summary and examples."""

from __future__ import annotations

import click

SECTIONS: dict[str, tuple[str, ...]] = {
    "Data": (
        "config_file",
        "dataset",
        "subset",
        "split",
        "source",
        "text_field",
        "extract",
        "extract_first_assistant",
        "roles",
        "long_text",
        "chunk_overlap",
        "id_field",
    ),
    "Sampling": ("n", "p", "seed"),
    "Model": (
        "model",
        "revision",
        "trust_remote_code",
        "dtype",
        "embedding_dtype",
        "prompt",
        "prompt_name",
        "normalize",
        "truncate_dim",
        "dimensions",
        "on_long",
    ),
    "Devices": (
        "gpus",
        "devices",
        "threads_per_worker",
        "executor",
        "ray_address",
        "ray_workers",
        "ray_device",
    ),
    "Performance": (
        "batch_size",
        "tokens_per_batch",
        "bucket_min_tokens",
        "bucket_max_tokens",
        "compile_model",
        "attn_implementation",
        "backend",
        "quantize",
        "concurrency",
        "max_retries",
    ),
    "Output": ("output_root", "rows_per_shard", "run_id", "run_name"),
    "Compatibility (the original tool's flags)": ("device", "max_rows", "compile_mode", "prefetch_batches"),
    "Run control": (
        "execute",
        "resume",
        "overwrite",
        "no_progress",
        "stall_timeout",
        "max_worker_restarts",
        "verbose",
    ),
}
_SECTION_OF = {name: section for section, names in SECTIONS.items() for name in names}


class SectionedCommand(click.Command):
    """A click command whose options are listed under SECTIONS' headings (any other under "Other")."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {}
        help_option = self.get_help_option(ctx)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                section = (
                    "Run control" if param is help_option else _SECTION_OF.get(param.name or "", "Other")
                )
                rows.setdefault(section, []).append(record)
        for section in [*SECTIONS, "Other"]:
            if rows.get(section):
                with formatter.section(section):
                    formatter.write_dl(rows[section])


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
    "runs": [
        "chatspace runs out",
        "chatspace runs out --json",
        "chatspace runs rm out 20261206T052224Z-809d8d      # one run, by run id, run name or folder",
        "chatspace runs prune out --failed                   # every failed or interrupted run",
    ],
    "reduce-embeddings": [
        "chatspace reduce-embeddings --embedding-dirs out --method umap --output maps/coords.parquet",
        "chatspace reduce-embeddings --embedding-dirs out --run-name train --method pca --max-samples 5000 "
        "--output maps/train.parquet",
    ],
    "visualize-embeddings": [
        "chatspace visualize-embeddings --input maps/coords.parquet --output maps/map.html",
        "chatspace visualize-embeddings --input maps/coords.parquet --png maps/map.png",
        "chatspace visualize-embeddings --input maps/coords.parquet --port 8050      # serve it",
    ],
    "sql": [
        'chatspace sql out "select split, count(*) from embeddings group by split"',
        'chatspace sql out "select id, array_cosine_similarity(embedding, (select embedding from embeddings '
        "where id = 'demo-0001')) as score from embeddings order by score desc limit 5\"",
    ],
}


def describe_commands(group: click.Group) -> None:
    """Give the group's commands their one-line summaries and, where they have none, example epilogs."""
    for name, summary in _SUMMARIES.items():
        group.commands[name].short_help = summary
    for name, lines in _EXAMPLES.items():
        if not group.commands[name].epilog:
            group.commands[name].epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
