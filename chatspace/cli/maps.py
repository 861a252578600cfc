"""The `reduce-embeddings` and `visualize-embeddings` commands (registered on the main CLI group).

Only click is imported here: numpy, pyarrow, umap, openTSNE and plotly load when a command runs, so
`chatspace --help` stays fast. The libraries come with `pip install 'chatspace[map]'`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from chatspace.cli.options import config_option, run_filter_options
from chatspace.errors import UsageError
from chatspace.maps.params import ReduceParams

MAP_EXTRA_HINT = "pip install 'chatspace[map]'"


def _need(*modules: str) -> None:
    """One line naming the extra when a library of the [map] extra is missing."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise UsageError(f"this command needs {', '.join(missing)}: {MAP_EXTRA_HINT}")


@click.command("reduce-embeddings")
@click.argument("more_dirs", nargs=-1, metavar="[DIR]...")
@click.option(
    "--embedding-dirs",
    "--inputs",
    "embedding_dirs",
    multiple=True,
    metavar="DIR",
    help="An output root, a run's index folder or manifest, a folder of shards, or a shard file. "
    "Repeat, or list several after one flag.",
)
@click.option(
    "--output", "-o", required=True, help="Coordinates file to write (.parquet; a .json sidecar beside it)."
)
@config_option("method", part=ReduceParams, help="UMAP, t-SNE (openTSNE) or PCA.")
@config_option("n_components", part=ReduceParams, type=click.IntRange(2, 3), help="2-D or 3-D coordinates.")
@config_option(
    "max_samples",
    part=ReduceParams,
    type=click.IntRange(min=1),
    help="At most this many rows per run (per dataset where it has one run; default: all).",
)
@config_option("sample_seed", part=ReduceParams, help="Seed of the per-dataset sample.")
@config_option("seed", part=ReduceParams, help="Seed of UMAP / t-SNE.")
@config_option("n_neighbors", part=ReduceParams, help="UMAP neighbourhood size.")
@config_option("min_dist", part=ReduceParams, help="UMAP minimum distance.")
@config_option("metric", part=ReduceParams, help="Distance for UMAP / t-SNE neighbours.")
@config_option("perplexity", part=ReduceParams, help="t-SNE perplexity.")
@click.option(
    "--full-text/--no-full-text",
    default=ReduceParams.full_text,
    show_default=True,
    help="Keep each row's full text (the map's click panel shows it); a 200-character preview is always kept.",
)
@click.option(
    "--roles",
    default=None,
    metavar="ROLES",
    help="Of runs made with --extract each-turn: only these roles' messages (e.g. user or assistant,user).",
)
@click.option(
    "--turns",
    default=None,
    metavar="N,...",
    help="Of runs made with --extract each-turn: only these turns (0 = a conversation's first message).",
)
@run_filter_options("With output roots: ")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def reduce_embeddings_cmd(more_dirs: tuple[str, ...], embedding_dirs: tuple[str, ...], **params: Any) -> None:
    """Project a sample of embedded runs to 2-D or 3-D (UMAP, t-SNE or PCA) for a map."""
    inputs = [*embedding_dirs, *more_dirs]
    if not inputs:
        raise UsageError("name at least one input with --embedding-dirs DIR")
    _need("sklearn", *{"umap": ["umap"], "tsne": ["openTSNE"], "pca": []}[params["method"]])
    from chatspace.maps.inputs import Selection
    from chatspace.maps.reduce import reduce_embeddings, sidecar_path

    log = logging.getLogger("chatspace")  # ours only: the libraries' own INFO chatter stays quiet
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    selection = Selection(
        **{
            k: params.pop(k)
            for k in ("model", "dataset", "split", "subset", "run_id", "run_name", "include_incomplete")
        }
    )
    progress = not params.pop("no_progress")
    output = params.pop("output")
    meta = reduce_embeddings(inputs, output, ReduceParams(**params), selection, progress=progress)
    per = ", ".join(f"{d}: {v['sampled']:,}" for d, v in meta["per_dataset"].items())
    click.echo(
        f"{meta['points']:,} points ({per}) by {meta['method']} in {meta['timings']['total_s']:.1f}s -> "
        f"{output} (+ {sidecar_path(output).name})"
    )


@click.command("visualize-embeddings")
@click.option(
    "--input", "-i", "input_path", required=True, help="Coordinates from reduce-embeddings (.parquet)."
)
@click.option("--output", "-o", help="Interactive HTML map to write (opens from disk, no server needed).")
@click.option("--png", help="Also write a static picture (PNG) of the map.")
@click.option("--title", help="Title on the map (default: the input file's name).")
@click.option(
    "--max-text-chars",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Longest text a point carries into the page (the rest stays in the coordinates file).",
)
@click.option(
    "--clusters", help="Clusters from `chatspace cluster` (.parquet): colour by cluster, labels at centres."
)
@click.option(
    "--duplicates", help="Groups from `chatspace near-duplicates` (.parquet): hover names each group."
)
@click.option(
    "--color-by",
    type=click.Choice(["dataset", "cluster", "duplicates"]),
    help="What colours the points (default: cluster with --clusters, else dataset).",
)
@click.option("--serve", is_flag=True, help="Serve the map locally until Ctrl-C (implied by --host/--port).")
@click.option("--host", help="Address to serve on (default 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port to serve on (default 8050; 0 picks a free one)."
)
def visualize_embeddings_cmd(
    input_path: str,
    output: str | None,
    png: str | None,
    title: str | None,
    max_text_chars: int,
    clusters: str | None,
    duplicates: str | None,
    color_by: str | None,
    serve: bool,
    host: str | None,
    port: int | None,
) -> None:
    """An interactive map of reduce-embeddings' points: HTML file, local server, and/or PNG."""
    serve = serve or host is not None or port is not None
    if not (output or png or serve):
        raise UsageError("say what to make: --output map.html, --png map.png, and/or --host/--port to serve")
    for target, suffixes in ((output, (".html", ".htm")), (png, (".png",))):
        if target and Path(target).suffix.lower() not in suffixes:
            raise UsageError(f"{target}: expected a {' or '.join(suffixes)} file name")
        if target:
            try:
                Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create the folder of {target}: {e.strerror or e}") from None
    _need("plotly", *(["matplotlib"] if png else []))
    from chatspace.maps.page import read_points, render_html, write_png

    table = read_points(input_path)
    table, color_by = _colour(table, clusters, duplicates, color_by)
    title = title or Path(input_path).stem
    page = None
    if output or serve:
        page = render_html(table, title=title, max_text_chars=max_text_chars, color_by=color_by)
    if output:
        Path(output).expanduser().write_text(page, encoding="utf-8")
        click.echo(f"map of {table.num_rows:,} points -> {Path(output).resolve()}")
    if png:
        write_png(table, Path(png).expanduser(), title=title, color_by=color_by)
        click.echo(f"picture -> {Path(png).resolve()}")
    if serve:
        from chatspace.maps.serve import serve as serve_page

        serve_page(page, host or "127.0.0.1", 8050 if port is None else port)


def _colour(table, clusters: str | None, duplicates: str | None, color_by: str | None):
    """The points with the clusters' and duplicate groups' columns joined on, and what colours them."""
    from chatspace.maps.colour import attach_clusters, attach_duplicates

    if clusters:
        table = attach_clusters(table, clusters)
    if duplicates:
        table = attach_duplicates(table, duplicates)
    return table, color_by or ("cluster" if clusters else "dataset")
