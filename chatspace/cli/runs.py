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

    from chatspace.logs import plural
    from chatspace.store.root import is_url
    from chatspace.store.verify import unfinished_runs, verify

    target = target or default_output_root()
    if not is_url(target) and not Path(target).exists():
        raise UsageError(f"{target} does not exist")

    manifests, problems = verify(target)
    if not manifests:
        raise ChatspaceError(f"no chatspace manifest found under {target}")
    from chatspace.query.ann import check_indexes

    problems += check_indexes(target)
    unfinished = unfinished_runs(target)
    for line in problems:
        click.echo(line, err=True)
    if unfinished:  # not damage: readers leave them out; `runs rm` or `--resume` deals with them
        click.echo(f"not complete ({len(unfinished)}; readers leave them out):", err=True)
        for line in unfinished:
            click.echo(f"  {line}", err=True)
    if problems:
        raise ChatspaceError(f"{plural(len(problems), 'problem')} in {plural(len(manifests), 'run')}")
    click.echo(
        f"ok: {len(manifests)} run(s) verified" + (f" ({len(unfinished)} not complete)" if unfinished else "")
    )


class _RunsGroup(click.Group):
    """`chatspace runs [ROOT]` lists runs (as it always did); `runs rm` and `runs prune` remove them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("runs", cls=_RunsGroup)
def runs_cmd() -> None:
    """List the runs an output root holds (`chatspace runs [ROOT]`), or remove some (`rm`, `prune`)."""


@runs_cmd.command("list")
@click.argument("root", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run (all manifest facts listed).")
def list_cmd(root: str | None, as_json: bool) -> None:
    """List the runs an output root holds: model, dataset, split, rows, dimension, status, when."""
    from chatspace.store.reader import format_runs, list_runs

    root = root or default_output_root()
    _check_root(root)
    runs = list_runs(root)
    if as_json:
        import orjson

        for run in runs:
            click.echo(orjson.dumps(run).decode())
    elif not runs:
        click.echo(f"no chatspace runs under {root}")
    else:
        click.echo(format_runs(runs))


def _check_root(root: str) -> None:
    """An output root is a folder (or a URL); a file is one line, not an `unreadable` run."""
    from pathlib import Path

    from chatspace.store.root import is_url

    if is_url(root):
        return
    path = Path(root).expanduser()
    if not path.exists():
        raise UsageError(f"output root {root} does not exist")
    if not path.is_dir() and path.name != "manifest.json":
        raise UsageError(f"{root} is a file, not an output root (a folder holding indexes/ and embeddings/)")


@runs_cmd.command("rm")
@click.argument("root")
@click.argument("runs", nargs=-1)
@run_filter_options("With no RUN: ", incomplete=False)
def rm_cmd(root: str, runs: tuple[str, ...], **filters: Any) -> None:
    """Remove runs (manifest, unit records and shards) from ROOT: each RUN is a run id, a run name or a
    run folder as `chatspace runs` shows them; or every run the filters select. A run a live supervisor
    is writing is refused."""
    from chatspace.store.removal import remove_run, select_for_removal
    from chatspace.store.root import OutputRoot

    _check_root(root)
    if not runs and all(v is None for v in filters.values()):
        raise UsageError("name the runs to remove (run id, run name or folder), or select them with filters")
    output = OutputRoot(root)
    for run in select_for_removal(root, runs, filters):
        remove_run(output, run)
        click.echo(f"removed {run.describe()}")


@runs_cmd.command("prune")
@click.argument("root", required=False)
@click.option("--failed", is_flag=True, help="Remove every failed or interrupted run (required: say it).")
def prune_cmd(root: str | None, failed: bool) -> None:
    """Remove the runs that did not finish (failed, interrupted) from ROOT; runs still running stay."""
    from chatspace.store.removal import remove_run, unfinished_runs
    from chatspace.store.root import OutputRoot

    if not failed:
        raise UsageError("say what to prune: --failed (every failed or interrupted run)")
    root = root or default_output_root()
    _check_root(root)
    output = OutputRoot(root)
    removed = 0
    for run in unfinished_runs(root):
        remove_run(output, run)
        click.echo(f"removed {run.describe()}")
        removed += 1
    if not removed:
        click.echo(f"no failed or interrupted runs under {root}")


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
