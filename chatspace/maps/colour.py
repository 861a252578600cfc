"""What colours a map's points: their dataset (the default), their cluster (`chatspace cluster`'s
file, labelled at each cluster's centre) or whether they have a near-duplicate (`chatspace
near-duplicates`' groups file). The files join the points by id (and run id, where both carry it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.errors import UsageError

COLOR_BY = ("dataset", "cluster", "duplicates")
IN_A_GROUP = "has a near-duplicate"
NO_GROUP = "no near-duplicate"


def read_option_table(path: str | Path, option: str, needs: tuple[str, ...], hint: str = "") -> pa.Table:
    """The Parquet file an option names, with the columns it `needs` (`hint`: how to write one)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{option} {path} does not exist")
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowInvalid) as e:
        raise UsageError(f"{option} {path}: not a readable Parquet file ({e})") from None
    missing = [c for c in needs if c not in table.column_names]
    if missing:
        raise UsageError(f"{option} {path} lacks column(s) {', '.join(missing)}{hint}")
    return table


def _keys(table: pa.Table, with_run: bool) -> list:
    ids = [str(i) for i in table.column("id").to_pylist()]
    if not with_run:
        return ids
    return list(zip(ids, [str(r) for r in table.column("run_id").to_pylist()], strict=True))


def _lookup(points: pa.Table, other: pa.Table) -> np.ndarray:
    """For each point, its row in `other` (-1 when absent)."""
    with_run = "run_id" in points.column_names and "run_id" in other.column_names
    where = {key: i for i, key in enumerate(_keys(other, with_run))}
    return np.array([where.get(key, -1) for key in _keys(points, with_run)], dtype=np.int64)


def attach_clusters(points: pa.Table, path: str | Path) -> pa.Table:
    """`points` with `cluster` and `cluster_label` columns from `chatspace cluster`'s file."""
    clusters = read_option_table(path, "--clusters", ("id", "cluster", "label"))
    rows = _lookup(points, clusters)
    if (rows < 0).all():
        raise UsageError(f"--clusters {path}: none of its ids are on this map (clustered another run?)")
    cluster = clusters.column("cluster").to_numpy()
    labels = clusters.column("label").to_pylist()
    return points.append_column(
        "cluster", pa.array([int(cluster[r]) if r >= 0 else None for r in rows], pa.int32())
    ).append_column("cluster_label", pa.array([labels[r] if r >= 0 else None for r in rows], pa.string()))


def attach_duplicates(points: pa.Table, path: str | Path) -> pa.Table:
    """`points` with `duplicate_group` and `duplicate_similarity` from `chatspace near-duplicates`' file."""
    groups = read_option_table(path, "--duplicates", ("id", "group", "similarity"))
    rows = _lookup(points, groups)
    group = groups.column("group").to_numpy()
    similarity = groups.column("similarity").to_numpy()
    return points.append_column(
        "duplicate_group", pa.array([int(group[r]) if r >= 0 else None for r in rows], pa.int64())
    ).append_column(
        "duplicate_similarity",
        pa.array([float(similarity[r]) if r >= 0 else None for r in rows], pa.float32()),
    )


def group_column(table: pa.Table) -> str:
    """What the points are coloured by: their run group (a dataset, or one run of a dataset that has
    several) where reduce-embeddings wrote one, else the dataset."""
    return "group" if "group" in table.column_names else "dataset"


def colour_groups(table: pa.Table, color_by: str) -> tuple[list[str], str]:
    """Each point's colour group (its legend entry) and the legend's title."""
    if color_by == "cluster":
        if "cluster_label" not in table.column_names:
            raise UsageError("--color-by cluster needs --clusters FILE (from `chatspace cluster`)")
        names = [
            f"{c}: {label}" if c is not None else "not clustered"
            for c, label in zip(
                table.column("cluster").to_pylist(), table.column("cluster_label").to_pylist(), strict=True
            )
        ]
        return names, "cluster"
    if color_by == "duplicates":
        if "duplicate_group" not in table.column_names:
            raise UsageError(
                "--color-by duplicates needs --duplicates FILE (from `chatspace near-duplicates`)"
            )
        return [
            IN_A_GROUP if g is not None else NO_GROUP for g in table.column("duplicate_group").to_pylist()
        ], ("near-duplicates")
    return [str(d) for d in table.column(group_column(table)).to_pylist()], "dataset"


def group_order(names: list[str], color_by: str) -> list[str]:
    """Legend order: clusters by number, duplicates first, datasets by name."""
    unique = set(names)
    if color_by == "cluster":
        return sorted(
            unique, key=lambda n: (n == "not clustered", int(n.split(":")[0]) if ":" in n else 0, n)
        )
    if color_by == "duplicates":
        return [n for n in (IN_A_GROUP, NO_GROUP) if n in unique]
    return sorted(unique)


def cluster_centres(table: pa.Table) -> list[tuple[float, float, str]]:
    """(x, y, label) at each cluster's centre (the median of its points: robust to stragglers)."""
    if "cluster_label" not in table.column_names:
        return []
    x, y = table.column("x").to_numpy(), table.column("y").to_numpy()
    clusters = np.array([-1 if c is None else c for c in table.column("cluster").to_pylist()])
    labels = table.column("cluster_label").to_pylist()
    out = []
    for c in sorted(set(clusters.tolist()) - {-1}):
        rows = np.flatnonzero(clusters == c)
        out.append((float(np.median(x[rows])), float(np.median(y[rows])), f"{c}: {labels[rows[0]]}"))
    return out


def hover_lines(table: pa.Table) -> list[str]:
    """Per point, what the hover adds (escaped HTML): its cluster's label, its near-duplicate group."""
    import html

    n = table.num_rows
    cols = table.column_names
    clusters = table.column("cluster").to_pylist() if "cluster_label" in cols else [None] * n
    labels = table.column("cluster_label").to_pylist() if "cluster_label" in cols else [None] * n
    groups = table.column("duplicate_group").to_pylist() if "duplicate_group" in cols else [None] * n
    scores = table.column("duplicate_similarity").to_pylist() if "duplicate_group" in cols else [None] * n
    out = []
    for c, label, g, s in zip(clusters, labels, groups, scores, strict=True):
        parts = []
        if c is not None:
            parts.append(f"<i>cluster {c}: {html.escape(str(label))}</i>")
        if g is not None:
            parts.append(f"<i>near-duplicate group {g} (similarity {s:.3f})</i>")
        out.append("<br>".join(parts))
    return out
