"""Commands over finished output: `verify`, `runs` and `sql`."""

from __future__ import annotations

from typing import Any

import click

from chatspace.cli.options import choice_option, run_filter_options
from chatspace.config import default_output_root
from chatspace.errors import ChatspaceError, UsageError


@click.command("verify")
@click.argument("target", required=False)
def verify_cmd(target: str | None) -> None:
    """Re-read every shard under an output root (default: $CHATSPACE_ROOT, else /workspace), or of
    one manifest, and check it."""
    from pathlib import Path

    from chatspace.store.root import is_url
    from chatspace.store.verify import verify

    target = target or default_output_root()
    if not is_url(target) and not Path(target).exists():
        raise UsageError(f"{target} does not exist")

    manifests, problems = verify(target)
    if not manifests:
        raise ChatspaceError(f"no chatspace manifest found under {target}")
    from chatspace.query.ann import check_indexes

    problems += check_indexes(target)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise ChatspaceError(f"{len(problems)} problem(s) in {len(manifests)} run(s)")
    click.echo(f"ok: {len(manifests)} run(s) verified")


@click.command("runs")
@click.argument("root", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run (all manifest facts listed).")
def runs_cmd(root: str | None, as_json: bool) -> None:
    """List the runs an output root holds: model, dataset, split, rows, dimension, status, when."""
    from chatspace.store.reader import format_runs, list_runs

    root = root or default_output_root()
    runs = list_runs(root)
    if as_json:
        import orjson

        for run in runs:
            click.echo(orjson.dumps(run).decode())
    elif not runs:
        click.echo(f"no chatspace runs under {root}")
    else:
        click.echo(format_runs(runs))


@click.command("sql")
@click.argument("root")
@click.argument("query")
@run_filter_options()
@choice_option(
    "--format",
    "output_format",
    choices=["table", "csv", "json"],
    default="table",
    help="A table for reading, CSV, or one JSON object per row.",
)
def sql_cmd(root: str, query: str, output_format: str, **filters: Any) -> None:
    """Run SQL (duckdb) over a view `embeddings` of the runs under ROOT, `embedding` typed FLOAT[dim]
    (so array_cosine_similarity works as is) and `metadata` typed JSON."""
    from chatspace.store.sql import run_sql

    for line in run_sql(root, query, output_format, **filters):
        click.echo(line)
