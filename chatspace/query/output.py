"""Writing result tables: a table for reading, a JSON list, CSV or Parquet (to stdout or a file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from chatspace.errors import UsageError

PREVIEW_CHARS = 80


def preview(text: str | None, width: int = PREVIEW_CHARS) -> str:
    """One line of at most `width` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def dataset_label(name: str, width: int) -> str:
    """A dataset as the table shows it: a local path by its file or folder name, a hub id as is; too
    long, its end (where names differ) is kept."""
    if name.startswith(("/", "~", "./", "../")):
        name = Path(name).name or name
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def readable(table: pa.Table) -> str:
    """Results as a plain text table, one block per query: rank, score, id, dataset, text preview."""
    lines: list[str] = []
    rows = table.to_pylist()
    if not rows:
        return "no results"
    id_width = min(40, max(len("ID"), *(len(str(r["id"])) for r in rows)))
    ds_width = min(30, max(len("DATASET"), *(len(dataset_label(str(r["dataset"]), 30)) for r in rows)))
    current = None
    for r in rows:
        if r["query_index"] != current:
            current = r["query_index"]
            if lines:
                lines.append("")
            lines.append(f"query: {preview(r['query'], 100)}")
            lines.append(f"{'RANK':>4}  {'SCORE':>6}  {'ID':<{id_width}}  {'DATASET':<{ds_width}}  TEXT")
        lines.append(
            f"{r['rank']:>4}  {r['score']:>6.4f}  {str(r['id'])[:id_width]:<{id_width}}  "
            f"{dataset_label(str(r['dataset']), ds_width):<{ds_width}}  {preview(r['text'])}"
        )
    return "\n".join(lines)


def write_results(table: pa.Table, fmt: str, output: str | None, echo: Callable[[str], None]) -> None:
    """`table` as `fmt` (table, json, csv, parquet) into `output`, or onto stdout through `echo`."""
    if fmt == "parquet":
        if not output:
            raise UsageError("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        echo(f"wrote {table.num_rows:,} results to {output}")
        return
    if fmt == "json":
        import orjson

        text = orjson.dumps(table.to_pylist(), option=orjson.OPT_INDENT_2).decode()
    elif fmt == "csv":
        import io

        import pyarrow.csv as pa_csv

        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer)
        text = buffer.getvalue().decode().rstrip("\n")
    else:
        text = readable(table)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        echo(f"wrote {table.num_rows:,} results to {output}")
    else:
        echo(text)
