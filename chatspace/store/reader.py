"""Reading results back: which runs an output root holds, and their embeddings as one Arrow table.

Everything here starts from the manifests under `{root}/indexes/`; shard files are found through the
manifest's shard list (with its row counts), never by globbing file names.

    import chatspace
    table = chatspace.load_embeddings("demo-output")                 # pyarrow.Table, every row
    ids, vectors = chatspace.store.reader.to_numpy(table)            # object array, float32 [n, dim]

The table is plain Arrow, so every dataframe library takes it as is:

    df = table.to_pandas()                      # pandas (embedding: one numpy array per row)
    pl_df = polars.from_arrow(table)            # polars (embedding: Array(Float32, dim))
    ds = datasets.Dataset(table)                # Hugging Face datasets, in memory
    ds = datasets.load_dataset("parquet", data_files=shard_paths("demo-output"), split="train")
    duckdb.sql("select id, text from 'demo-output/embeddings/**/*.parquet'")   # SQL over the shards

(`shard_paths` lists a run's shard files from its manifest, for readers that take paths: polars'
`scan_parquet`, duckdb's `read_parquet([...])`, `datasets`' `data_files`.)

When several runs match the filters: runs of one vector space (same model, dimension and stored dtype)
are concatenated, ordered by dataset, subset and split, each run's shards in unit order (the `dataset`
and `split` columns tell the rows apart); runs of different models are never mixed, and asking for them
together is an error that lists them, so pass `model=`. A run that did not finish is read only with
`include_incomplete=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.errors import ChatspaceError, UsageError
from chatspace.store.frames import FORMATS, convert, to_numpy
from chatspace.store.layout import model_label, slug
from chatspace.store.lock import run_is_live
from chatspace.store.manifest import read_manifest
from chatspace.store.schema import COLUMNS, embedding_schema

log = logging.getLogger(__name__)

__all__ = [
    "list_runs",
    "format_runs",
    "load_embeddings",
    "shard_paths",
    "select_runs",
    "to_numpy",
    "find_runs",
]


# --- finding runs -------------------------------------------------------------------------------------


def _manifest_paths(root: Path) -> list[Path]:
    """Manifests under an output root (or the one named: a manifest file or a run's index folder)."""
    if root.is_file():
        return [root]
    if (root / "manifest.json").is_file():
        return [root / "manifest.json"]
    indexes = root / "indexes"
    return sorted(indexes.rglob("manifest.json")) if indexes.is_dir() else []


def _run_root(manifest_path: Path, manifest: dict[str, Any]) -> Path:
    """The output root a manifest's relative shard paths start from: its index folder's depth up.

    Worked out from where the manifest is (not the recorded absolute root), so a moved or copied
    output root still reads.
    """
    index_dir = manifest.get("layout", {}).get("index_dir")
    depth = len(Path(index_dir).parts) if index_dir else 4
    return manifest_path.resolve().parents[depth]


def _check_root(root: str | Path) -> Path:
    p = Path(root).expanduser()
    if not p.exists():
        raise UsageError(f"output root {p} does not exist")
    return p


def _describe(manifest_path: Path, m: dict[str, Any]) -> dict[str, Any]:
    cfg = m.get("config", {})
    ds = m.get("dataset", {})
    model = m.get("model", {})
    totals = m.get("totals", {})
    status = m.get("status")
    return {
        "model": model.get("name") or cfg.get("model"),
        "dataset": ds.get("name") or cfg.get("dataset"),
        "dataset_label": ds.get("label"),
        "subset": ds.get("subset", cfg.get("subset")),
        "split": ds.get("split") or cfg.get("split"),
        "text_field": cfg.get("text_field"),
        "extract": cfg.get("extract"),
        "run_name": cfg.get("run_name"),
        "source": ds.get("source"),
        "rows": totals.get("rows"),
        "selected_rows": totals.get("selected_rows"),
        "skipped_rows": totals.get("skipped_rows"),
        "dimension": model.get("dimension") or cfg.get("dimensions"),
        "embedding_dtype": cfg.get("embedding_dtype", "float32"),
        "status": status,
        "units_done": totals.get("units_done"),
        "units_planned": totals.get("units_planned"),
        "shards": totals.get("shards", len(m.get("shards", []))),
        "bytes": totals.get("bytes"),
        "mode": cfg.get("mode"),
        "run_id": m.get("run_id"),
        "created_at": m.get("created_at"),
        "finished_at": m.get("finished_at"),
        "updated_at": m.get("updated_at"),
        "when": m.get("finished_at") or m.get("updated_at") or m.get("created_at"),
        "config_file": cfg.get("config_file"),
        "manifest": str(manifest_path),
        "root": str(_run_root(manifest_path, m)),
    }


def _as_found(manifest_path: Path, m: dict[str, Any]) -> dict[str, Any]:
    """A manifest says `running` until its supervisor ends the run. When no live supervisor holds the
    output's lock, it was killed outright: the run is `interrupted`, with what its unit records show done."""
    if m.get("status") != "running" or run_is_live(manifest_path.parent):
        return m
    root = _run_root(manifest_path, m)
    shards, units, rows = [], 0, 0
    for rec_path in sorted((manifest_path.parent / "units").glob("unit-*.json")):
        try:
            rec = orjson.loads(rec_path.read_bytes())
            shard = rec.get("shard")
            if rec.get("run_id") != m.get("run_id"):
                continue
            if shard is not None and (root / shard["path"]).stat().st_size != shard["bytes"]:
                continue
            units += 1
            rows += int(rec.get("rows", 0))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if shard is not None:
            shards.append(
                {"unit": rec["unit"], **shard, "device": rec.get("device"), "run_id": rec["run_id"]}
            )
    totals = {
        **m.get("totals", {}),
        "units_done": units,
        "rows": rows,
        "shards": len(shards),
        "bytes": sum(s["bytes"] for s in shards),
    }
    return {**m, "status": "interrupted", "shards": shards, "totals": totals}


def find_runs(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(manifest path, manifest) of every readable run under `root`; unreadable ones are logged."""
    out = []
    for path in _manifest_paths(_check_root(root)):
        m = read_manifest(path)
        if m is None:
            log.warning("%s: not a readable chatspace manifest; skipped", path)
            continue
        out.append((path, _as_found(path, m)))
    return out


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """One dict per run under an output root, from its manifest: model, dataset, split, rows, dimension,
    status, when (finished, else last updated), plus run id, shard count, units, manifest path.

    A manifest that cannot be read is listed with status "unreadable" (and None elsewhere).
    Ordered by model, dataset, subset, split.
    """
    runs = []
    for path in _manifest_paths(_check_root(root)):
        m = read_manifest(path)
        if m is None:
            runs.append({"status": "unreadable", "manifest": str(path)})
            continue
        runs.append(_describe(path, _as_found(path, m)))
    runs.sort(
        key=lambda r: (
            str(r.get("model") or ""),
            str(r.get("dataset_label") or r.get("dataset") or ""),
            str(r.get("subset") or ""),
            str(r.get("split") or ""),
        )
    )
    return runs


def _fmt_int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _fmt_status(r: dict[str, Any]) -> str:
    status = r.get("status") or "-"
    if status not in ("complete", "unreadable") and r.get("units_planned") is not None:
        return f"{status} ({r.get('units_done', 0)}/{r['units_planned']} units)"
    return status


def _fmt_when(v: Any) -> str:
    if not isinstance(v, str):
        return "-"
    return v.replace("T", " ").removesuffix("Z")[:16] + (" UTC" if v.endswith("Z") else "")


def _fmt_dataset(r: dict[str, Any]) -> str:
    name = r.get("dataset_label") or r.get("dataset") or "-"
    # The label joins the subset in as `name__subset`; show it the way it was asked for.
    if r.get("subset") and name.endswith(f"__{r['subset']}"):
        name = f"{name[: -len(r['subset']) - 2]} ({r['subset']})"
    return name


def _fmt_text(r: dict[str, Any]) -> str:
    """What was embedded: the text field, its extraction, and the run name when one was given."""
    text = str(r.get("text_field") or "-")
    if r.get("extract") not in (None, "text"):
        text += f" ({r['extract']})"
    if r.get("run_name"):
        text += f" [{r['run_name']}]"
    return text


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    """A plain text table of `list_runs` output, one run per line."""
    if not runs:
        return "no runs found"
    header = ("MODEL", "DATASET", "SPLIT", "TEXT", "ROWS", "DIM", "STATUS", "WHEN", "RUN ID")
    lines = []
    for r in runs:
        if r.get("status") == "unreadable":
            lines.append(("-", "-", "-", "-", "-", "-", "unreadable", "-", r.get("manifest", "")))
            continue
        lines.append(
            (
                str(r.get("model") or "-"),
                _fmt_dataset(r),
                str(r.get("split") or "-"),
                _fmt_text(r),
                _fmt_int(r.get("rows")),
                _fmt_int(r.get("dimension")),
                _fmt_status(r),
                _fmt_when(r.get("when")),
                str(r.get("run_id") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    right = {4, 5}  # numbers align right

    def fmt(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(row) for row in lines)])


# --- selecting runs -----------------------------------------------------------------------------------


def _model_names(m: dict[str, Any]) -> set[str]:
    names = {m.get("model", {}).get("name"), m.get("config", {}).get("model")}
    names.discard(None)
    out = set()
    for n in names:
        label = model_label(n)
        out |= {n, label, slug(label), label.rsplit("/", 1)[-1]}  # the last also: name without org
    return out


def _dataset_names(m: dict[str, Any]) -> set[str]:
    ds = m.get("dataset", {})
    names = {ds.get("name"), ds.get("label"), m.get("config", {}).get("dataset")}
    names.discard(None)
    return (
        names
        | {slug(n) for n in names}
        | {n.rsplit("/", 1)[-1] for n in names if ds.get("source") != "local"}
    )


def _matches(value: str | None, names: set[str]) -> bool:
    return value is None or value in names or slug(value) in names


def _select(
    root: str | Path,
    model: str | None,
    dataset: str | None,
    split: str | None,
    subset: str | None,
    run_id: str | None,
    what: dict[str, str | None] | None = None,
) -> list[tuple[Path, dict[str, Any]]]:
    runs = find_runs(root)
    if not runs:
        raise UsageError(f"no chatspace runs under {root} (looked for indexes/**/manifest.json)")
    chosen = []
    for path, m in runs:
        ds = m.get("dataset", {})
        if not _matches(model, _model_names(m)):
            continue
        if dataset is not None:
            local_label = Path(dataset).expanduser()
            label = local_label.stem if local_label.is_file() else local_label.name
            if not (
                _matches(dataset, _dataset_names(m)) or (local_label.exists() and label == ds.get("label"))
            ):
                continue
        if split is not None and split != ds.get("split", m.get("config", {}).get("split")):
            continue
        if subset is not None and subset != ds.get("subset"):
            continue
        if run_id is not None and run_id != m.get("run_id"):
            continue
        cfg = m.get("config", {})
        if any(v is not None and v != cfg.get(k) for k, v in (what or {}).items()):
            continue
        chosen.append((path, m))
    if not chosen:
        asked = ", ".join(
            f"{k}={v!r}"
            for k, v in (
                ("model", model),
                ("dataset", dataset),
                ("split", split),
                ("subset", subset),
                ("run_id", run_id),
                *(what or {}).items(),
            )
            if v is not None
        )
        raise UsageError(f"no run under {root} matches {asked}; runs there:\n{format_runs(list_runs(root))}")
    return chosen


def _one_line(m: dict[str, Any]) -> str:
    ds = m.get("dataset", {})
    return (
        f"{m.get('model', {}).get('name')} / {ds.get('label')} / {ds.get('split')} "
        f"({m.get('status')}, run {m.get('run_id')})"
    )


def _check_compatible(chosen: list[tuple[Path, dict[str, Any]]], include_incomplete: bool) -> None:
    if not include_incomplete:
        unfinished = [m for _, m in chosen if m.get("status") != "complete"]
        if unfinished:
            listing = "; ".join(_one_line(m) for m in unfinished)
            raise ChatspaceError(
                f"run(s) not complete: {listing}. Finish with --resume, or pass include_incomplete=True "
                "to read the shards they did finish"
            )
    spaces = {
        (
            m.get("model", {}).get("name"),
            m.get("model", {}).get("dimension"),
            m.get("config", {}).get("embedding_dtype", "float32"),
        )
        for _, m in chosen
    }
    if len(spaces) > 1:
        listing = "; ".join(_one_line(m) for _, m in chosen)
        raise UsageError(
            f"{len(chosen)} runs of different models (or dimensions, or stored dtypes) match; their vectors "
            f"do not mix. Pass model= (and dataset=/split=) to pick: {listing}"
        )


def _ordered(chosen: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    def key(item):
        ds, cfg = item[1].get("dataset", {}), item[1].get("config", {})
        return tuple(
            str(v or "")
            for v in (
                ds.get("label"),
                ds.get("subset"),
                ds.get("split"),
                cfg.get("text_field"),
                cfg.get("extract"),
            )
        )

    return sorted(chosen, key=key)


def _shards(path: Path, m: dict[str, Any]) -> list[tuple[Path, int]]:
    root = _run_root(path, m)
    return [(root / s["path"], int(s["rows"])) for s in sorted(m.get("shards", []), key=lambda s: s["unit"])]


def shard_paths(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    subset: str | None = None,
    run_id: str | None = None,
    text_field: str | None = None,
    extract: str | None = None,
    run_name: str | None = None,
    include_incomplete: bool = False,
) -> list[str]:
    """The shard files of the matching runs, as their manifests list them (same rules as load_embeddings).

    For readers that take paths, e.g. `polars.scan_parquet(shard_paths(root))`,
    `duckdb.read_parquet(shard_paths(root))`, `datasets.load_dataset("parquet", data_files=...)`.
    """
    runs = select_runs(
        root,
        model,
        dataset,
        split,
        subset=subset,
        run_id=run_id,
        text_field=text_field,
        extract=extract,
        run_name=run_name,
        include_incomplete=include_incomplete,
    )
    return [str(p) for _, _, shards in runs for p, _ in shards]


def select_runs(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    subset: str | None = None,
    run_id: str | None = None,
    text_field: str | None = None,
    extract: str | None = None,
    run_name: str | None = None,
    include_incomplete: bool = False,
) -> list[tuple[Path, dict[str, Any], list[tuple[Path, int]]]]:
    """(manifest path, manifest, [(shard path, rows), ...]) of each matching run, in load_embeddings'
    order and under its rules, for readers that stream the shards themselves."""
    what = {"text_field": text_field, "extract": extract, "run_name": run_name}
    chosen = _select(root, model, dataset, split, subset, run_id, what)
    _check_compatible(chosen, include_incomplete)
    return [(path, m, _shards(path, m)) for path, m in _ordered(chosen)]


# --- loading ------------------------------------------------------------------------------------------


def load_embeddings(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    subset: str | None = None,
    run_id: str | None = None,
    text_field: str | None = None,
    extract: str | None = None,
    run_name: str | None = None,
    include_incomplete: bool = False,
    as_: str | None = None,
) -> Any:
    """Every embedded row of the matching run(s) under an output root, as one pyarrow Table.

    `model` matches the model's hub id or local folder name (or its slug, as in the output paths);
    `dataset` the hub id, the local path or its label (a file's stem, a folder's name); `split` and
    `subset` exactly; `text_field`, `extract` and `run_name` pick one of several extractions of the same
    dataset (as `chatspace runs` lists them). Leave a filter out to match any. Rows come shard by shard in unit order, as the
    manifest lists the shards; each shard's row count is checked against the manifest.

    Several matching runs of one model (same dimension and stored dtype) are concatenated, ordered by
    dataset label, subset, split; runs of different models raise a UsageError that lists them. Runs
    whose status is not "complete" raise unless `include_incomplete=True` (then their finished shards
    are read).

    `columns` picks columns (of: id, source, dataset, split, text, metadata, embedding, model,
    created_at, run_id).

    `as_` picks the result: None (the default) is the Table exactly as stored (`metadata` JSON text);
    "arrow", "pandas" and "polars" give a Table or DataFrame with `metadata` decoded (a struct column;
    one dict per row in pandas); "numpy" gives (ids, float32 [n, dim] matrix) as `to_numpy` does.

    One-liners from here: `table.to_pandas()`, `polars.from_arrow(table)`, `datasets.Dataset(table)`,
    `to_numpy(table)` for (ids, float32 matrix); for SQL without loading,
    `duckdb.sql("select * from 'ROOT/embeddings/**/*.parquet'")`.
    """

    if as_ is not None and as_ not in FORMATS:
        raise UsageError(f"as_={as_!r} is not one of {', '.join(FORMATS)}")
    if columns is not None:
        columns = list(dict.fromkeys(columns))
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise UsageError(f"unknown column(s) {', '.join(unknown)}; columns are: {', '.join(COLUMNS)}")
    what = {"text_field": text_field, "extract": extract, "run_name": run_name}
    chosen = _select(root, model, dataset, split, subset, run_id, what)
    _check_compatible(chosen, include_incomplete)
    tables: list[pa.Table] = []
    for path, m in _ordered(chosen):
        for shard, rows in _shards(path, m):
            if not shard.is_file():
                raise ChatspaceError(
                    f"{shard} is listed in {path} but missing; run `chatspace verify` on the output root"
                )
            table = pq.read_table(shard, columns=columns)
            if table.num_rows != rows:
                raise ChatspaceError(
                    f"{shard} holds {table.num_rows} rows, its manifest says {rows}; run `chatspace verify`"
                )
            tables.append(table)
    table = pa.concat_tables(tables) if tables else _empty_table(chosen, columns)
    return table if as_ is None else convert(table, as_)


def _empty_table(chosen: list[tuple[Path, dict[str, Any]]], columns: Sequence[str] | None) -> pa.Table:
    m = chosen[0][1]
    dim = m.get("model", {}).get("dimension") or m.get("config", {}).get("dimensions") or 0
    schema = embedding_schema(int(dim), m.get("config", {}).get("embedding_dtype", "float32"))
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return schema.empty_table()
