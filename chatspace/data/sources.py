"""Opening a dataset as one addressable sequence of rows.

Every source, local or on the Hub, is a list of files whose row counts are known up front (Parquet
footers, Arrow files, a one-time line index for JSONL), so any global row index `k` maps to (file, row).
That lets the supervisor plan work units without reading data, and each worker read only its own rows.

The supervisor calls `open_source` (which may index or convert files once, into the cache); workers
rebuild the same object cheaply from its picklable `SourceSpec`. What each file format is and how its
rows are read is `chatspace.data.formats`; which files a Hub dataset has is `chatspace.data.hub`.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chatspace.config import DataConfig
from chatspace.data.extract import Skip, columns_for, row_id
from chatspace.data.field_check import check_source_fields
from chatspace.data.formats import READERS, SUFFIXES, SUPPORTED, FileEntry, format_name, open_local_file
from chatspace.data.identity import local_identity
from chatspace.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """Picklable description of an opened source; `Source(spec)` reopens it without re-indexing."""

    dataset: str  # the name as the user gave it (hub id or path)
    source: str  # huggingface | local
    split: str
    subset: str | None
    files: tuple[FileEntry, ...]
    columns: tuple[str, ...]
    filesystem: str = "local"  # local | hf
    mode: str = "indexed"  # how rows are addressed; recorded in the manifest
    # What the data was when opened (chatspace.data.identity): a resume refuses a changed dataset.
    identity: dict | None = field(default=None, compare=False)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    @property
    def flat_columns(self) -> bool:
        """CSV sources: every column is a plain string, so dotted paths cannot reach inside one."""
        return bool(self.files) and all(
            f.origin is not None and format_name(f.origin) == "csv" for f in self.files
        )


@dataclass
class Source:
    """Random access to rows by global index, reading only the columns asked for."""

    spec: SourceSpec
    _starts: list[int] = field(init=False)
    _readers: dict[int, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._starts = []
        total = 0
        for f in self.spec.files:
            self._starts.append(total)
            total += f.num_rows
        self._total = total

    @property
    def num_rows(self) -> int:
        return self._total

    @property
    def columns(self) -> tuple[str, ...]:
        return self.spec.columns

    def locate(self, index: int) -> tuple[int, int]:
        """(file number, row within that file) of global row `index`."""
        i = bisect.bisect_right(self._starts, index) - 1
        return i, index - self._starts[i]

    def locate_many(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file numbers, rows within those files) of many global rows at once."""
        starts = np.asarray(self._starts, dtype=np.int64)
        file_no = np.searchsorted(starts, indices, side="right") - 1
        return file_no, np.asarray(indices, dtype=np.int64) - starts[file_no]

    def read(self, indices: Sequence[int] | np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        """Rows at the given sorted global indices, as dicts of the requested columns.

        A row that cannot be parsed comes back as None (skipped by the caller as an invalid row).
        """
        indices = np.asarray(indices, dtype=np.int64)
        out: list[dict | None] = []
        if len(indices) == 0:
            return out
        file_of = np.searchsorted(np.asarray(self._starts, dtype=np.int64), indices, side="right") - 1
        for file_no in np.unique(file_of):
            local = indices[file_of == file_no] - self._starts[file_no]
            out.extend(self._reader(int(file_no)).read(local, columns))
        return out

    def ids_at(self, indices: Sequence[int], id_field: str) -> list[str | None]:
        """The `id_field` value of the rows at the given sorted global indices, as a run records it
        (None where a row has none): what a run's repeated ids are checked against."""
        rows = self.read(indices, columns_for(id_field))  # a dotted name reads its leading column
        return [_id_or_none(row, id_field, index) for index, row in zip(indices, rows, strict=True)]

    def _reader(self, file_no: int):
        reader = self._readers.get(file_no)
        if reader is None:
            entry = self.spec.files[file_no]
            reader = READERS[entry.fmt](entry, self.spec.filesystem)
            # Keep few files open at once: units read files mostly in order.
            if len(self._readers) >= 8:
                self._readers.pop(next(iter(self._readers))).close()
            self._readers[file_no] = reader
        return reader

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()

    def iter_rows(self, columns: Sequence[str], chunk: int = 4096) -> Iterator[tuple[int, dict | None]]:
        """Every row in order, with its global index (for inspection)."""
        for start in range(0, self.num_rows, chunk):
            idx = np.arange(start, min(start + chunk, self.num_rows))
            yield from zip(idx.tolist(), self.read(idx, columns), strict=True)


def _id_or_none(row: dict | None, id_field: str, index: int) -> str | None:
    try:
        return row_id(row, id_field, "", index) if row is not None else None
    except Skip:
        return None


# --- local paths ---------------------------------------------------------------------------------------


def save_to_disk_files(folder: Path, split: str) -> list[Path] | None:
    """The Arrow files of a `datasets.save_to_disk` folder (a Dataset, or a DatasetDict's split)."""
    if (folder / "dataset_dict.json").exists():
        splits = orjson.loads((folder / "dataset_dict.json").read_bytes()).get("splits", [])
        if split not in splits:
            raise UsageError(f"split {split!r} not in {folder} (it has: {', '.join(splits)})")
        folder = folder / split
    state = folder / "state.json"
    if not state.exists():
        return None
    files = orjson.loads(state.read_bytes()).get("_data_files", [])
    return [folder / f["filename"] for f in files]


SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev", "eval")
_METADATA_FILES = {"dataset_info.json", "dataset_dict.json", "state.json", "dataset_infos.json"}


def split_of(name: str) -> str | None:
    """The split a Hub-style file name announces: train-00000-of-00002.parquet, test.jsonl, ..."""
    stem = name.lower().split(".")[0]
    for split in SPLIT_NAMES:
        if stem == split or stem.startswith((f"{split}-", f"{split}_")):
            return split
    return None


def local_files(path: Path, split: str) -> list[Path]:
    """The data files of one split of a local path; a split that is not there is a usage error (a single
    file holds one split: the one its name announces, else `train`, as describe-dataset says)."""
    if path.is_file():
        own = split_of(path.name) or "train"
        if split != own:
            raise UsageError(f"{path.name} has one split: {own} (not {split!r}); leave --split out")
        return [path]
    arrow = save_to_disk_files(path, split)
    if arrow is not None:
        return arrow
    split_dirs = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES)
    if split not in (".", "..") and "/" not in split and "\\" not in split and (path / split).is_dir():
        path = path / split  # a split folder (never `..` or a path: a split name does not leave the folder)
    elif split_dirs:
        raise UsageError(f"split {split!r} not in {path} (split folders: {', '.join(split_dirs)})")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    files = [
        p
        for p in files
        if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        and p.name not in _METADATA_FILES
    ]
    # A flat folder of Hub-style files (train-*.parquet, test-*.parquet) holds several splits.
    named = {f: split_of(f.name) for f in files}
    if any(named.values()):
        splits = sorted({s for s in named.values() if s})
        if split not in splits:
            raise UsageError(f"split {split!r} not in {path} (files name splits: {', '.join(splits)})")
        files = [f for f in files if named[f] == split]
    if not files:
        raise UsageError(f"no {SUPPORTED} files under {path}")
    return files


def is_local(dataset: str, source: str) -> bool:
    """A local path, not a Hub id: it exists, or it cannot be a Hub id (`org/name`): it starts with
    `./`, `../`, `/` or `~`, ends with a data-file extension, or has more path separators than one `/`."""
    if source == "local":
        return True
    if source == "huggingface":
        return False
    if dataset.startswith((".", "/", "~")) or "\\" in dataset or dataset.count("/") > 1:
        return True
    if dataset.lower().endswith((*SUFFIXES, ".json.gz", ".jsonl.gz", ".tsv", ".txt")):
        return True
    try:
        return Path(dataset).expanduser().exists()
    except (OSError, ValueError):  # too long a name, or a NUL byte: not a file here
        return False


def missing_path(dataset: str) -> UsageError:
    """`no such file: data/doc.jsonl (data holds: docs.jsonl, ...)`: the closest names in its folder."""
    import difflib

    path = Path(dataset).expanduser()
    folder = path.parent
    if not folder.is_dir():
        return UsageError(f"no such file: {dataset} (no folder {folder.as_posix()})")
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    there = f" ({folder.as_posix()} holds: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
    return UsageError(f"no such file: {dataset}{hint}{there if names and not close else ''}")


def dataset_label(dataset: str, local: bool) -> str:
    """The dataset part of output paths: the hub id, or a local file's stem / folder's name."""
    if not local:
        return dataset
    p = Path(dataset).expanduser()
    return p.stem if p.is_file() else p.resolve().name


def _warn_unrelated_files(dataset: str, shapes: dict[frozenset[str], list[str]]) -> None:
    """A folder whose files have different columns is read as one dataset: say so, naming them."""
    if len(shapes) < 2:
        return
    listing = "; ".join(
        f"{', '.join(names[:2])}{' ...' if len(names) > 2 else ''}: {', '.join(sorted(cols)[:5])}"
        for cols, names in shapes.items()
    )
    log.warning(
        "%s: its %d files do not share their columns (%s); they are read as one dataset (rows lacking "
        "the text field are skipped as missing_field); name one file to read it alone",
        dataset,
        sum(len(n) for n in shapes.values()),
        listing,
    )


def open_source(
    dataset: str, *, split: str = "train", subset: str | None = None, source: str = "auto", cache_dir: Path
) -> Source:
    """Open a local path or Hub dataset; indexes/converts once into `cache_dir` where needed."""
    if is_local(dataset, source):
        path = Path(dataset).expanduser()
        if not path.exists():
            raise missing_path(dataset)
        files = local_files(path, split)
        entries: list[FileEntry] = []
        columns: set[str] = set()
        shapes: dict[frozenset[str], list[str]] = {}
        for f in files:
            entry, cols = open_local_file(f, cache_dir)
            entries.append(entry)
            columns |= cols
            shapes.setdefault(frozenset(cols), []).append(f.name)
        _warn_unrelated_files(dataset, shapes)
        identity = local_identity(files, [e.num_rows for e in entries])
        spec = SourceSpec(
            dataset, "local", split, subset, tuple(entries), tuple(sorted(columns)), identity=identity
        )
    else:
        from chatspace.data.hub import open_hub_files

        hub = open_hub_files(dataset, subset=subset, split=split, cache_dir=cache_dir)
        spec = SourceSpec(
            dataset,
            "huggingface",
            split,
            subset,
            hub.entries,
            hub.columns,
            filesystem=hub.filesystem,
            identity=hub.identity,
        )
    if spec.num_rows == 0:
        raise UsageError(f"dataset {dataset} ({split}) has no rows")
    return Source(spec)


def open_run_source(cfg: DataConfig, cache_dir: Path) -> Source:
    """The source a run's data options (`cfg`) name, checked before any work starts: its text and id
    fields exist, and a turn extraction finds conversations in the text field (usage errors otherwise)."""
    source = open_source(
        cfg.dataset, split=cfg.base_split, subset=cfg.subset, source=cfg.source, cache_dir=cache_dir
    )
    try:
        check_source_fields(source, cfg)
    except BaseException:
        source.close()
        raise
    return source
