"""The one Arrow schema of every shard of a run, declared before any row is written."""

from __future__ import annotations

import pyarrow as pa

COLUMNS = (
    "id",
    "source",
    "dataset",
    "split",
    "text",
    "metadata",
    "embedding",
    "model",
    "created_at",
    "run_id",
)


def embedding_schema(dimension: int, embedding_dtype: str = "float32") -> pa.Schema:
    value_type = pa.float16() if embedding_dtype == "float16" else pa.float32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("dataset", pa.string()),
            pa.field("split", pa.string()),
            pa.field("text", pa.string()),
            # JSON text: provenance, field, extraction mode, token count, truncated flag.
            pa.field("metadata", pa.string()),
            pa.field("embedding", pa.list_(pa.field("item", value_type), dimension)),
            pa.field("model", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
            pa.field("run_id", pa.string()),
        ]
    )


def schema_matches(actual: pa.Schema, expected: pa.Schema) -> bool:
    return actual.remove_metadata().equals(expected.remove_metadata())
