"""Describing a local path the way `embed-hf` would read it: its splits, files, schemas and a sample.

Row counts come from Parquet footers, Arrow files and the JSONL line index (cached under the output
root's `datasets/`, where a later run finds it); only the sample rows are read. Feature types come from
the Parquet/Arrow schemas; JSONL has none, so its types are inferred from the sample, mixed types called
out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chatspace.data.describe.findings import Findings, infer_features, main_split, plural
from chatspace.data.formats import SUFFIXES, file_schema, format_name, open_local_file
from chatspace.data.sources import SPLIT_NAMES, Source, SourceSpec, local_files, save_to_disk_files, split_of
from chatspace.errors import UsageError

SPLIT_LIKE = re.compile(r"^(train|test|validation|valid|dev|eval)(?=[-_.])", re.IGNORECASE)
SAMPLE_BLOCKS = 4  # the sample is this many contiguous runs of rows, spread over the split
JSONL_TYPE_ROWS = 50  # JSONL: at least this many rows sampled to infer the column types


def _has_data_files(folder: Path) -> bool:
    return any(
        p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        for p in folder.rglob("*")
    )


def _local_layout(path: Path, split: str | None) -> tuple[str, dict[str, list[Path]], list[str]]:
    """(kind, {split: files as embed-hf would read them}, notes) of a local path."""
    notes: list[str] = []
    if path.is_file():
        return "file", {split or "train": [path]}, notes
    if (path / "dataset_dict.json").is_file():
        names = orjson.loads((path / "dataset_dict.json").read_bytes()).get("splits", [])
        if split is not None and split not in names:
            raise UsageError(f"split {split!r} not in {path} (it has: {', '.join(names)})")
        chosen = [split] if split else list(names)
        return "save_to_disk DatasetDict", {s: save_to_disk_files(path, s) or [] for s in chosen}, notes
    if (path / "state.json").is_file():
        return "save_to_disk Dataset", {split or "train": save_to_disk_files(path, split or "train")}, notes
    if split is not None:
        files = local_files(path, split)
        return "folder", {split: files}, notes
    subdirs = sorted(
        d for d in path.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES and _has_data_files(d)
    )
    if subdirs:
        top_level = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if top_level:
            notes.append(
                f"{len(top_level)} data file(s) directly under {path} are in no split folder and are not read"
            )
        return "folder of split folders", {d.name: local_files(path, d.name) for d in subdirs}, notes
    named = sorted({s for p in path.rglob("*") if p.is_file() and (s := split_of(p.name))})
    if named:
        return "folder of split-named files", {s: local_files(path, s) for s in named}, notes
    files = local_files(path, "train")
    return "folder", {"train": files}, notes


def _schema_features(
    schemas: list[tuple[str, Any]], csv: bool, notes: list[str], split: str
) -> dict[str, dict[str, Any]]:
    """Column -> {"type"} from the files' Arrow schemas; disagreements between files become notes."""
    features: dict[str, dict[str, Any]] = {}
    seen_in: Counter[str] = Counter()
    for file_name, schema in schemas:
        for field in schema:
            seen_in[field.name] += 1
            t = str(field.type)
            if field.name not in features:
                features[field.name] = {"type": t}
                if csv:
                    features[field.name]["note"] = "CSV: read as text"
            elif features[field.name]["type"] != t and "other_types" not in features[field.name]:
                features[field.name]["other_types"] = [t]
                notes.append(
                    f"{split}: column {field.name!r} is {features[field.name]['type']} in some files "
                    f"and {t} in others (e.g. {file_name})"
                )
    for col, n in seen_in.items():
        if n < len(schemas):
            features[col]["in_files"] = n
            notes.append(f"{split}: column {col!r} is in {n} of {len(schemas)} files")
    return features


def inspect_local(
    name: str, subset: str | None, split: str | None, sample_rows: int, cache_dir: Path
) -> dict[str, Any]:
    path = Path(name).expanduser()
    if not path.exists():
        from chatspace.data.sources import missing_path

        raise missing_path(name)
    kind, layout, notes = _local_layout(path, split)
    if subset:
        notes.append(f"--subset {subset} has no meaning for a local path; ignored")
    main = main_split(list(layout), split)
    found = Findings(main, notes=notes)
    for split_name, files in layout.items():
        entries, file_infos, columns, schemas = [], [], set(), []
        for f in files:
            entry, cols = open_local_file(f, cache_dir)
            entries.append(entry)
            columns |= cols
            file_infos.append(
                {"path": str(f), "format": format_name(f), "rows": entry.num_rows, "bytes": f.stat().st_size}
            )
            schema = file_schema(entry)
            if schema is not None:
                schemas.append((f.name, schema))
        rows = sum(e.num_rows for e in entries)
        split_notes: list[str] = []
        split_features = (
            _schema_features(
                schemas, all(fi["format"] == "csv" for fi in file_infos), split_notes, split_name
            )
            if schemas
            else {}
        )
        prefixes = {m.group(1).lower() for f in files if (m := SPLIT_LIKE.match(f.name))}
        if len(prefixes) > 1:
            split_notes.append(
                f"{split_name}: its files are named for different splits ({', '.join(sorted(prefixes))}) "
                "but are read as one; put each split's files in a folder of its own (train/, test/)"
            )
        jsonl = any(e.fmt == "jsonl" for e in entries)
        rows_read: list[Any] = []
        if rows and (split_name == main or jsonl):
            # JSONL types need rows to look at, whatever the size of the text-statistics sample.
            n = max(sample_rows, JSONL_TYPE_ROWS) if jsonl else sample_rows
            indices, method = sample_indices(rows, n)
            spec = SourceSpec(
                name, "local", split_name, None, tuple(entries), tuple(sorted(columns)), mode="indexed"
            )
            src = Source(spec)
            try:
                rows_read = src.read(indices, sorted(columns))
            finally:
                src.close()
            if split_name == main and sample_rows > 0:
                found.sample = {"split": split_name, "rows": len(rows_read), "of": rows, "method": method}
        if jsonl:
            inferred = infer_features(rows_read, sorted(columns), split_notes, split_name)
            split_features = {**inferred, **split_features}
        invalid = sum(1 for r in rows_read if r is None)
        if invalid:
            split_notes.append(
                f"{split_name}: {invalid} of {plural(len(rows_read), 'sampled row')} "
                f"{'is' if invalid == 1 else 'are'} not a JSON object"
            )
        if rows == 0:
            split_notes.append(f"{split_name}: no rows")
        found.splits[split_name] = {
            "rows": rows,
            "bytes": sum(fi["bytes"] for fi in file_infos),
            "files": file_infos,
            "columns": sorted(columns),
            "features": split_features,
        }
        notes.extend(split_notes)
        if split_name == main:
            found.features = split_features
            good = [r for r in rows_read if isinstance(r, dict)] if sample_rows > 0 else []
            found.survey(good, list(split_features) or sorted(columns))
    return {
        "name": name,
        "source": "local",
        "location": str(path.resolve()),
        "kind": kind,
        "subset": None,
        **found.as_info(),
    }


def sample_indices(total: int, k: int) -> tuple[np.ndarray, str]:
    """At most k row indices: all rows when they fit, else a few contiguous blocks spread over the rows."""
    if k <= 0 or total <= 0:
        return np.zeros(0, dtype=np.int64), "none"
    if k >= total:
        return np.arange(total, dtype=np.int64), "all rows"
    blocks = min(SAMPLE_BLOCKS, k)
    length = math.ceil(k / blocks)
    starts = np.linspace(0, total - length, blocks).astype(np.int64)
    idx = np.unique(np.concatenate([np.arange(s, s + length) for s in starts]))[:k]
    return idx, f"{blocks} blocks spread over the split"
