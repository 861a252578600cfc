"""The embeddings of a run in the shape each library expects, so a nearest-neighbour query is one line.

Shards store `metadata` as JSON text and `embedding` as a fixed-size list. Read raw, polars shows the
metadata as a string and duckdb sees the vectors as `FLOAT[]`, on which `array_cosine_similarity`
fails until cast to `FLOAT[dim]`. Here the metadata is decoded (a struct column; dicts in pandas), and
vectors become one numpy matrix; `chatspace.store.sql` gives duckdb its typed view.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from chatspace.errors import ChatspaceError, UsageError

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


def require_extra(module: str, extra: str = "read"):
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
        ids, vectors = to_numpy(table)
        # Zero-copy from Arrow is read-only; a matrix handed over on its own should take `X /= norms`.
        return ids, vectors if vectors.flags.writeable else vectors.copy()
    table = decode_metadata(table)
    if as_ == "arrow":
        return table
    if as_ == "polars":
        return require_extra("polars").from_arrow(table)
    require_extra("pandas")
    return table.to_pandas()


def to_numpy(table: pa.Table, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors): the `id` column as an object array and the embeddings as an [n, dim] matrix.

    Vectors are float32 by default, whatever the stored precision (float16 runs are widened).
    """
    if "embedding" not in table.column_names:
        raise UsageError("the table has no `embedding` column (load it with that column)")
    ids = (
        table.column("id").to_numpy(zero_copy_only=False)
        if "id" in table.column_names
        else np.empty(table.num_rows, dtype=object)
    )
    emb = table.column("embedding").combine_chunks()
    if isinstance(emb, pa.ChunkedArray):  # an empty table combines to an empty chunked array
        emb = emb.chunks[0] if emb.num_chunks else pa.array([], type=emb.type)
    dim = emb.type.list_size if pa.types.is_fixed_size_list(emb.type) else None
    if emb.null_count:
        raise ChatspaceError(f"{emb.null_count} row(s) have no embedding")
    if dim is None:  # a variable-size list (not written by chatspace, but readable)
        vectors = np.asarray(emb.to_pylist(), dtype=dtype)
    else:
        values = emb.flatten().to_numpy(zero_copy_only=False)
        vectors = values.astype(dtype, copy=False).reshape(len(emb), dim)
    return ids, vectors
