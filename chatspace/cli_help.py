"""`--help` of the embedding commands in sections (data, sampling, model, devices, performance, output,
run control) instead of forty options in one flat list."""

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
