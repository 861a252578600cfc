"""SQL over a run's embeddings: a duckdb view `embeddings` whose `embedding` is already `FLOAT[dim]`.

Read raw, duckdb sees the vectors as `FLOAT[]`, on which `array_cosine_similarity` fails until cast.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatspace.errors import UsageError, option
from chatspace.store.frames import require_extra
from chatspace.store.reader import RunFilters, open_runs, run_values

if TYPE_CHECKING:
    import duckdb
    from typing_extensions import Unpack


def connect(
    root: str | Path,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
    **filters: Unpack[RunFilters],
) -> duckdb.DuckDBPyConnection:
    """A duckdb connection with a view `embeddings` over the matching runs' shards (as load_embeddings
    selects them), its `embedding` column typed `FLOAT[dim]`, `metadata` typed JSON, and each row's
    `run_name`, `text_field` and `extract`; and a macro `embedding_of(id)`, the vector of the one row
    with that id (an error naming the id when no row or several rows have it):

        con = chatspace.connect("demo-output", run_name="train")
        con.sql("select id, array_cosine_similarity(embedding, embedding_of('demo-0001')) as score "
                "from embeddings order by score desc limit 5")

    Nothing is loaded: duckdb reads the Parquet shards in place (on an object store, through the same
    fsspec filesystem the run wrote with, so no duckdb extension or second set of credentials is needed).
    """
    duck = require_extra("duckdb")
    output, runs = open_runs(root, model, dataset, split, filters)
    m = runs[0][1]
    dim = int(m.get("model", {}).get("dimension") or m.get("config", {}).get("dimensions") or 0)
    con = connection if connection is not None else duck.connect()
    if not output.is_local:
        con.register_filesystem(output.fs)  # duckdb reads the bucket through the root's own filesystem
    selects = []
    for path, m, shards in runs:  # one select per run, which adds the run's own columns to its rows
        if not shards:
            continue
        listing = ", ".join(_quote(output.url(p)) for p, _ in shards)
        extra = ", ".join(f"{_quote(v)} as {k}" for k, v in run_values(path, m).items())
        selects.append(
            "select * replace "
            f"(embedding::FLOAT[{dim}] as embedding, metadata::JSON as metadata), {extra} "
            f"from read_parquet([{listing}])"
        )
    if selects:
        con.execute("create or replace view embeddings as " + " union all ".join(selects))
    else:  # a run with no shard yet: the same columns, no rows
        con.execute(
            "create or replace view embeddings as select * from (select ''::VARCHAR as id, "
            "''::VARCHAR as source, ''::VARCHAR as dataset, ''::VARCHAR as split, ''::VARCHAR as text, "
            f"NULL::JSON as metadata, NULL::FLOAT[{dim}] as embedding, ''::VARCHAR as model, "
            "now()::TIMESTAMPTZ as created_at, ''::VARCHAR as run_id, ''::VARCHAR as run_name, "
            "''::VARCHAR as text_field, ''::VARCHAR as extract) where false"
        )
    pick = option("run_name")
    con.execute(
        "create or replace macro embedding_of(wanted) as (select case count(*) when 1 then first(embedding) "
        "when 0 then error('no row has id ' || wanted || ' in the runs read') "
        "else error('id ' || wanted || ' is in ' || count(*) || ' rows (of several runs: pick one with "
        f"{pick.replace(chr(39), chr(39) * 2)})') end from embeddings where id = wanted)"
    )
    return con


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def sql(root: str | Path, query: str, **filters: Any) -> duckdb.DuckDBPyRelation:
    """Run `query` (SQL over the view `embeddings`) on the matching runs under `root`; a duckdb relation."""
    return connect(root, **filters).sql(query)


def run_sql(root: str | Path, query: str, output_format: str = "table", **filters: Any) -> list[str]:
    """`chatspace sql`: the lines to print for `query`'s result; a duckdb error is one UsageError line."""
    duck = require_extra("duckdb")
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
