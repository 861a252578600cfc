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
together is an error that lists them, so pass `model=`. Runs that did not finish are left out, in one
warning line naming them (read what they finished with `include_incomplete=True`); several runs of one
dataset split read together are one warning too. Every row says which run it came from: `run_name` (the
run's folder: `train`, `train__conversation__first-user`, `train__NAME`), `text_field`, `extract`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypedDict

import pyarrow as pa

from chatspace.errors import ChatspaceError, UsageError, option
from chatspace.logs import plural
from chatspace.store.catalog import find_runs, format_runs, list_runs
from chatspace.store.frames import FORMATS, convert, to_numpy
from chatspace.store.layout import model_label, run_root_of, slug
from chatspace.store.records import manifest_shards
from chatspace.store.root import OutputRoot
from chatspace.store.row_kinds import fold_chunks, select_turns
from chatspace.store.schema import COLUMNS, embedding_schema
from chatspace.store.shards import read_shard

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


class RunFilters(TypedDict, total=False):
    """The filters that pick runs besides model, dataset and split (as `chatspace runs` lists them)."""

    subset: str | None
    run_id: str | None
    text_field: str | None
    extract: str | None
    run_name: str | None
    include_incomplete: bool


def _check_filters(filters: dict[str, Any]) -> None:
    unknown = sorted(set(filters) - set(RunFilters.__annotations__))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")


def _select(
    root: str | Path,
    model: str | None,
    dataset: str | None,
    split: str | None,
    filters: RunFilters,
) -> tuple[OutputRoot, list[tuple[PurePath, dict[str, Any]]]]:
    output, runs = find_runs(root)
    if not runs:
        raise UsageError(f"no chatspace runs under {root} (looked for indexes/**/manifest.json)")
    subset, run_id = filters.get("subset"), filters.get("run_id")
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
        if any(
            filters.get(k) is not None and filters.get(k) != cfg.get(k) for k in ("text_field", "extract")
        ):
            continue
        wanted_name = filters.get("run_name")
        if wanted_name is not None and wanted_name not in (cfg.get("run_name"), run_folder_name(path)):
            continue
        chosen.append((path, m))
    if not chosen:
        asked = ", ".join(
            option(k, v)
            for k, v in (("model", model), ("dataset", dataset), ("split", split), *filters.items())
            if v is not None and k != "include_incomplete"
        )
        raise UsageError(f"no run under {root} matches {asked}; runs there:\n{format_runs(list_runs(root))}")
    return output, chosen


def matching_runs(root: str | Path, **filters: Any) -> list[tuple[PurePath, dict[str, Any]]]:
    """(manifest path, manifest) of every run the filters (model, dataset, split and RunFilters) match,
    whatever its status, with no warnings: for tools that act on runs rather than read them."""
    model, dataset, split = (filters.pop(k, None) for k in ("model", "dataset", "split"))
    _check_filters(filters)
    return _select(root, model, dataset, split, filters)[1]


def run_folder_name(path: PurePath) -> str:
    """A run's folder under its dataset (`train`, `train__conversation__first-user`, `train__NAME`): what
    tells runs of one dataset apart, and the `run_name` column of every row read back."""
    return path.parent.name


def _one_line(path: PurePath, m: dict[str, Any]) -> str:
    ds = m.get("dataset", {})
    return f"{ds.get('label')}/{run_folder_name(path)} ({m.get('status')}, run {m.get('run_id')})"


def _complete_only(
    chosen: list[tuple[PurePath, dict[str, Any]]], include_incomplete: bool
) -> list[tuple[PurePath, dict[str, Any]]]:
    """The complete runs of `chosen`; the others are left out with one line saying which and why (or, when
    no complete run is left, one error that says how to read, finish or remove them)."""
    if include_incomplete:
        return chosen
    complete = [(p, m) for p, m in chosen if m.get("status") == "complete"]
    unfinished = [(p, m) for p, m in chosen if m.get("status") != "complete"]
    if not unfinished:
        return chosen
    listing = "; ".join(_one_line(p, m) for p, m in unfinished)
    if not complete:
        raise ChatspaceError(
            f"no complete run matches: {listing}. Read what they finished with "
            f"{option('include_incomplete', True)}, finish one with embed-hf --resume, or remove it with "
            "`chatspace runs rm`"
        )
    log.warning(
        "left out %s: %s (%s reads what they finished)",
        plural(len(unfinished), "run that is not complete"),
        listing,
        option("include_incomplete", True),
    )
    return complete


def _warn_mixed_runs(chosen: list[tuple[PurePath, dict[str, Any]]]) -> None:
    """Several runs of one dataset split (other fields, extractions or run names) read together repeat its
    ids: say so, and how to pick one."""
    by_split: dict[tuple, list[str]] = {}
    for path, m in chosen:
        ds = m.get("dataset", {})
        by_split.setdefault((ds.get("label"), ds.get("subset"), ds.get("split")), []).append(
            run_folder_name(path)
        )
    for (label, _, split), names in by_split.items():
        if len(names) > 1:
            log.warning(
                "%d runs of %s/%s are read together (%s): their ids repeat; the run_name column tells the "
                "rows apart, %s picks one",
                len(names),
                label,
                split,
                ", ".join(sorted(names)),
                option("run_name", sorted(names)[0]),
            )


def _check_compatible(chosen: list[tuple[PurePath, dict[str, Any]]]) -> None:
    spaces = {
        (
            m.get("model", {}).get("name"),
            m.get("model", {}).get("dimension"),
            m.get("config", {}).get("embedding_dtype", "float32"),
        )
        for _, m in chosen
    }
    if len(spaces) > 1:
        listing = "; ".join(f"{m.get('model', {}).get('name')} / {_one_line(p, m)}" for p, m in chosen)
        raise UsageError(
            f"{len(chosen)} runs of different models (or dimensions, or stored dtypes) match; their vectors "
            f"do not mix. Pass {option('model')} (and {option('dataset')}/{option('split')}) to pick: "
            f"{listing}"
        )


def _ordered(chosen: list[tuple[PurePath, dict[str, Any]]]) -> list[tuple[PurePath, dict[str, Any]]]:
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


def _shards(path: PurePath, m: dict[str, Any]) -> list[tuple[PurePath, int]]:
    root = run_root_of(path, m)
    return [(root / s.file.path, s.file.rows) for s in manifest_shards(m)]


def shard_paths(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    **filters: Unpack[RunFilters],
) -> list[str]:
    """The shard files of the matching runs, as their manifests list them (same rules as load_embeddings):
    local paths, or URLs (`s3://...`) for a root on an object store.

    For readers that take paths, e.g. `polars.scan_parquet(shard_paths(root))`,
    `duckdb.read_parquet(shard_paths(root))`, `datasets.load_dataset("parquet", data_files=...)`.
    """
    output, runs = open_runs(root, model, dataset, split, filters)
    return [output.url(p) for _, _, shards in runs for p, _ in shards]


def select_runs(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    **filters: Unpack[RunFilters],
) -> list[tuple[PurePath, dict[str, Any], list[tuple[PurePath, int]]]]:
    """(manifest path, manifest, [(shard path, rows), ...]) of each matching run, in load_embeddings'
    order and under its rules, for readers that stream the shards themselves. Filters: RunFilters."""
    return open_runs(root, model, dataset, split, filters)[1]


def open_runs(
    root: str | Path, model: str | None, dataset: str | None, split: str | None, filters: RunFilters
) -> tuple[OutputRoot, list[tuple[PurePath, dict[str, Any], list[tuple[PurePath, int]]]]]:
    """The output root and `select_runs`' answer, for readers that need the root's filesystem too."""
    _check_filters(dict(filters))
    output, chosen = _select(root, model, dataset, split, filters)
    chosen = _complete_only(chosen, bool(filters.get("include_incomplete")))
    _check_compatible(chosen)
    _warn_mixed_runs(chosen)
    return output, [(path, m, _shards(path, m)) for path, m in _ordered(chosen)]


# --- loading ------------------------------------------------------------------------------------------


def load_embeddings(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    as_: str | None = None,
    chunks: str | None = None,
    roles: Sequence[str] | None = None,
    turns: Sequence[int] | None = None,
    **filters: Unpack[RunFilters],
) -> Any:
    """Every embedded row of the matching run(s) under an output root (a local path or a URL such as
    `s3://bucket/prefix`), as one pyarrow Table.

    `model` matches the model's hub id or local folder name (or its slug, as in the output paths);
    `dataset` the hub id, the local path or its label (a file's stem, a folder's name); `split` and
    `subset` exactly; `text_field`, `extract` and `run_name` pick one of several extractions of the same
    dataset (as `chatspace runs` lists them); `run_id` one run. Leave a filter out to match any. Rows come
    shard by shard in unit order, as the manifest lists the shards; each shard's row count is checked
    against the manifest.

    Several matching runs of one model (same dimension and stored dtype) are concatenated, ordered by
    dataset label, subset, split; runs of different models raise a UsageError that lists them. Runs
    whose status is not "complete" are left out with one warning line (an error when no complete run
    matches) unless `include_incomplete=True` (then their finished shards are read).

    `columns` picks columns (of: id, source, dataset, split, text, metadata, embedding, model,
    created_at, run_id, and the run's run_name, text_field, extract).

    `as_` picks the result: None (the default) is the Table exactly as stored (`metadata` JSON text);
    "arrow", "pandas" and "polars" give a Table or DataFrame with `metadata` decoded (a struct column;
    one dict per row in pandas); "numpy" gives (ids, float32 [n, dim] matrix) as `to_numpy` does.

    Chunk and turn rows (`--long-text chunk`, `--extract each-turn`): `chunks="mean"` gives one row per
    source row, its vector the token-weighted mean of its chunks' (unit length when theirs are), its
    text rebuilt from the chunks; `roles=["user"]` and `turns=[0, 1]` keep only those messages' rows.

    One-liners from here: `table.to_pandas()`, `polars.from_arrow(table)`, `datasets.Dataset(table)`,
    `to_numpy(table)` for (ids, float32 matrix); for SQL without loading, `chatspace.connect(root)`.
    """

    if as_ is not None and as_ not in FORMATS:
        raise UsageError(f"as_={as_!r} is not one of {', '.join(FORMATS)}")
    requested, stored, added = _requested_columns(columns)
    if chunks not in (None, "rows", "mean"):
        raise UsageError(f"chunks={chunks!r} is not one of 'rows' (as stored) or 'mean'")
    if stored is not None and (chunks == "mean" or roles is not None or turns is not None):
        stored = list(dict.fromkeys([*stored, "id", "metadata", "embedding", "text"]))
    output, runs = open_runs(root, model, dataset, split, filters)
    tables = [
        _with_run_columns(table, run_values(path, m), added)
        for path, m, table in _checked_shards(output, runs, stored)
    ]
    if tables:
        table = pa.concat_tables(tables)
    else:
        empty = _empty_table([(p, m) for p, m, _ in runs], stored)
        table = _with_run_columns(empty, run_values(*runs[0][:2]), added)
    if table.num_rows and (roles is not None or turns is not None):
        table = select_turns(table, roles, turns)
    if table.num_rows and chunks == "mean":
        table = fold_chunks(table)
    if requested is not None:
        table = table.select(requested)
    return table if as_ is None else convert(table, as_)


def _requested_columns(
    columns: Sequence[str] | None,
) -> tuple[list[str] | None, list[str] | None, list[str]]:
    """(the columns asked for, in order, or None for all; those read from the shards, or None for
    all; the RUN_COLUMNS to add). An unknown name is a UsageError listing the columns there are."""
    if columns is None:
        return None, None, list(RUN_COLUMNS)
    requested = list(dict.fromkeys(columns))
    every = (*COLUMNS, *RUN_COLUMNS)
    unknown = [c for c in requested if c not in every]
    if unknown:
        raise UsageError(f"unknown column(s) {', '.join(unknown)}; columns are: {', '.join(every)}")
    stored = [c for c in requested if c in COLUMNS]
    return requested, stored, [c for c in requested if c in RUN_COLUMNS]


def _checked_shards(output, runs, columns: list[str] | None):
    """(run path, manifest, shard table) for every shard the runs list, in order; a shard that is
    missing or holds another row count than its manifest says is an error naming `verify`."""
    for path, m, shards in runs:
        for shard, rows in shards:
            if not output.is_file(shard):
                raise ChatspaceError(
                    f"{output.url(shard)} is listed in {output.url(path)} but missing; run `chatspace "
                    "verify` on the output root"
                )
            table = read_shard(output, shard, columns=columns)
            if table.num_rows != rows:
                raise ChatspaceError(
                    f"{output.url(shard)} holds {table.num_rows} rows, its manifest says {rows}; run "
                    "`chatspace verify`"
                )
            yield path, m, table


#: Columns every row read back gets from its run (the shards do not store them): which run it came from.
RUN_COLUMNS = ("run_name", "text_field", "extract")


def run_values(path: PurePath, m: dict[str, Any]) -> dict[str, str]:
    """The RUN_COLUMNS of a run: its folder name, the text field and the extraction it embedded."""
    cfg = m.get("config", {})
    return {
        "run_name": run_folder_name(path),
        "text_field": str(cfg.get("text_field") or ""),
        "extract": str(cfg.get("extract") or "text"),
    }


def _with_run_columns(table: pa.Table, values: dict[str, str], names: Sequence[str]) -> pa.Table:
    for name in names:
        table = table.append_column(name, pa.array([values[name]] * table.num_rows, pa.string()))
    return table


def _empty_table(chosen: list[tuple[PurePath, dict[str, Any]]], columns: Sequence[str] | None) -> pa.Table:
    m = chosen[0][1]
    dim = m.get("model", {}).get("dimension") or m.get("config", {}).get("dimensions") or 0
    schema = embedding_schema(int(dim), m.get("config", {}).get("embedding_dtype", "float32"))
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return schema.empty_table()
