"""Shards: the Arrow table of a unit's rows, written atomically; the checksum is of the final bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chatspace.store.root import OutputRoot
from chatspace.store.schema import embedding_schema


@dataclass(frozen=True)
class ShardInfo:
    path: PurePath
    rows: int
    bytes: int
    sha256: str
    norm_min: float | None
    norm_max: float | None


@dataclass(frozen=True)
class ShardRows:
    """The rows of one shard, column by column (texts as embedded, metadata as JSON text)."""

    ids: Sequence[str]
    texts: Sequence[str]
    metadata_json: Sequence[str] | pa.Array
    embeddings: np.ndarray  # [rows, dim], in the stored dtype
    source: str
    dataset: str
    split: str
    model: str
    run_id: str
    created_at: datetime


def metadata_json(
    prefix: str,
    files_json: Sequence[str],
    rows: np.ndarray,
    file_no: np.ndarray,
    file_row: np.ndarray,
    tokens: np.ndarray,
    truncated: np.ndarray,
    text_chars: np.ndarray,
    extra: Sequence[dict | None] | None = None,
) -> pa.Array:
    """Each row's metadata as JSON text, built column-wise by Arrow, byte for byte what
    `orjson.dumps({**common, "row", "file", "file_row", "tokens", "truncated"[, "text_chars"]})` writes.

    `prefix` is the JSON of the keys common to every row without its closing brace, `files_json` each
    source file's path as a JSON string; `text_chars` is -1 where the text was kept whole; `extra`, per
    row, the keys `--extract each-turn` and `--long-text` add (`turn`, `chunk`, `chunks`), after the others."""

    def digits(values: np.ndarray) -> pa.Array:
        return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())

    has_chars = pa.array(np.asarray(text_chars) >= 0)
    return pc.binary_join_element_wise(
        prefix + ',"row":',
        digits(rows),
        ',"file":',
        pc.take(pa.array(files_json, pa.string()), pa.array(np.asarray(file_no, dtype=np.int64))),
        ',"file_row":',
        digits(file_row),
        ',"tokens":',
        digits(tokens),
        pc.if_else(pa.array(np.asarray(truncated, dtype=bool)), ',"truncated":true', ',"truncated":false'),
        pc.if_else(has_chars, pc.binary_join_element_wise(',"text_chars":', digits(text_chars), ""), ""),
        "}"
        if extra is None
        else pa.array([("," + orjson.dumps(x).decode()[1:] if x else "}") for x in extra]),
        "",
    )


def build_table(rows: ShardRows, embedding_dtype: str = "float32") -> pa.Table:
    """The Arrow table of a shard, in the run's declared schema."""
    n, dim = len(rows.ids), rows.embeddings.shape[1]
    schema = embedding_schema(dim, embedding_dtype)
    return pa.Table.from_arrays(
        [
            pa.array(rows.ids, pa.string()),
            pa.array([rows.source] * n, pa.string()),
            pa.array([rows.dataset] * n, pa.string()),
            pa.array([rows.split] * n, pa.string()),
            pa.array(rows.texts, pa.string()),
            rows.metadata_json
            if isinstance(rows.metadata_json, pa.Array)
            else pa.array(rows.metadata_json, pa.string()),
            pa.FixedSizeListArray.from_arrays(
                pa.array(rows.embeddings.reshape(-1), schema.field("embedding").type.value_type), dim
            ),
            pa.array([rows.model] * n, pa.string()),
            pa.array([rows.created_at] * n, pa.timestamp("us", tz="UTC")),
            pa.array([rows.run_id] * n, pa.string()),
        ],
        schema=schema,
    )


def write_shard(root: OutputRoot, path: PurePath, table: pa.Table, embeddings: np.ndarray) -> ShardInfo:
    """Write `table` to `path` atomically; `embeddings` (float32, as stored) give the norm range."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd", row_group_size=4096, **_vector_encoding(table.schema))
    data = memoryview(buffer.getvalue())
    digest = hashlib.sha256(data).hexdigest()
    root.write_atomic(path, data, durable=True)
    norms = np.linalg.norm(embeddings.astype(np.float32), axis=1) if len(embeddings) else None
    return ShardInfo(
        path,
        table.num_rows,
        len(data),
        digest,
        float(norms.min()) if norms is not None else None,
        float(norms.max()) if norms is not None else None,
    )


def _vector_encoding(schema: pa.Schema) -> dict:
    """Parquet encodings for the vectors: no dictionary (vectors never repeat: trying one doubled the
    write time and grew the file), and float32 values split by byte before zstd (~10% smaller files).
    Both are standard Parquet that pyarrow, polars, duckdb and `datasets` read."""
    names = schema.names
    options: dict = {"use_dictionary": [n for n in names if n != "embedding"]}
    if "embedding" in names and schema.field("embedding").type.value_type == pa.float32():
        options["use_byte_stream_split"] = ["embedding.list.element"]
    return options


def read_shard(root: OutputRoot, path: PurePath, columns: Sequence[str] | None = None) -> pa.Table:
    return pq.read_table(str(path), columns=columns, filesystem=root.arrow_filesystem)


def remove_stale_temporaries(root: OutputRoot, directory: PurePath, pid: int | None = None) -> int:
    """Temporary shard files left by a killed run (of one worker `pid`, or any); never output."""
    stale = root.glob(directory, f".shard-*.parquet.tmp-{pid if pid is not None else '*'}")
    for p in stale:
        root.remove(p)
    return len(stale)
