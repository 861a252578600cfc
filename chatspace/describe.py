"""`chatspace download-dataset`: lightweight metadata about a dataset, without downloading its data.

What it finds -- splits, features and their types, row counts, data files with their sizes, and the
fields worth embedding (string columns and conversation-shaped columns, with length statistics from a
small sample) -- is printed and written to
`{output_root}/datasets/raw/{source}/{dataset}/{subset or split or "default"}/info.json`
(plus `summary.txt`, the printed text).

- Local paths are opened the way `embed-hf` opens them (`chatspace.data.sources`): row counts come from
  Parquet footers, Arrow files and the JSONL line index (cached under `{output_root}/datasets/`, where a
  later run finds it); only the sample rows are read. Feature types come from the Parquet/Arrow schemas;
  JSONL has none, so its types are inferred from the sample, mixed types called out.
- Hub datasets: `HfApi().dataset_info` (files and sizes) and `datasets.load_dataset_builder(...).info`
  (features, splits, row counts), Parquet footers where the info has no counts, and a streamed sample
  of `sample_rows` rows for the text statistics. No data files are downloaded.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chatspace.data.field_survey import CONVERSATION_MODES, id_candidates, survey_fields
from chatspace.errors import UsageError
from chatspace.store.layout import slug

log = logging.getLogger(__name__)

FORMAT = "chatspace.dataset-info/1"
SPLIT_LIKE = re.compile(r"^(train|test|validation|valid|dev|eval)(?=[-_.])", re.IGNORECASE)
MAX_FOOTERS = 256  # hub: Parquet footers read per split when the dataset info has no row counts
SAMPLE_BLOCKS = 4  # the sample is this many contiguous runs of rows, spread over the split
JSONL_TYPE_ROWS = 50  # JSONL: at least this many rows sampled to infer the column types


# --- the report ---------------------------------------------------------------------------------------


@dataclass
class DatasetReport:
    """What `download_dataset` found (`info`, as written to `path`); `render()` is the printed summary."""

    info: dict[str, Any]
    path: Path | None = None

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        return self.info["splits"]

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def text_fields(self) -> list[dict[str, Any]]:
        return self.info["text_fields"]

    def render(self) -> str:
        return render(self.info, self.path)


def download_dataset(
    name: str,
    subset: str | None = None,
    split: str | None = None,
    source: str = "auto",
    output_root: str | Path = "/workspace",
    sample_rows: int = 200,
) -> DatasetReport:
    """Describe a Hub dataset or a local path and write the description under `output_root`.

    `split` limits the report to one split (all splits otherwise); `sample_rows` rows of one split (the
    one asked for, else `train`, else the first) are read for the text-field statistics.
    """
    from chatspace.data.sources import dataset_label, is_local
    from chatspace.store.layout import ensure_writable_root

    if source not in ("auto", "huggingface", "local"):
        raise UsageError(f"--source must be auto, huggingface or local, not {source!r}")
    if sample_rows < 0:
        raise UsageError("--sample-rows must be 0 or more")
    root = ensure_writable_root(output_root)
    local = is_local(name, source)
    if local:
        info = _inspect_local(name, subset, split, sample_rows, root / "datasets")
    else:
        info = _inspect_hub(name, subset, split, sample_rows)
    info["requested"] = {"subset": subset, "split": split, "sample_rows": sample_rows}
    label = dataset_label(name, local) if local else name
    part = (subset if not local else None) or split or "default"
    out_dir = root / "datasets" / "raw" / info["source"] / slug(label) / slug(part)
    info = {"format": FORMAT, "inspected_at": _now(), **info}
    report = DatasetReport(info, out_dir / "info.json")
    from chatspace.store.manifest import write_json_atomic

    write_json_atomic(out_dir / "info.json", info)
    (out_dir / "summary.txt").write_text(report.render() + "\n")
    return report


def _now() -> str:
    from chatspace.store.manifest import now_iso

    return now_iso()


# --- local paths --------------------------------------------------------------------------------------


def _has_data_files(folder: Path) -> bool:
    from chatspace.data.sources import LOCAL_EXT

    return any(
        p.is_file()
        and p.suffix.lower() in LOCAL_EXT
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        for p in folder.rglob("*")
    )


def _local_layout(path: Path, split: str | None) -> tuple[str, dict[str, list[Path]], list[str]]:
    """(kind, {split: files as embed-hf would read them}, notes) of a local path."""
    from chatspace.data.sources import LOCAL_EXT, SPLIT_NAMES, _local_files, _save_to_disk_files, _split_of

    notes: list[str] = []
    if path.is_file():
        return "file", {split or "train": [path]}, notes
    if (path / "dataset_dict.json").is_file():
        names = orjson.loads((path / "dataset_dict.json").read_bytes()).get("splits", [])
        if split is not None and split not in names:
            raise UsageError(f"split {split!r} not in {path} (it has: {', '.join(names)})")
        chosen = [split] if split else list(names)
        return "save_to_disk DatasetDict", {s: _save_to_disk_files(path, s) or [] for s in chosen}, notes
    if (path / "state.json").is_file():
        return "save_to_disk Dataset", {split or "train": _save_to_disk_files(path, split or "train")}, notes
    if split is not None:
        files, _ = _local_files(path, split)
        return "folder", {split: files}, notes
    subdirs = sorted(
        d for d in path.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES and _has_data_files(d)
    )
    if subdirs:
        top_level = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in LOCAL_EXT)
        if top_level:
            notes.append(
                f"{len(top_level)} data file(s) directly under {path} are in no split folder and are not read"
            )
        return "folder of split folders", {d.name: _local_files(path, d.name)[0] for d in subdirs}, notes
    named = sorted({s for p in path.rglob("*") if p.is_file() and (s := _split_of(p.name))})
    if named:
        return "folder of split-named files", {s: _local_files(path, s)[0] for s in named}, notes
    files, _ = _local_files(path, "train")
    return "folder", {"train": files}, notes


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"pq": "parquet", "ndjson": "jsonl", "tsv": "csv"}.get(suffix, suffix)


def _file_schema(entry) -> Any:
    """The Arrow schema of one opened file, or None for JSONL (which has none)."""
    import pyarrow.parquet as pq

    if entry.fmt == "parquet":
        return pq.read_schema(entry.path)
    if entry.fmt == "arrow":
        import pyarrow as pa

        source = pa.memory_map(entry.path, "r")
        try:
            return pa.ipc.open_stream(source).schema
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).schema
    return None


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


def _inspect_local(
    name: str, subset: str | None, split: str | None, sample_rows: int, cache_dir: Path
) -> dict[str, Any]:
    from chatspace.data.sources import Source, SourceSpec, _open_local_file

    path = Path(name).expanduser()
    if not path.exists():
        raise UsageError(f"dataset path does not exist: {name}")
    kind, layout, notes = _local_layout(path, split)
    if subset:
        notes.append(f"--subset {subset} has no meaning for a local path; ignored")
    main = _main_split(list(layout), split)
    splits: dict[str, dict[str, Any]] = {}
    sample: dict[str, Any] = {}
    features: dict[str, dict[str, Any]] = {}
    text_fields: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    id_fields: list[str] = []
    for split_name, files in layout.items():
        entries, file_infos, columns, schemas = [], [], set(), []
        for f in files:
            entry, cols = _open_local_file(f, cache_dir)
            entries.append(entry)
            columns |= cols
            file_infos.append(
                {"path": str(f), "format": _file_format(f), "rows": entry.num_rows, "bytes": f.stat().st_size}
            )
            schema = _file_schema(entry)
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
            indices, method = _sample_indices(rows, n)
            spec = SourceSpec(
                name, "local", split_name, None, tuple(entries), tuple(sorted(columns)), mode="indexed"
            )
            src = Source(spec)
            try:
                rows_read = src.read(indices, sorted(columns))
            finally:
                src.close()
            if split_name == main and sample_rows > 0:
                sample = {"split": split_name, "rows": len(rows_read), "of": rows, "method": method}
        if jsonl:
            inferred = _infer_features(rows_read, sorted(columns), split_notes, split_name)
            split_features = {**inferred, **split_features}
        invalid = sum(1 for r in rows_read if r is None)
        if invalid:
            split_notes.append(
                f"{split_name}: {invalid} of {_plural(len(rows_read), 'sampled row')} "
                f"{'is' if invalid == 1 else 'are'} not a JSON object"
            )
        if rows == 0:
            split_notes.append(f"{split_name}: no rows")
        splits[split_name] = {
            "rows": rows,
            "bytes": sum(fi["bytes"] for fi in file_infos),
            "files": file_infos,
            "columns": sorted(columns),
            "features": split_features,
        }
        notes.extend(split_notes)
        if split_name == main:
            features = split_features
            good = [r for r in rows_read if isinstance(r, dict)] if sample_rows > 0 else []
            text_fields, left_out = survey_fields(
                good, list(split_features) or sorted(columns), split_features
            )
            id_fields = id_candidates(good, list(split_features) or sorted(columns))
    return {
        "name": name,
        "source": "local",
        "location": str(path.resolve()),
        "kind": kind,
        "subset": None,
        "splits": splits,
        "features_split": main,
        "features": features,
        "sample": sample,
        "text_fields": text_fields,
        "not_text_fields": left_out,
        "id_candidates": id_fields,
        "notes": notes,
    }


def _main_split(names: Sequence[str], asked: str | None) -> str | None:
    if asked is not None:
        return asked
    if "train" in names:
        return "train"
    return names[0] if names else None


def _sample_indices(total: int, k: int) -> tuple[np.ndarray, str]:
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


# --- feature types from JSON values -------------------------------------------------------------------


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "list"
    if isinstance(v, dict):
        return "struct"
    return type(v).__name__


def _arrow_type(values: list[Any]) -> str:
    """The Arrow type pyarrow infers for these values (their union of keys for structs)."""
    import pyarrow as pa

    try:
        return str(pa.array(values).type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return f"{_kind(values[0])} (mixed element types)"


def _infer_features(
    rows: list[Any], columns: list[str], notes: list[str], split: str
) -> dict[str, dict[str, Any]]:
    """JSONL has no schema: each column's type as the sampled values show it, mixed types called out."""
    dicts = [r for r in rows if isinstance(r, dict)]
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        present = [r[col] for r in dicts if col in r]
        values = [v for v in present if v is not None]
        feature: dict[str, Any] = {"inferred_from_rows": len(dicts)}
        if len(present) < len(dicts):
            feature["missing"] = len(dicts) - len(present)
        if len(values) < len(present):
            feature["nulls"] = len(present) - len(values)
        by_kind: dict[str, list[Any]] = {}
        for v in values:
            by_kind.setdefault(_kind(v), []).append(v)
        if not values:
            feature["type"] = "null" if present else "unknown (not in the sample)"
        elif len(by_kind) == 1:
            feature["type"] = _arrow_type(values)
        else:
            seen = {_arrow_type(vs): len(vs) for vs in by_kind.values()}
            feature["type"] = "mixed: " + ", ".join(
                f"{t} ({n})" for t, n in sorted(seen.items(), key=lambda x: -x[1])
            )
            feature["mixed"] = True
            feature["types_seen"] = seen
            notes.append(
                f"{split}: column {col!r} has mixed types in the sample: "
                + ", ".join(f"{t} in {_plural(n, 'row')}" for t, n in seen.items())
            )
        out[col] = feature
    return out


# --- candidate text fields ----------------------------------------------------------------------------


# --- the Hub ------------------------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _card_configs(info: Any) -> list[str]:
    card = getattr(info, "card_data", None)
    if card is None:
        return []
    data = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    return [c["config_name"] for c in data.get("configs") or [] if isinstance(c, dict) and "config_name" in c]


def _rfilename(url: str, name: str) -> str:
    m = re.match(rf"^hf://datasets/{re.escape(name)}(?:@[^/]+)?/(.*)$", url)
    return m.group(1) if m else url


def _hf_type(feature: Any) -> str:
    """A compact type for a `datasets` feature whose Arrow type cannot be had."""
    if isinstance(feature, dict):
        return "struct<" + ", ".join(f"{k}: {_hf_type(v)}" for k, v in feature.items()) + ">"
    if isinstance(feature, list | tuple) and feature:
        return f"list<{_hf_type(feature[0])}>"
    if hasattr(feature, "dtype") and type(feature).__name__ == "Value":
        return str(feature.dtype)
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list<{_hf_type(inner)}>"
    return type(feature).__name__


def _hub_features(features: Any) -> dict[str, dict[str, Any]]:
    if features is None:
        return {}
    try:
        schema = features.arrow_schema
        out = {f.name: {"type": str(f.type)} for f in schema}
    except Exception:  # noqa: BLE001 - fall back to describing the features themselves
        out = {k: {"type": _hf_type(v)} for k, v in features.items()}
    for k, v in features.items():
        if type(v).__name__ == "ClassLabel":
            out[k]["class_names"] = list(getattr(v, "names", []))
    return out


def _footer_rows(urls: list[str], notes: list[str], split: str) -> tuple[int | None, dict[str, int], Any]:
    """Row counts (and the schema) from Parquet footers: a few KB per file, over HfFileSystem."""
    from chatspace.data.sources import _parquet_entry

    if not urls or not all(u.lower().endswith((".parquet", ".pq")) for u in urls):
        return None, {}, None
    if len(urls) > MAX_FOOTERS:
        notes.append(f"{split}: {len(urls)} Parquet files; row count not read (over {MAX_FOOTERS} footers)")
        return None, {}, None
    fs = None
    if any(u.startswith("hf://") for u in urls):
        from huggingface_hub import HfFileSystem

        fs = HfFileSystem()
    counts: dict[str, int] = {}
    schema = None
    for u in urls:
        path = u.removeprefix("hf://")
        try:
            entry, _cols = _parquet_entry(path, fs if u.startswith("hf://") else None)
        except UsageError as e:
            notes.append(f"{split}: {e}")
            return None, {}, None
        counts[u] = entry.num_rows
        if schema is None:
            import pyarrow.parquet as pq

            schema = pq.read_schema(fs.open(path, "rb") if u.startswith("hf://") else path)
    return sum(counts.values()), counts, schema


def _inspect_hub(name: str, subset: str | None, split: str | None, sample_rows: int) -> dict[str, Any]:
    import datasets
    from huggingface_hub import HfApi

    notes: list[str] = []
    try:
        repo = HfApi().dataset_info(name, files_metadata=True)
    except Exception as e:  # noqa: BLE001 - offline, gated, missing: all one line for the user
        raise UsageError(f"cannot get Hugging Face dataset {name!r}: {_first_line(e)}") from None
    sizes = {s.rfilename: s.size for s in (repo.siblings or [])}
    subsets = _card_configs(repo)
    try:
        builder = datasets.load_dataset_builder(name, subset)
    except Exception as e:  # noqa: BLE001
        hint = f" (subsets: {', '.join(subsets)}; pick one with --subset)" if subsets and not subset else ""
        raise UsageError(f"cannot read the dataset info of {name!r}: {_first_line(e)}{hint}") from None
    binfo = builder.info
    split_infos = dict(binfo.splits or {})
    data_files = {k: [str(u) for u in v] for k, v in (builder.config.data_files or {}).items()}
    names = list(dict.fromkeys([*data_files, *split_infos]))
    if split is not None:
        if split not in names:
            from chatspace.data.hub import _parquet_conversion_files

            converted = _parquet_conversion_files(name, subset, split)
            if not converted:
                raise UsageError(
                    f"split {split!r} not in {name} (splits: {', '.join(names) or 'none found'})"
                )
            data_files[split] = converted
        names = [split]
    main = _main_split(names, split)
    features = _hub_features(binfo.features)
    splits: dict[str, dict[str, Any]] = {}
    for s in names:
        urls = data_files.get(s, [])
        si = split_infos.get(s)
        rows = si.num_examples if si is not None and si.num_examples else None
        counts: dict[str, int] = {}
        schema = None
        if rows is None or not features:
            footer_rows, counts, schema = _footer_rows(urls, notes, s)
            rows = rows if rows is not None else footer_rows
        if not features and schema is not None:
            features = {f.name: {"type": str(f.type)} for f in schema}
        files = [
            {
                "path": _rfilename(u, name),
                "url": u,
                "format": _file_format(Path(u)),
                "rows": counts.get(u),
                "bytes": sizes.get(_rfilename(u, name)),
            }
            for u in urls
        ]
        known = [f["bytes"] for f in files if f["bytes"] is not None]
        splits[s] = {
            "rows": rows,
            "rows_from": "dataset info"
            if si is not None and si.num_examples
            else ("parquet footers" if counts else None),
            "bytes": sum(known) if known and len(known) == len(files) else None,
            "dataset_bytes": getattr(si, "num_bytes", None) or None,
            "files": files,
            "columns": sorted(features),
        }
        if rows is None:
            notes.append(f"{s}: row count unknown without reading the data")
    sample: dict[str, Any] = {}
    text_fields: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    id_fields: list[str] = []
    if main is not None and sample_rows > 0:
        try:
            stream = datasets.load_dataset(name, subset, split=main, streaming=True)
            rows_read = [dict(r) for r in stream.take(sample_rows)]
        except Exception as e:  # noqa: BLE001 - the metadata stands without the sample
            notes.append(f"no sample for text statistics ({_first_line(e)})")
            rows_read = []
        if rows_read:
            sample = {
                "split": main,
                "rows": len(rows_read),
                "of": splits.get(main, {}).get("rows"),
                "method": "first rows (streamed)",
            }
            columns = list(features) or sorted({k for r in rows_read for k in r})
            if not features:  # no schema (e.g. JSON files): types as the sample shows them
                features = _infer_features(rows_read, columns, notes, main)
                for s in splits.values():
                    s["columns"] = columns
            text_fields, left_out = survey_fields(rows_read, columns, features)
            id_fields = id_candidates(rows_read, columns)
    card = getattr(repo, "card_data", None)
    card_dict = card.to_dict() if card is not None and hasattr(card, "to_dict") else {}
    all_sizes = [v for v in sizes.values() if v is not None]
    return {
        "name": name,
        "source": "huggingface",
        "location": f"https://huggingface.co/datasets/{name}",
        "kind": "hub",
        "subset": subset or getattr(builder.config, "name", None),
        "subsets": subsets,
        "hub": {
            "sha": getattr(repo, "sha", None),
            "last_modified": str(getattr(repo, "last_modified", None) or "") or None,
            "gated": getattr(repo, "gated", None),
            "private": getattr(repo, "private", None),
            "license": card_dict.get("license"),
            "files": len(sizes),
            "files_bytes": sum(all_sizes) if all_sizes else None,
            "download_size": getattr(binfo, "download_size", None),
            "dataset_size": getattr(binfo, "dataset_size", None),
            "description": (getattr(binfo, "description", "") or "")[:500] or None,
        },
        "splits": splits,
        "features_split": main,
        "features": features,
        "sample": sample,
        "text_fields": text_fields,
        "not_text_fields": left_out,
        "id_candidates": id_fields,
        "notes": notes,
    }


# --- rendering ----------------------------------------------------------------------------------------


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _n(x: float | int) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _stats(s: dict[str, Any] | None, unit: str) -> str:
    if not s:
        return f"no {unit}"
    return f"{unit} mean {_n(s['mean'])}, median {_n(s['median'])}, max {_n(s['max'])}"


def _table(rows: list[tuple[str, ...]], right: set[int] = frozenset(), indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _suggest(info: dict[str, Any]) -> list[str]:
    """`embed-hf` command lines for the text fields, best first (at most three)."""
    q = shlex.quote
    dataset = f"--dataset {q(info['name'])}"
    if info.get("source") == "huggingface" and info.get("subset") and info.get("subset") != "default":
        dataset += f" --subset {q(info['subset'])}"
    split = info.get("features_split")
    if split and split != "train":
        dataset += f" --split {q(split)}"
    candidates = info.get("id_candidates", [])
    id_like = {f["field"] for f in info.get("not_text_fields", []) if f["why"].startswith("id-like")}
    preferred = [c for c in candidates if re.search(r"(^|[_.])(id|uid|hash|uuid)$", c.lower())]
    id_field = (preferred or [c for c in candidates if c in id_like] or [None])[0]
    id_part = f" --id-field {q(id_field)}" if id_field else ""
    out = []
    for f in info.get("text_fields", []):
        if f["field"] == id_field:
            continue
        field = f"--text-field {q(f['field'])}"
        if f["kind"] == "conversation":
            found = {m: f["extract"][m]["found"] for m in CONVERSATION_MODES}
            best = "first-assistant" if found["first-assistant"] else max(found, key=found.__getitem__)
            if found[best]:
                out.append(f"chatspace embed-hf {dataset} {field} --extract {best}{id_part}")
        elif f.get("usable"):
            out.append(f"chatspace embed-hf {dataset} {field}{id_part}")
    return out[:3]


def render(info: dict[str, Any], path: Path | None = None) -> str:
    """The readable summary of an info dict (as `download_dataset` writes it)."""
    lines = []
    if info["source"] == "huggingface":
        hub = info.get("hub", {})
        head = f"{info['name']} (Hugging Face dataset"
        if info.get("subset"):
            head += f", subset {info['subset']}"
        lines.append(head + ")")
        lines.append(
            f"  repo: {_num(hub.get('files'))} files, {_human_bytes(hub.get('files_bytes'))}"
            + (f", revision {hub['sha'][:12]}" if hub.get("sha") else "")
            + (f", license {hub['license']}" if hub.get("license") else "")
        )
        if info.get("subsets"):
            lines.append(f"  subsets: {', '.join(info['subsets'])}")
    else:
        lines.append(f"{info['name']} (local {info['kind']}: {info['location']})")
    if path is not None:
        lines.append(f"  metadata written to {path}")
    lines.append("")
    table = [("split", "rows", "files", "size")]
    for name, s in info["splits"].items():
        table.append((name, _num(s.get("rows")), _num(len(s.get("files", []))), _human_bytes(s.get("bytes"))))
    lines.extend(_table(table, right={1, 2, 3}))
    lines.append("")
    feats = info.get("features") or {}
    if feats:
        lines.append(f"features ({info.get('features_split')}):")
        rows = []
        for col, f in feats.items():
            extra = []
            if f.get("missing"):
                extra.append(f"missing in {_plural(f['missing'], 'sampled row')}")
            if f.get("nulls"):
                extra.append(f"{f['nulls']:,} null")
            if f.get("note"):
                extra.append(f["note"])
            rows.append((col, f["type"] + (f"  ({'; '.join(extra)})" if extra else "")))
        lines.extend(_table(rows))
        lines.append("")
    sample = info.get("sample") or {}
    fields = info.get("text_fields") or []
    if sample:
        of = f" of {_num(sample['of'])}" if sample.get("of") is not None else ""
        lines.append(
            f"text fields (sample: {sample['rows']:,}{of} rows of {sample['split']}, {sample['method']}):"
        )
        if not fields:
            lines.append("  none: no text, list-of-strings or conversation-shaped field")
        rows = []
        for f in fields:
            if f["kind"] == "conversation":
                modes = ", ".join(f"{m} {f['extract'][m]['fraction']:.0%}" for m in CONVERSATION_MODES)
                turns = f["turns"]
                desc = (
                    f"turns mean {_n(turns['mean'])}, max {_n(turns['max'])}; text found: {modes}; "
                    + _stats(f["extract"]["first-assistant"]["chars"], "first-assistant chars")
                )
                rows.append(
                    (f["field"], "conversation" + (" (JSON text)" if f.get("json_string") else ""), desc)
                )
            elif f["kind"] == "list":
                per_row = f["strings_per_row"]
                desc = (
                    f"{_n(per_row['mean'])} strings per row (max {_n(per_row['max'])}), joined: "
                    f"{_stats(f['chars'], 'chars')}; usable {f['fraction']:.0%}"
                )
                rows.append((f["field"], "list of strings", desc))
            else:
                rows.append(
                    (f["field"], "text", f"{_stats(f['chars'], 'chars')}; usable {f['fraction']:.0%}")
                )
        if rows:
            lines.extend(_table(rows))
        if info.get("not_text_fields"):
            skipped = ", ".join(f"{f['field']} ({f['why']})" for f in info["not_text_fields"])
            lines.append(f"  not worth embedding: {skipped}")
        if info.get("id_candidates"):
            lines.append(f"  unique in the sample (possible --id-field): {', '.join(info['id_candidates'])}")
        lines.append("")
    if info.get("notes"):
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in info["notes"])
        lines.append("")
    suggestions = _suggest(info)
    if len(suggestions) > 1:
        lines.append("other fields to embed:")
        lines.extend(f"  {s}" for s in suggestions[1:])
    if suggestions:  # the closing line: the best field
        lines.append("to embed:")
        lines.append(f"  {suggestions[0]}")
    return "\n".join(lines).rstrip()
