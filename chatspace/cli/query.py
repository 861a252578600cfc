"""Commands that ask the vectors: `search`, `index`, `near-duplicates` and `cluster`.

Only click is imported here; numpy, faiss, torch and scikit-learn load when a command runs. The
commands read a run root (local or `s3://`) and select runs as `sql` and `reduce-embeddings` do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from chatspace.cli.options import RUN_FILTERS, choice_option, run_filter_options
from chatspace.errors import UsageError

QUERY_EXTRA_HINT = "pip install 'chatspace[query]'"
# Extraction filters, added here unless the shared run filters already carry them.
_EXTRACTION_FILTERS = {
    "--text-field": "Only runs that embedded this text field.",
    "--extract": "Only runs of this extraction (text, first-user, ...).",
    "--run-name": "Only runs given this --run-name.",
}
_FILTER_NAMES = ("model", "dataset", "split", "subset", "run_id", "text_field", "extract", "run_name")


def selection_options(f):
    """The run filters (--model, --dataset, --split, ...) and the extraction ones."""
    for flag, text in reversed(_EXTRACTION_FILTERS.items()):
        if flag not in RUN_FILTERS:
            f = click.option(flag, help=text)(f)
    return run_filter_options()(f)


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    """Pop the selection options out of `params`, as keyword arguments of the library calls."""
    chosen = {name: params.pop(name, None) for name in _FILTER_NAMES}
    chosen["include_incomplete"] = params.pop("include_incomplete", False)
    return {k: v for k, v in chosen.items() if v not in (None, False)}


def _need(*modules: str, hint: str = QUERY_EXTRA_HINT) -> None:
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise UsageError(f"this command needs {', '.join(missing)}: {hint}")


def _progress(total: int, what: str, disabled: bool):
    """A tqdm bar on stderr (off with --no-progress or when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", desc=what, disable=disabled or not sys.stderr.isatty(), leave=False)


def _quiet_model_loading() -> None:
    import os

    from chatspace.logs import quiet_libraries

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    quiet_libraries()


def _examples(*lines: str) -> str:
    """An epilog of real commands (`\b` keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _read_queries(texts: tuple[str, ...], queries_file: str | None) -> list[str]:
    queries = list(texts)
    if queries_file:
        try:
            lines = Path(queries_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--queries {queries_file}: cannot read it ({e})") from None
        queries += [line for line in lines if line.strip()]
    if not queries:
        raise UsageError("give a query text, or --queries FILE with one query a line")
    return queries


# --- search -------------------------------------------------------------------------------------------


@click.command(
    "search",
    short_help="The rows nearest to a text, with the run's own model.",
    epilog=_examples(
        'chatspace search demo-output "how do I read a file line by line" -k 5',
        "chatspace search s3://bucket/out --dataset chats --queries questions.txt --format json",
    ),
)
@click.argument("root")
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results per query.")
@click.option(
    "--queries", "queries_file", type=click.Path(dir_okay=False), help="A file of queries, one a line."
)
@choice_option(
    "--format",
    "output_format",
    choices=["table", "json", "csv", "parquet"],
    default="table",
    help="A table for reading; a JSON list; CSV; or Parquet (needs --output).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Write the results here instead of stdout."
)
@click.option(
    "--prompt-name", help="The model's named prompt for the queries (default: `query` where defined)."
)
@click.option("--prompt", help="Text put before every query instead of a named prompt.")
@click.option("--exact", is_flag=True, help="Compare with every vector even where an index exists.")
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF lists searched per query (an ivf index).")
@click.option("--no-progress", is_flag=True, help="No progress bar while scanning.")
@selection_options
def search_cmd(root: str, texts: tuple[str, ...], **params: Any) -> None:
    """Find the rows nearest to TEXT (or to each line of --queries) in the runs under ROOT: the query is
    embedded with the run's own model and options, and the model's query prompt."""
    from chatspace.query.output import write_results

    filters = _filters(params)
    queries = _read_queries(texts, params.pop("queries_file"))
    if params["output_format"] == "parquet" and not params["output"]:
        raise UsageError("--format parquet needs --output FILE")
    _quiet_model_loading()
    from chatspace.query.search import search
    from chatspace.query.vectors import select

    rows = select(root, **filters).rows
    with _progress(rows, "searching", params["no_progress"]) as bar:
        table = search(
            root,
            queries,
            k=params["k"],
            prompt=params["prompt"],
            prompt_name=params["prompt_name"],
            exact=params["exact"],
            nprobe=params["nprobe"],
            as_="arrow",
            notify=lambda line: click.echo(f"chatspace: {line}", err=True),
            progress=bar.update,
            **filters,
        )
    write_results(table, params["output_format"], params["output"], echo=click.echo)


# --- index --------------------------------------------------------------------------------------------


@click.command(
    "index",
    short_help="An ANN index (faiss) beside each run, for search.",
    epilog=_examples(
        "chatspace index demo-output                         # HNSW",
        "chatspace index s3://bucket/out --kind ivf --quantize int8",
    ),
)
@click.argument("root")
@choice_option(
    "--kind",
    choices=["flat", "ivf", "hnsw"],
    default="hnsw",
    help="Exact flat scan, IVF lists or an HNSW graph.",
)
@choice_option(
    "--quantize",
    choices=["none", "int8", "binary"],
    default="none",
    help="Vectors stored as float32, int8, or sign bits (binary results are re-scored exactly).",
)
@click.option("--nlist", type=click.IntRange(min=1), help="IVF lists (default: 4 * sqrt(rows)).")
@click.option(
    "--nprobe",
    type=click.IntRange(min=1),
    help="IVF lists searched per query (default: nlist / 8, at least 16).",
)
@click.option(
    "--m", "m", type=click.IntRange(min=2), default=32, show_default=True, help="HNSW links per node."
)
@click.option(
    "--ef-construction",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="HNSW build breadth.",
)
@click.option(
    "--ef-search", type=click.IntRange(min=1), default=128, show_default=True, help="HNSW search breadth."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@selection_options
def index_cmd(root: str, **params: Any) -> None:
    """Build an approximate-nearest-neighbour index (faiss) for each selected run, kept beside the run;
    `search` uses it while the run is unchanged."""
    _need("faiss")
    from chatspace.query.ann import IndexParams, index_runs
    from chatspace.query.vectors import select

    filters = _filters(params)
    if filters.pop("include_incomplete", False):
        raise UsageError("an unfinished run cannot be indexed: finish it with --resume first")
    selection = select(root, **filters)
    index_params = IndexParams(
        params["kind"],
        params["quantize"],
        params["nlist"],
        params["nprobe"],
        params["m"],
        params["ef_construction"],
        params["ef_search"],
    )
    with _progress(selection.rows, "indexing", params["no_progress"]) as bar:
        built = index_runs(selection, index_params, progress=bar.update)
    for (manifest_path, manifest), info in zip(selection.runs, built, strict=True):
        click.echo(
            f"indexed run {manifest.get('run_id')}: {info['rows']:,} rows, {info['params']['kind']}"
            f"/{info['params']['quantize']}, {info['file']['bytes'] / 1e6:.1f} MB in "
            f"{info['build_seconds']:.1f}s -> {selection.output.url(manifest_path.parent / 'ann')}"
        )


# --- near-duplicates ----------------------------------------------------------------------------------


@click.command(
    "near-duplicates",
    short_help="Groups of near-duplicate rows, and the ids to keep.",
    epilog=_examples(
        "chatspace near-duplicates demo-output --threshold 0.95 --output groups.parquet",
        "chatspace near-duplicates out --dataset chats --output groups.parquet --keep longest",
    ),
)
@click.argument("root")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.95,
    show_default=True,
    help="Cosine similarity at or above which two rows are near-duplicates.",
)
@click.option(
    "--output", "-o", required=True, type=click.Path(dir_okay=False), help="Groups file (.parquet)."
)
@choice_option("--keep", choices=["first", "longest"], help="Also write the ids to keep: one row per group.")
@click.option(
    "--keep-output",
    type=click.Path(dir_okay=False),
    help="Where the ids to keep go (default: OUTPUT-keep.parquet).",
)
@click.option(
    "-k", "k", type=click.IntRange(min=1), default=16, show_default=True, help="Neighbours looked at per row."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@selection_options
def near_duplicates_cmd(root: str, **params: Any) -> None:
    """Find groups of near-duplicate rows within and across the selected runs, through an ANN index, and
    write them (id, group, nearest_id, similarity) as Parquet with a one-screen summary."""
    _need("faiss", "scipy")
    from chatspace.query.api import near_duplicates
    from chatspace.query.output import preview
    from chatspace.query.vectors import select

    filters = _filters(params)
    rows = select(root, **filters).rows
    with _progress(rows, "near-duplicates", params["no_progress"]) as bar:
        _, summary = near_duplicates(
            root,
            params["threshold"],
            k=params["k"],
            keep=params["keep"],
            output=params["output"],
            keep_output=params["keep_output"],
            notify=lambda line: click.echo(f"chatspace: {line}", err=True),
            progress=bar.update,
            **filters,
        )
    click.echo(
        f"{summary['groups']:,} groups of near-duplicates (similarity >= {params['threshold']}): "
        f"{summary['rows_in_groups']:,} of {summary['rows']:,} rows; keeping one per group drops "
        f"{summary['rows_to_drop']:,}"
    )
    for group in summary["biggest"]:
        click.echo(
            f"  group {group['group']}: {group['rows']} rows (>= {group['min_similarity']:.3f})  "
            f"{preview(group['text'], 70)}"
        )
    click.echo(f"groups: {summary['output']}")
    if "keep_output" in summary:
        click.echo(f"ids to keep ({params['keep']}): {summary['kept_rows']:,} in {summary['keep_output']}")


# --- cluster ------------------------------------------------------------------------------------------


@click.command(
    "cluster",
    short_help="k-means clusters labelled by their distinctive terms.",
    epilog=_examples(
        "chatspace cluster demo-output --k 8 --output clusters.parquet",
        "chatspace visualize-embeddings --input coords.parquet --clusters clusters.parquet --output map.html",
    ),
)
@click.argument("root")
@click.option("--k", "k", type=click.IntRange(min=2), required=True, help="Number of clusters.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="Clusters file (.parquet; a .json sidecar beside it).",
)
@click.option(
    "--iterations", type=click.IntRange(min=1), default=20, show_default=True, help="k-means iterations."
)
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of k-means.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@selection_options
def cluster_cmd(root: str, **params: Any) -> None:
    """Cluster the selected runs' rows with k-means and label each cluster by its most distinctive terms
    (class-based TF-IDF): writes id, cluster, label for every row, and a sidecar JSON."""
    _need("faiss", "sklearn")
    from chatspace.query.api import cluster
    from chatspace.query.vectors import select

    filters = _filters(params)
    rows = select(root, **filters).rows
    with _progress(rows, "clustering", params["no_progress"]) as bar:
        info = cluster(
            root,
            params["k"],
            output=params["output"],
            iterations=params["iterations"],
            seed=params["seed"],
            progress=bar.update,
            **filters,
        )
    click.echo(
        f"{info['k']} clusters of {info['rows']:,} rows -> {info['output']} (+ {Path(info['sidecar']).name})"
    )
    for c in info["clusters"][:10]:
        click.echo(f"  {c['cluster']:>3}  {c['size']:>8,}  {c['label']}")
    if len(info["clusters"]) > 10:
        click.echo(f"  ... {len(info['clusters']) - 10} more in {Path(info['sidecar']).name}")
