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


def _open_split_files(files: list[Path], cache_dir: Path) -> tuple[list, list[dict], set[str], list]:
    """Each file of a split opened for reading: the entries, what the info says of each file, the
    columns of all of them, and the (file name, schema) of those that have a schema."""
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
    return entries, file_infos, columns, schemas


def _mixed_split_names_note(split_name: str, files: list[Path]) -> str | None:
    prefixes = {m.group(1).lower() for f in files if (m := SPLIT_LIKE.match(f.name))}
    if len(prefixes) <= 1:
        return None
    return (
        f"{split_name}: its files are named for different splits ({', '.join(sorted(prefixes))}) "
        "but are read as one; put each split's files in a folder of its own (train/, test/)"
    )


def _read_sample(name: str, split_name: str, entries: list, columns: set[str], rows: int, n: int):
    """Up to `n` rows of the split (spread over it, see `sample_indices`) and how they were chosen."""
    indices, method = sample_indices(rows, n)
    spec = SourceSpec(name, "local", split_name, None, tuple(entries), tuple(sorted(columns)), mode="indexed")
    src = Source(spec)
    try:
        return src.read(indices, sorted(columns)), method
    finally:
        src.close()


def _describe_split(
    found: Findings, name: str, split_name: str, files: list[Path], sample_rows: int, cache_dir: Path
) -> list[str]:
    """Fill in one split's entry (and, for the main split, the features, sample and text fields);
    returns the notes about it."""
    entries, file_infos, columns, schemas = _open_split_files(files, cache_dir)
    rows = sum(e.num_rows for e in entries)
    notes: list[str] = []
    all_csv = all(fi["format"] == "csv" for fi in file_infos)
    features = _schema_features(schemas, all_csv, notes, split_name) if schemas else {}
    if mixed := _mixed_split_names_note(split_name, files):
        notes.append(mixed)
    jsonl = any(e.fmt == "jsonl" for e in entries)
    is_main = split_name == found.main
    rows_read: list[Any] = []
    if rows and (is_main or jsonl):
        # JSONL types need rows to look at, whatever the size of the text-statistics sample.
        n = max(sample_rows, JSONL_TYPE_ROWS) if jsonl else sample_rows
        rows_read, method = _read_sample(name, split_name, entries, columns, rows, n)
        if is_main and sample_rows > 0:
            found.sample = {"split": split_name, "rows": len(rows_read), "of": rows, "method": method}
    if jsonl:
        features = {**infer_features(rows_read, sorted(columns), notes, split_name), **features}
    invalid = sum(1 for r in rows_read if r is None)
    if invalid:
        notes.append(
            f"{split_name}: {invalid} of {plural(len(rows_read), 'sampled row')} "
            f"{'is' if invalid == 1 else 'are'} not a JSON object"
        )
    if rows == 0:
        notes.append(f"{split_name}: no rows")
    found.splits[split_name] = {
        "rows": rows,
        "bytes": sum(fi["bytes"] for fi in file_infos),
        "files": file_infos,
        "columns": sorted(columns),
        "features": features,
    }
    if is_main:
        found.features = features
        good = [r for r in rows_read if isinstance(r, dict)] if sample_rows > 0 else []
        found.survey(good, list(features) or sorted(columns))
    return notes


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
    found = Findings(main_split(list(layout), split), notes=notes)
    for split_name, files in layout.items():
        notes.extend(_describe_split(found, name, split_name, files, sample_rows, cache_dir))
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
