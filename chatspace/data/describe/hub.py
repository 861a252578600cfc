"""Describing a Hugging Face Hub dataset from its metadata, without downloading its data files.

`HfApi().dataset_info` gives the files and their sizes, `datasets.load_dataset_builder(...).info` the
features, splits and row counts; Parquet footers stand in where the info has no counts, and a streamed
sample of `sample_rows` rows gives the text statistics.
"""

from __future__ import annotations

import re
from typing import Any

from chatspace.data.describe.findings import Findings, infer_features, main_split
from chatspace.data.formats import format_name, parquet_entry
from chatspace.data.hub import parquet_conversion_files
from chatspace.errors import UsageError

MAX_FOOTERS = 256  # Parquet footers read per split when the dataset info has no row counts


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
    if not urls or not all(format_name(u) == "parquet" for u in urls):
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
            entry, _cols = parquet_entry(path, fs if u.startswith("hf://") else None)
        except UsageError as e:
            notes.append(f"{split}: {e}")
            return None, {}, None
        counts[u] = entry.num_rows
        if schema is None:
            import pyarrow.parquet as pq

            schema = pq.read_schema(fs.open(path, "rb") if u.startswith("hf://") else path)
    return sum(counts.values()), counts, schema


def _repo(name: str) -> Any:
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(name, files_metadata=True)
    except Exception as e:  # noqa: BLE001 - offline, gated, missing: all one line for the user
        raise UsageError(f"cannot get Hugging Face dataset {name!r}: {_first_line(e)}") from None


def _builder(name: str, subset: str | None, subsets: list[str]) -> Any:
    import datasets

    try:
        return datasets.load_dataset_builder(name, subset)
    except Exception as e:  # noqa: BLE001
        hint = f" (subsets: {', '.join(subsets)}; pick one with --subset)" if subsets and not subset else ""
        raise UsageError(f"cannot read the dataset info of {name!r}: {_first_line(e)}{hint}") from None


def _described_splits(
    name: str, subset: str | None, split: str | None, data_files: dict[str, list[str]], split_infos: dict
) -> list[str]:
    """The splits to describe: all the dataset names, or the one asked for (a split the builder does
    not name is looked for in the Hub's Parquet conversion, whose files join `data_files`)."""
    names = list(dict.fromkeys([*data_files, *split_infos]))
    if split is None:
        return names
    if split not in names:
        converted = parquet_conversion_files(name, subset, split)
        if not converted:
            raise UsageError(f"split {split!r} not in {name} (splits: {', '.join(names) or 'none found'})")
        data_files[split] = converted
    return [split]


def _split_entry(
    name: str, split: str, urls: list[str], split_info: Any, features: dict, sizes: dict, notes: list[str]
) -> tuple[dict[str, Any], dict]:
    """One split's rows, files and size, and the features (from the Parquet schema when the dataset
    info has none). Rows come from the dataset info, else from the Parquet footers."""
    rows = split_info.num_examples if split_info is not None and split_info.num_examples else None
    counts: dict[str, int] = {}
    if rows is None or not features:
        footer_rows, counts, schema = _footer_rows(urls, notes, split)
        rows = rows if rows is not None else footer_rows
        if not features and schema is not None:
            features = {f.name: {"type": str(f.type)} for f in schema}
    files = [
        {
            "path": _rfilename(u, name),
            "url": u,
            "format": format_name(u),
            "rows": counts.get(u),
            "bytes": sizes.get(_rfilename(u, name)),
        }
        for u in urls
    ]
    known = [f["bytes"] for f in files if f["bytes"] is not None]
    entry = {
        "rows": rows,
        "rows_from": "dataset info"
        if split_info is not None and split_info.num_examples
        else ("parquet footers" if counts else None),
        "bytes": sum(known) if known and len(known) == len(files) else None,
        "dataset_bytes": getattr(split_info, "num_bytes", None) or None,
        "files": files,
        "columns": sorted(features),
    }
    if rows is None:
        notes.append(f"{split}: row count unknown without reading the data")
    return entry, features


def _survey_streamed_sample(
    found: Findings, name: str, subset: str | None, main: str, sample_rows: int, notes: list[str]
) -> None:
    """The first `sample_rows` rows of the main split, streamed, for the text statistics (and the
    features, when the dataset has no schema); without them the metadata stands alone."""
    import datasets

    try:
        stream = datasets.load_dataset(name, subset, split=main, streaming=True)
        rows_read = [dict(r) for r in stream.take(sample_rows)]
    except Exception as e:  # noqa: BLE001 - the metadata stands without the sample
        notes.append(f"no sample for text statistics ({_first_line(e)})")
        return
    if not rows_read:
        return
    found.sample = {
        "split": main,
        "rows": len(rows_read),
        "of": found.splits.get(main, {}).get("rows"),
        "method": "first rows (streamed)",
    }
    columns = list(found.features) or sorted({k for r in rows_read for k in r})
    if not found.features:  # no schema (e.g. JSON files): types as the sample shows them
        found.features = infer_features(rows_read, columns, notes, main)
        for entry in found.splits.values():
            entry["columns"] = columns
    found.survey(rows_read, columns)


def _hub_summary(repo: Any, sizes: dict[str, int | None], binfo: Any) -> dict[str, Any]:
    """The repository's revision, access, license and sizes, as the info's `hub` entry."""
    card = getattr(repo, "card_data", None)
    card_dict = card.to_dict() if card is not None and hasattr(card, "to_dict") else {}
    all_sizes = [v for v in sizes.values() if v is not None]
    return {
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
    }


def inspect_hub(name: str, subset: str | None, split: str | None, sample_rows: int) -> dict[str, Any]:
    notes: list[str] = []
    repo = _repo(name)
    sizes = {s.rfilename: s.size for s in (repo.siblings or [])}
    subsets = _card_configs(repo)
    builder = _builder(name, subset, subsets)
    binfo = builder.info
    split_infos = dict(binfo.splits or {})
    data_files = {k: [str(u) for u in v] for k, v in (builder.config.data_files or {}).items()}
    names = _described_splits(name, subset, split, data_files, split_infos)
    main = main_split(names, split)
    features = _hub_features(binfo.features)
    found = Findings(main, notes=notes)
    for s in names:
        found.splits[s], features = _split_entry(
            name, s, data_files.get(s, []), split_infos.get(s), features, sizes, notes
        )
    found.features = features
    if main is not None and sample_rows > 0:
        _survey_streamed_sample(found, name, subset, main, sample_rows, notes)
    return {
        "name": name,
        "source": "huggingface",
        "location": f"https://huggingface.co/datasets/{name}",
        "kind": "hub",
        "subset": subset or getattr(builder.config, "name", None),
        "subsets": subsets,
        "hub": _hub_summary(repo, sizes, binfo),
        **found.as_info(),
    }
