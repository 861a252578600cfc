"""Which rows a run skipped, so a user can find them: `skipped.parquet` beside the manifest, one row per
skipped dataset row (its global row index, its id where it has one, the reason, the unit).

Workers count skipped rows by reason; at the end of the run the units that skipped any are read again
(only the text and id fields, and only those units) and extracted the same way, which names the rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.config import DataConfig
from chatspace.data.extract import Skip, extract_items, needed_columns, row_id
from chatspace.data.units import WorkUnit
from chatspace.store.layout import RunLayout

SKIPPED_NAME = "skipped.parquet"
SCHEMA = pa.schema(
    [
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("unit", pa.int32(), nullable=False),
    ]
)


def skipped_rows(source: Any, cfg: DataConfig, units: Iterable[WorkUnit]) -> pa.Table:
    """The skipped rows of `units` (read again from `source` under the data part's text field and extraction)."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    wanted = needed_columns(cfg.text_field, cfg.id_field)
    for unit in units:
        indices = [int(i) for i in unit.rows]
        for index, row in zip(indices, source.read(indices, wanted), strict=True):
            why: dict[str, int] = {}  # extracted as the worker did (every --extract mode, --roles)
            for _ in extract_items(
                [index],
                [row],
                text_field=cfg.text_field,
                mode=cfg.extract,
                id_field=cfg.id_field,
                split=cfg.base_split,
                roles=cfg.roles,
                skipped=why,
                counts={},
            ):
                pass
            reason = next(iter(why), None)
            rid = None
            if reason is not None and row is not None:
                try:
                    rid = row_id(row, cfg.id_field, cfg.base_split, index)
                except Skip:
                    rid = None
            if reason is None:
                continue
            columns["row_index"].append(index)
            columns["id"].append(rid)
            columns["reason"].append(reason)
            columns["unit"].append(unit.index)
    return pa.table(columns, schema=SCHEMA)


def write_skipped_rows(layout: RunLayout, table: pa.Table) -> dict[str, Any]:
    """Write the table beside the manifest; what the manifest records of it (`skipped_rows_file`)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    layout.output.write_atomic(layout.index_dir / SKIPPED_NAME, buffer.getvalue())
    final = layout.final  # an --overwrite writes aside, then moves the run (this file too) into place
    return {"path": final.relative(final.index_dir / SKIPPED_NAME), "rows": table.num_rows}
