"""Hugging Face Hub datasets as a list of files with known row counts.

Parquet files (most Hub datasets, and the Hub's own `refs/convert/parquet` for the rest) are read in
place over `HfFileSystem`: only footers at planning time, then only the row groups a worker needs. Other
formats (JSONL, CSV) are fetched once into `datasets/hub/` under the output root and read locally.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from chatspace.data.formats import FileEntry, format_name, open_local_file, parquet_entry
from chatspace.data.identity import hub_identity
from chatspace.errors import ChatspaceError, UsageError

log = logging.getLogger(__name__)


def resolve_hub_files(dataset: str, subset: str | None, split: str) -> list[str]:
    """`hf://` URLs of the data files of one split, as `datasets` resolves them."""
    try:
        from datasets import load_dataset_builder

        builder = load_dataset_builder(dataset, subset)
    except Exception as e:  # noqa: BLE001 - network, auth and naming errors all end here
        raise UsageError(f"cannot open Hugging Face dataset {dataset!r}: {str(e).splitlines()[0]}") from None
    data_files = builder.config.data_files or {}
    if split not in data_files:
        files = parquet_conversion_files(dataset, subset, split)
        if files:
            return files
        have = ", ".join(data_files) or "none found"
        raise UsageError(f"split {split!r} not in {dataset} (splits: {have})")
    return [str(f) for f in data_files[split]]


def parquet_conversion_files(dataset: str, subset: str | None, split: str) -> list[str]:
    """The Hub's auto-converted Parquet copy, for datasets whose own files are not listed."""
    try:
        from huggingface_hub import HfFileSystem

        fs = HfFileSystem()
        pattern = f"datasets/{dataset}@refs%2Fconvert%2Fparquet/{subset or 'default'}/{split}/*.parquet"
        return sorted("hf://" + p for p in fs.glob(pattern))
    except Exception:  # noqa: BLE001
        return []


def download_hub_file(url: str, cache_dir: Path) -> Path:
    """One `hf://` file, fetched once into `{cache_dir}/hub/` (a partial download is never taken as whole)."""
    from huggingface_hub import HfFileSystem

    rel = url.removeprefix("hf://")
    dest = cache_dir / "hub" / rel.replace("@", "/")
    if ".." in Path(rel).parts or Path(rel).is_absolute():  # a listed file name must not leave the cache
        raise ChatspaceError(f"refusing to download {url}: its path leaves {cache_dir / 'hub'}")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        HfFileSystem().get_file(rel, str(tmp))
        tmp.rename(dest)
    return dest


@dataclass(frozen=True)
class HubFiles:
    """The opened files of one split of a Hub dataset, ready to become a source."""

    entries: tuple[FileEntry, ...]
    columns: tuple[str, ...]
    filesystem: str  # hf: Parquet read in place; local: fetched into the cache
    identity: dict  # chatspace.data.identity: what a resume checks


def open_hub_files(dataset: str, *, subset: str | None, split: str, cache_dir: Path) -> HubFiles:
    """The files of one split with their row counts: Parquet footers read remotely, others fetched once."""
    urls = resolve_hub_files(dataset, subset, split)
    if not urls:
        raise UsageError(f"{dataset} ({split}) lists no data files")
    entries = []
    columns: set[str] = set()
    remote_parquet = all(format_name(u) == "parquet" and u.startswith("hf://") for u in urls)
    if remote_parquet:
        from huggingface_hub import HfFileSystem

        fs = HfFileSystem()
        for u in urls:
            entry, cols = parquet_entry(u.removeprefix("hf://"), fs)
            entries.append(entry)
            columns |= cols
        filesystem = "hf"
    else:
        for u in urls:
            local = download_hub_file(u, cache_dir) if u.startswith("hf://") else Path(u)
            entry, cols = open_local_file(local, cache_dir)
            entries.append(entry)
            columns |= cols
        filesystem = "local"
    log.info("hub dataset %s (%s): %d files", dataset, split, len(entries))
    identity = hub_identity(urls, [e.num_rows for e in entries])
    return HubFiles(tuple(entries), tuple(sorted(columns)), filesystem, identity)
