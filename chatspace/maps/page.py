"""The interactive map: one self-contained HTML file drawn by plotly's WebGL scatter (scattergl).

plotly.js is embedded inline, so the file opens from disk with no server and no network. Plotly gives
pan/zoom, hover, a legend per dataset (click to hide one, double-click to isolate it) and WebGL
drawing that stays fluid at 100k+ points; the page adds a text search and a side panel with a row's
full text and id, wired to plotly's click and restyle API (assets/map.js).
`#id=ROW-ID` and `#q=WORDS` in the address open a row or run a search on load.
"""

from __future__ import annotations

import html
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from chatspace.errors import UsageError
from chatspace.maps.colour import cluster_centres, colour_groups, group_order, hover_lines, read_option_table

DEFAULT_MAX_TEXT_CHARS = 5000
HOVER_LINE_CHARS = 70
_REQUIRED = ("id", "dataset", "x", "y")


def read_points(path: str | Path) -> pa.Table:
    """The coordinates table `reduce-embeddings` wrote (checked for the columns a map needs)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(f.name for f in p.glob("*.parquet"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise UsageError(
            f"--input {path} is a folder; name the coordinates file reduce-embeddings wrote{hint}"
        )
    table = read_option_table(path, "--input", _REQUIRED, "; write it with `chatspace reduce-embeddings`")
    if table.num_rows == 0:
        raise UsageError(f"--input {path} holds no points")
    return table


def _hover(row_id: str, dataset: str, preview: str) -> str:
    """Hover label: id and dataset, then the preview wrapped into lines (escaped: plotly reads tags)."""
    words, lines, line = preview.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > HOVER_LINE_CHARS:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    body = "<br>".join(html.escape(x) for x in lines[:6])
    return f"<b>{html.escape(row_id)}</b> · {html.escape(dataset)}<br>{body}"


_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")


def legend_label(dataset: str) -> str:
    """A dataset as the legend names it: a local path by its file stem or folder name, a hub id as is
    (and a run group's ` · run folder` kept)."""
    if " · " in dataset:
        name, run = dataset.rsplit(" · ", 1)
        return f"{legend_label(name)} · {run}"
    if dataset.startswith(("/", ".", "~")) or dataset.lower().endswith(_DATA_SUFFIXES):
        p = Path(dataset)
        return p.stem if p.suffix.lower() in _DATA_SUFFIXES else p.name or dataset
    return dataset


def _marker_size(n: int) -> float:
    return 6.0 if n <= 2_000 else 4.0 if n <= 20_000 else 2.5


def _hover_texts(table: pa.Table) -> list[str]:
    """Each point's hover box: id, dataset, a preview of its text, and the extra lines (cluster...)."""
    cols = table.column_names
    datasets = [str(d) for d in table.column("dataset").to_pylist()]
    extra = hover_lines(table)
    ids = [str(i) for i in table.column("id").to_pylist()]
    previews = (
        table.column("preview").to_pylist()
        if "preview" in cols
        else [str(t or "")[:200] for t in table.column("text").to_pylist()]
        if "text" in cols
        else [""] * table.num_rows
    )
    return [
        _hover(ids[i], datasets[i], previews[i] or "") + (f"<br>{extra[i]}" if extra[i] else "")
        for i in range(table.num_rows)
    ]


def _group_trace(xyz: dict[str, Any], rows: Any, color: str, size: float, common: dict[str, Any]):
    """One colour group's points: a 3D scatter, or a WebGL one whose unselected points fade."""
    import plotly.graph_objects as go

    if "z" in xyz:
        marker = {"size": size * 0.6, "color": color, "opacity": 0.8}
        return go.Scatter3d(x=xyz["x"][rows], y=xyz["y"][rows], z=xyz["z"][rows], marker=marker, **common)
    return go.Scattergl(
        x=xyz["x"][rows],
        y=xyz["y"][rows],
        marker={"size": size, "color": color, "opacity": 0.8},
        selected={"marker": {"opacity": 1.0}},
        unselected={"marker": {"opacity": 0.06}},
        **common,
    )


def _lay_out(fig: Any, table: pa.Table, legend_title: str, color_by: str) -> None:
    """Plain axes without ticks, a legend, panning; in 2D equal scales and the cluster labels."""
    axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "title": None}
    fig.update_layout(
        template="plotly_white",
        showlegend=True,
        legend={"title": {"text": legend_title}, "itemsizing": "constant"},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        hovermode="closest",
        dragmode="pan",
        uirevision="map",
    )
    if "z" in table.column_names:
        fig.update_layout(scene={"xaxis": axis, "yaxis": axis, "zaxis": axis})
        return
    for x, y, label in cluster_centres(table) if color_by == "cluster" else []:
        fig.add_annotation(
            x=x,
            y=y,
            text=f"<b>{html.escape(label)}</b>",
            showarrow=False,
            bgcolor="rgba(255,255,255,0.75)",
        )
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis, scaleanchor="x", scaleratio=1)


def build_figure(table: pa.Table, color_by: str = "dataset"):
    """A plotly figure, one WebGL trace per colour group (a dataset, a cluster; in the order the page's
    row lists use), and each cluster's label at its centre."""
    import numpy as np
    import plotly.express as px
    import plotly.graph_objects as go

    groups, legend_title = colour_groups(table, color_by)
    hover = _hover_texts(table)
    xyz = {
        a: table.column(a).to_numpy().astype(np.float32) for a in ("x", "y", "z") if a in table.column_names
    }
    order = group_order(groups, color_by)
    palette = px.colors.qualitative.Plotly if len(order) <= 10 else px.colors.qualitative.Alphabet
    ds_arr = np.asarray(groups, dtype=object)
    size = _marker_size(table.num_rows)
    fig = go.Figure()
    for k, name in enumerate(order):
        rows = np.flatnonzero(ds_arr == name)
        common: dict[str, Any] = {
            "name": f"{legend_label(name) if color_by == 'dataset' else name} ({rows.size:,})",
            "mode": "markers",
            "hovertext": [hover[i] for i in rows],
            "hoverinfo": "text",
            "hoverlabel": {"align": "left"},
        }
        fig.add_trace(_group_trace(xyz, rows, palette[k % len(palette)], size, common))
    _lay_out(fig, table, legend_title, color_by)
    return fig


def _rows_json(table: pa.Table, max_text_chars: int, color_by: str = "dataset") -> str:
    """What the page's search and side panel read: ids, datasets, splits and (capped) texts."""
    cols = table.column_names
    source = "text" if "text" in cols else "preview" if "preview" in cols else None
    texts = [str(t or "") for t in table.column(source).to_pylist()] if source else [""] * table.num_rows
    capped, cut = [], []
    for t in texts:
        if len(t) > max_text_chars:
            capped.append(t[:max_text_chars])
            cut.append(len(t) - max_text_chars)
        else:
            capped.append(t)
            cut.append(0)

    def col(name: str) -> list:
        return table.column(name).to_pylist() if name in cols else [None] * table.num_rows

    groups, _ = colour_groups(table, color_by)
    payload = {
        # Row numbers of each trace's points, in trace order (one trace per colour group).
        "traces": [[i for i, g in enumerate(groups) if g == name] for name in group_order(groups, color_by)],
        "x": col("x"),
        "y": col("y"),
        "id": [str(i) for i in col("id")],
        "dataset": col("dataset"),
        "split": col("split"),
        "run_id": col("run_id"),
        "text": capped,
        "cut": cut,
        "full_text": source == "text",
    }
    # Inside <script>, "</" must not appear; JSON allows "<" escaped in strings (and nowhere else).
    return orjson.dumps(payload).decode().replace("<", "\\u003c")


def render_html(
    table: pa.Table,
    title: str = "chatspace map",
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    color_by: str = "dataset",
) -> str:
    """The whole page as one string: plotly.js inline, the figure, the rows, the search and panel code."""
    fig = build_figure(table, color_by)
    plot = fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id="map",
        default_width="100%",
        default_height="100%",
        config={"scrollZoom": True, "displaylogo": False, "responsive": True},
    )
    assets = files("chatspace.maps").joinpath("assets")
    parts = {
        "TITLE": html.escape(title),
        "POINTS": f"{table.num_rows:,}",
        "CSS": assets.joinpath("map.css").read_text(encoding="utf-8"),
        "ROWS_JSON": _rows_json(table, max_text_chars, color_by),
        "MAP_JS": assets.joinpath("map.js").read_text(encoding="utf-8"),
        "PLOT": plot,
    }
    # One pass, so a placeholder-looking string inside the data is never substituted.
    template = assets.joinpath("map.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts[m.group(1)], template)


def write_png(
    table: pa.Table, path: str | Path, title: str = "chatspace map", color_by: str = "dataset"
) -> None:
    """A static picture for papers: matplotlib (no browser needed), one colour per group (dataset,
    cluster), with each cluster's label at its centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import plotly.express as px

    names, legend_title = colour_groups(table, color_by)
    datasets = np.asarray(names, dtype=object)
    order = group_order(names, color_by)
    palette = px.colors.qualitative.Plotly if len(order) <= 10 else px.colors.qualitative.Alphabet
    three_d = "z" in table.column_names
    fig = plt.figure(figsize=(8, 7), dpi=150)
    ax = fig.add_subplot(projection="3d" if three_d else None)
    size = max(0.5, min(12.0, 4000.0 / max(1, table.num_rows)))
    coords = [table.column(a).to_numpy() for a in ("x", "y", "z") if a in table.column_names]
    for k, name in enumerate(order):
        rows = datasets == name
        ax.scatter(
            *(c[rows] for c in coords),
            s=size,
            color=palette[k % len(palette)],
            alpha=0.8,
            linewidths=0,
            label=f"{legend_label(name) if color_by == 'dataset' else name} ({int(rows.sum()):,})",
        )
    for x, y, label in cluster_centres(table) if color_by == "cluster" and not three_d else []:
        ax.annotate(
            label,
            (x, y),
            ha="center",
            fontsize="small",
            weight="bold",
            bbox={"fc": "white", "alpha": 0.7, "lw": 0},
        )
    if not three_d:
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title)
    ax.legend(title=legend_title, markerscale=max(1.0, 20.0 / size) ** 0.5, loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
