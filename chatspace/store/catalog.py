"""Which runs an output root holds: their manifests found, described and listed (`chatspace runs`).

A manifest says `running` until its supervisor ends the run; one whose output lock no live supervisor
holds was killed outright, and is reported `interrupted` with what its unit records show done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import orjson

from chatspace.store.layout import manifest_paths, open_root, run_root_of
from chatspace.store.lock import run_is_live
from chatspace.store.manifest import read_manifest
from chatspace.store.records import RecordError, UnitRecord
from chatspace.store.root import OutputRoot

log = logging.getLogger(__name__)


def _describe(output: OutputRoot, manifest_path: PurePath, m: dict[str, Any]) -> dict[str, Any]:
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
        "roles": cfg.get("roles"),
        "long_text": cfg.get("long_text", "truncate"),
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
        "manifest": output.url(manifest_path),
        "root": output.url(run_root_of(manifest_path, m)),
    }


def _as_found(output: OutputRoot, manifest_path: PurePath, m: dict[str, Any]) -> dict[str, Any]:
    """A manifest says `running` until its supervisor ends the run. When no live supervisor holds the
    output's lock, it was killed outright: the run is `interrupted`, with what its unit records show done."""
    if m.get("status") != "running" or run_is_live(output, manifest_path.parent):
        return m
    root = run_root_of(manifest_path, m)
    shards, units, rows = [], 0, 0
    for rec_path in output.glob(manifest_path.parent / "units", "unit-*.json"):
        try:
            rec = UnitRecord.from_json(orjson.loads(output.read_bytes(rec_path)))
            shard = rec.shard
            if rec.run_id != m.get("run_id"):
                continue
            if shard is not None and output.size(root / shard.path) != shard.bytes:
                continue
        except (OSError, orjson.JSONDecodeError, RecordError):
            continue
        units += 1
        rows += rec.embedded
        if shard is not None:
            shards.append({"unit": rec.unit, **shard.to_json(), "device": rec.device, "run_id": rec.run_id})
    totals = {
        **m.get("totals", {}),
        "units_done": units,
        "rows": rows,
        "shards": len(shards),
        "bytes": sum(s["bytes"] for s in shards),
    }
    return {**m, "status": "interrupted", "shards": shards, "totals": totals}


def find_runs(root: str | Path) -> tuple[OutputRoot, list[tuple[PurePath, dict[str, Any]]]]:
    """The output root, and (manifest path, manifest) of every readable run under `root` (a root, a
    run's index folder or a manifest; a local path or a URL); unreadable ones are logged."""
    output, base = open_root(root)
    out = []
    for path in manifest_paths(output, base):
        m = read_manifest(output, path)
        if m is None:
            log.warning("%s: not a readable chatspace manifest; skipped", output.url(path))
            continue
        out.append((path, _as_found(output, path, m)))
    return output, out


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """One dict per run under an output root, from its manifest: model, dataset, split, rows, dimension,
    status, when (finished, else last updated), plus run id, shard count, units, manifest path.

    A manifest that cannot be read is listed with status "unreadable" (and None elsewhere).
    Ordered by model, dataset, subset, split.
    """
    output, base = open_root(root)
    runs = []
    for path in manifest_paths(output, base):
        m = read_manifest(output, path)
        if m is None:
            runs.append({"status": "unreadable", "manifest": output.url(path)})
            continue
        runs.append(_describe(output, path, _as_found(output, path, m)))
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
        text += f" ({r['extract']}{', ' + r['roles'] if r.get('roles') else ''})"
    if r.get("long_text") not in (None, "truncate"):
        text += f" {{{r['long_text']}}}"  # chunk rows, or their means
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
