"""The embeddings of a run in the shape each library expects, so a nearest-neighbour query is one line.

Shards store `metadata` as JSON text and `embedding` as a fixed-size list. Read raw, polars shows the
metadata as a string and duckdb sees the vectors as `FLOAT[]`, on which `array_cosine_similarity`
fails until cast to `FLOAT[dim]`. Here the metadata is decoded (a struct column; dicts in pandas) and
duckdb gets a view `embeddings` whose `embedding` is already `FLOAT[dim]`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.json as pa_json

from chatspace.errors import UsageError

if TYPE_CHECKING:
    import duckdb

FORMATS = ("arrow", "pandas", "polars", "numpy")


def decode_metadata(table: pa.Table) -> pa.Table:
    """`table` with its `metadata` column (JSON text) parsed into a struct column (same rows, same order)."""
    if "metadata" not in table.column_names:
        return table
    column = table.column("metadata")
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return table  # already decoded
    texts = [t if t is not None else "{}" for t in column.to_pylist()]
    if texts:
        parsed = pa_json.read_json(io.BytesIO("\n".join(texts).encode())).to_struct_array()
        decoded: pa.ChunkedArray = (
            parsed if isinstance(parsed, pa.ChunkedArray) else pa.chunked_array([parsed])
        )
    else:
        decoded = pa.chunked_array([], type=pa.struct([]))
    index = table.column_names.index("metadata")
    return table.set_column(index, pa.field("metadata", decoded.type), decoded)


def _require(module: str, extra: str = "read"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"{module} is not installed: pip install {module} (or 'chatspace[{extra}]')"
        ) from None


def convert(table: pa.Table, as_: str) -> Any:
    """An Arrow table of embedding rows as `as_`:

    * "arrow": the table, `metadata` a struct column;
    * "pandas": a DataFrame, `embedding` one float32 numpy array per row, `metadata` one dict per row;
    * "polars": a DataFrame, `embedding` an Array(Float32, dim), `metadata` a Struct;
    * "numpy": (ids, vectors), an object array and a writable float32 [n, dim] matrix.
    """
    if as_ not in FORMATS:
        raise UsageError(f"as_={as_!r} is not one of {', '.join(FORMATS)}")
    if as_ == "numpy":
        from chatspace.store.reader import to_numpy

        ids, vectors = to_numpy(table)
        # Zero-copy from Arrow is read-only; a matrix handed over on its own should take `X /= norms`.
        return ids, vectors if vectors.flags.writeable else vectors.copy()
    table = decode_metadata(table)
    if as_ == "arrow":
        return table
    if as_ == "polars":
        return _require("polars").from_arrow(table)
    _require("pandas")
    return table.to_pandas()


def connect(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    subset: str | None = None,
    run_id: str | None = None,
    include_incomplete: bool = False,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    """A duckdb connection with a view `embeddings` over the matching runs' shards (as load_embeddings
    selects them), its `embedding` column typed `FLOAT[dim]` and `metadata` typed JSON:

        con = chatspace.connect("demo-output")
        con.sql("select id, array_cosine_similarity(embedding, (select embedding from embeddings "
                "where id = 'demo-0')) as score from embeddings order by score desc limit 5")

    Nothing is loaded: duckdb reads the Parquet shards in place.
    """
    from chatspace.store.reader import select_runs

    duck = _require("duckdb")
    runs = select_runs(
        root, model, dataset, split, subset=subset, run_id=run_id, include_incomplete=include_incomplete
    )
    m = runs[0][1]
    dim = int(m.get("model", {}).get("dimension") or m.get("config", {}).get("dimensions") or 0)
    paths = [str(p) for _, _, shards in runs for p, _ in shards]
    con = connection if connection is not None else duck.connect()
    if paths:
        listing = ", ".join(_quote(p) for p in paths)
        con.execute(
            "create or replace view embeddings as select * replace "
            f"(embedding::FLOAT[{dim}] as embedding, metadata::JSON as metadata) "
            f"from read_parquet([{listing}])"
        )
    else:  # a run with no shard yet: the same columns, no rows
        con.execute(
            "create or replace view embeddings as select * from (select ''::VARCHAR as id, "
            "''::VARCHAR as source, ''::VARCHAR as dataset, ''::VARCHAR as split, ''::VARCHAR as text, "
            f"NULL::JSON as metadata, NULL::FLOAT[{dim}] as embedding, ''::VARCHAR as model, "
            "now()::TIMESTAMPTZ as created_at, ''::VARCHAR as run_id) where false"
        )
    return con


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def sql(root: str | Path, query: str, **filters: Any) -> duckdb.DuckDBPyRelation:
    """Run `query` (SQL over the view `embeddings`) on the matching runs under `root`; a duckdb relation."""
    return connect(root, **filters).sql(query)


def run_sql(root: str | Path, query: str, output_format: str = "table", **filters: Any) -> list[str]:
    """`chatspace sql`: the lines to print for `query`'s result; a duckdb error is one UsageError line."""
    duck = _require("duckdb")
    filters = {k: v for k, v in filters.items() if v is not None}
    try:
        relation = sql(root, query, **filters)
        if relation is None:  # a statement with no result (e.g. `create table ...`)
            return []
        if output_format == "table":
            return [str(relation).rstrip("\n")]
        names = relation.columns
        rows = relation.fetchall()
    except duck.Error as e:
        message = " ".join(str(e).split())
        raise UsageError(f"query failed: {message}") from None
    if output_format == "json":
        import orjson

        return [
            orjson.dumps(dict(zip(names, row, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY).decode()
            for row in rows
        ]
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(rows)
    return [buffer.getvalue().rstrip("\n")]
