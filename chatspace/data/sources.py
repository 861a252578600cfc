"""Opening a dataset as one addressable sequence of rows.

Every source, local or on the Hub, is a list of files whose row counts are known up front (Parquet
footers, Arrow files, a one-time line index for JSONL), so any global row index `k` maps to (file, row).
That lets the supervisor plan work units without reading data, and each worker read only its own rows.

The supervisor calls `open_source` (which may index or convert files once, into the cache); workers
rebuild the same object cheaply from its picklable `SourceSpec`.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import logging
import mmap
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chatspace.data.fields import top_column
from chatspace.errors import ChatspaceError, UsageError

log = logging.getLogger(__name__)

PARQUET_EXT = (".parquet", ".pq")
JSONL_EXT = (".jsonl", ".json", ".ndjson")
CSV_EXT = (".csv", ".tsv")
UTF8_BOM = b"\xef\xbb\xbf"
ARROW_EXT = (".arrow",)
LOCAL_EXT = PARQUET_EXT + JSONL_EXT + CSV_EXT + ARROW_EXT
COLUMN_SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class FileEntry:
    """One readable file of a source: its format, path (or hub URL) and number of rows."""

    fmt: str  # parquet | jsonl | arrow
    path: str
    num_rows: int
    index_path: str | None = None  # jsonl: the cached line-offset index (.npy)
    origin: str | None = None  # the user's file, when `path` is a converted copy of it (CSV, JSON array)

    @property
    def user_path(self) -> str:
        """The file as the user knows it (what row provenance records)."""
        return self.origin or self.path


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
            f.origin is not None and Path(f.origin).suffix.lower() in CSV_EXT for f in self.files
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

    def _reader(self, file_no: int):
        reader = self._readers.get(file_no)
        if reader is None:
            entry = self.spec.files[file_no]
            reader = _READERS[entry.fmt](entry, self.spec.filesystem)
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


# --- file readers -----------------------------------------------------------------------------------


def _filesystem(name: str):
    if name == "hf":
        from huggingface_hub import HfFileSystem

        return HfFileSystem()
    return None


class _ParquetReader:
    """Reads whole row groups (Parquet's unit of I/O) and takes the requested rows from them."""

    def __init__(self, entry: FileEntry, filesystem: str):
        import pyarrow.parquet as pq

        fs = _filesystem(filesystem)
        self._path = entry.path
        self._file = pq.ParquetFile(fs.open(entry.path, "rb") if fs else entry.path)
        md = self._file.metadata
        self._rg_starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        self._names = set(self._file.schema_arrow.names)

    def read(self, local: np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        cols = [c for c in dict.fromkeys(columns) if c in self._names]
        if not cols:  # this file lacks every requested column: each row reads as empty
            return [{} for _ in range(len(local))]
        rg_of = np.searchsorted(self._rg_starts, local, side="right") - 1
        rows: list[dict | None] = []
        for rg in np.unique(rg_of):
            table = self._read_row_group(int(rg), cols)
            take = local[rg_of == rg] - self._rg_starts[rg]
            rows.extend(table.take(take).to_pylist())
        return rows

    def _read_row_group(self, rg: int, cols: list[str]):
        import pyarrow as pa

        try:
            return self._file.read_row_group(rg, columns=cols)
        except (OSError, pa.ArrowException) as e:
            # A damaged region of the file: rows are lost, so the run stops and says exactly where.
            cause = " ".join(str(e).split()) or type(e).__name__
            raise ChatspaceError(
                f"{self._path}: row group {rg} (rows {self._rg_starts[rg]}-{self._rg_starts[rg + 1] - 1} "
                f"of the file) cannot be read: {cause}"
            ) from None

    def close(self) -> None:
        self._file.close()


class _JsonlReader:
    """Seeks to each requested line through the cached offset index; a bad line reads as None."""

    def __init__(self, entry: FileEntry, filesystem: str):
        self._offsets = np.load(entry.index_path)
        self._fh = open(entry.path, "rb")  # noqa: SIM115 - closed in close()
        size = os.fstat(self._fh.fileno()).st_size
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def read(self, local: np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        rows: list[dict | None] = []
        mm = self._mm
        for i in local.tolist():
            start = int(self._offsets[i])
            end = mm.find(b"\n", start)
            line = mm[start:] if end < 0 else mm[start:end]
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                rows.append(None)
                continue
            rows.append({c: obj[c] for c in columns if c in obj} if isinstance(obj, dict) else None)
        return rows

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()
        self._fh.close()


class _ArrowReader:
    """Arrow IPC files as written by `datasets.save_to_disk` (stream format), memory-mapped."""

    def __init__(self, entry: FileEntry, filesystem: str):
        self._table = _read_arrow_table(entry.path)

    def read(self, local: np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        cols = [c for c in dict.fromkeys(columns) if c in self._table.column_names]
        if not cols:
            return [{} for _ in range(len(local))]
        return self._table.select(cols).take(local).to_pylist()

    def close(self) -> None:
        self._table = None


_READERS = {"parquet": _ParquetReader, "jsonl": _JsonlReader, "arrow": _ArrowReader}


def _read_arrow_table(path: str):
    import pyarrow as pa

    source = pa.memory_map(path, "r")
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


# --- opening ------------------------------------------------------------------------------------------


def _cache_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def _index_jsonl(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    """Line offsets of the non-blank lines, cached; also the union of keys seen (for field checks)."""
    key = _cache_key(path)
    idx_path = cache_dir / "jsonl-index" / f"{key}.npy"
    keys_path = cache_dir / "jsonl-index" / f"{key}.keys.json"
    if idx_path.exists() and keys_path.exists():
        offsets = np.load(idx_path, mmap_mode="r")
        return FileEntry("jsonl", str(path), len(offsets), str(idx_path)), set(
            orjson.loads(keys_path.read_bytes())
        )
    offsets: list[int] = []
    keys: set[str] = set()
    pos = 0
    with open(path, "rb") as fh:
        for line in fh:
            if pos == 0 and line.startswith(UTF8_BOM):  # the first row starts after the mark
                line, pos = line[len(UTF8_BOM) :], len(UTF8_BOM)
            if line.strip():
                offsets.append(pos)
                try:
                    obj = orjson.loads(line)
                    if isinstance(obj, dict):
                        keys.update(obj.keys())
                except orjson.JSONDecodeError:
                    pass  # counted as invalid when read
            pos += len(line)
    idx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = idx_path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, np.asarray(offsets, dtype=np.int64))
    os.replace(tmp, idx_path)
    keys_path.write_bytes(orjson.dumps(sorted(keys)))
    return FileEntry("jsonl", str(path), len(offsets), str(idx_path)), keys


def _json_array_to_jsonl(path: Path, cache_dir: Path) -> Path:
    out = cache_dir / "converted" / f"{_cache_key(path)}.jsonl"
    if not out.exists():
        try:
            data = orjson.loads(path.read_bytes().removeprefix(UTF8_BOM))
        except orjson.JSONDecodeError as e:
            raise UsageError(f"{path} is not valid JSON: {e}") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            for obj in data if isinstance(data, list) else [data]:
                fh.write(orjson.dumps(obj) + b"\n")
        os.replace(tmp, out)
    return out


def _csv_to_parquet(path: Path, cache_dir: Path) -> Path:
    """CSV (quoted newlines and all) to a cached all-string Parquet file, read like any other."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = cache_dir / "converted" / f"{_cache_key(path)}.parquet"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    csv.field_size_limit(2**31 - 1)
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        delimiter = _sniff_delimiter(path, fh.read(65536))
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise UsageError(f"{path} has no header row")
        schema = pa.schema([(name, pa.string()) for name in header])
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[list[str]] = []
            for rec in reader:
                if not rec:
                    continue
                rec = (rec + [None] * len(header))[: len(header)]
                batch.append(rec)
                if len(batch) >= 8192:
                    writer.write_table(
                        pa.Table.from_pylist([dict(zip(header, r, strict=True)) for r in batch], schema)
                    )
                    batch = []
            writer.write_table(
                pa.Table.from_pylist([dict(zip(header, r, strict=True)) for r in batch], schema)
            )
    os.replace(tmp, out)
    return out


def _sniff_delimiter(path: Path, head: str) -> str:
    """Tab for .tsv; otherwise what the header line says (many ".csv" files are tab-separated)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def _parquet_entry(path: str, fs=None) -> tuple[FileEntry, set[str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(fs.open(path, "rb") if fs else path)
    except Exception as e:  # noqa: BLE001 - a corrupt file is the user's to fix
        raise UsageError(f"cannot read Parquet file {path}: {str(e).splitlines()[0]}") from None
    return FileEntry("parquet", path, pf.metadata.num_rows), set(pf.schema_arrow.names)


def _open_local_file(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    suffix = path.suffix.lower()
    if suffix in PARQUET_EXT:
        return _parquet_entry(str(path))
    if suffix in CSV_EXT:
        entry, columns = _parquet_entry(str(_csv_to_parquet(path, cache_dir)))
        return dataclasses.replace(entry, origin=str(path)), columns
    if suffix in ARROW_EXT:
        table = _read_arrow_table(str(path))
        return FileEntry("arrow", str(path), table.num_rows), set(table.column_names)
    if suffix in JSONL_EXT:
        if suffix == ".json" and _starts_with_bracket(path):
            entry, columns = _index_jsonl(_json_array_to_jsonl(path, cache_dir), cache_dir)
            return dataclasses.replace(entry, origin=str(path)), columns
        return _index_jsonl(path, cache_dir)
    raise UsageError(f"unsupported file type {path.suffix!r}: use .parquet, .jsonl, .json, .csv or .arrow")


def _starts_with_bracket(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(UTF8_BOM).lstrip()
    return head.startswith(b"[")


def _save_to_disk_files(folder: Path, split: str) -> list[Path] | None:
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


def _split_of(name: str) -> str | None:
    """The split a Hub-style file name announces: train-00000-of-00002.parquet, test.jsonl, ..."""
    stem = name.lower().split(".")[0]
    for split in SPLIT_NAMES:
        if stem == split or stem.startswith((f"{split}-", f"{split}_")):
            return split
    return None


def _local_files(path: Path, split: str) -> tuple[list[Path], str]:
    """The data files of one split of a local path; a split that is not there is a usage error."""
    if path.is_file():
        return [path], "file"
    arrow = _save_to_disk_files(path, split)
    if arrow is not None:
        return arrow, "save_to_disk"
    split_dirs = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES)
    if (path / split).is_dir():
        path = path / split
    elif split_dirs:
        raise UsageError(f"split {split!r} not in {path} (split folders: {', '.join(split_dirs)})")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_EXT)
    files = [
        p
        for p in files
        if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        and p.name not in _METADATA_FILES
    ]
    # A flat folder of Hub-style files (train-*.parquet, test-*.parquet) holds several splits.
    named = {f: _split_of(f.name) for f in files}
    if any(named.values()):
        splits = sorted({s for s in named.values() if s})
        if split not in splits:
            raise UsageError(f"split {split!r} not in {path} (files name splits: {', '.join(splits)})")
        files = [f for f in files if named[f] == split]
    if not files:
        raise UsageError(f"no .parquet, .jsonl, .json, .csv or .arrow files under {path}")
    return files, "folder"


def check_fields(
    columns: Iterable[str], text_field: str, id_field: str | None, dataset: str, *, flat: bool = False
) -> None:
    """A field the dataset does not have at all is a usage error, before any work starts.

    A dotted name passes when its leading part is a column (rows lacking the rest are skipped as
    missing_field); `flat` sources (CSV) have no nested values, so there a name must be a column.
    """
    cols = sorted(set(columns))
    for flag, name in (("--text-field", text_field), ("--id-field", id_field)):
        if name is None or name in cols:
            continue
        have = ", ".join(cols[:20]) or "none"
        if "." in name and flat:
            raise UsageError(
                f"{flag} {name!r}: CSV columns are flat text, so a dotted path cannot reach inside one, "
                f"and {dataset} has no column of that name (columns: {have})"
            )
        if top_column(name, cols) is None:
            what = "a column or a dotted path into one" if "." in name else "a column"
            raise UsageError(f"{flag} {name!r} is not {what} of {dataset} (columns: {have})")


def is_local(dataset: str, source: str) -> bool:
    if source == "local":
        return True
    if source == "huggingface":
        return False
    if dataset.startswith((".", "/", "~")):
        return True
    try:
        return Path(dataset).expanduser().exists()
    except (OSError, ValueError):  # too long a name, or a NUL byte: not a file here
        return False


def dataset_label(dataset: str, local: bool) -> str:
    """The dataset part of output paths: the hub id, or a local file's stem / folder's name."""
    if not local:
        return dataset
    p = Path(dataset).expanduser()
    return p.stem if p.is_file() else p.resolve().name


def open_source(
    dataset: str, *, split: str = "train", subset: str | None = None, source: str = "auto", cache_dir: Path
) -> Source:
    """Open a local path or Hub dataset; indexes/converts once into `cache_dir` where needed."""
    if is_local(dataset, source):
        path = Path(dataset).expanduser()
        if not path.exists():
            raise UsageError(f"dataset path does not exist: {dataset}")
        files, _kind = _local_files(path, split)
        entries: list[FileEntry] = []
        columns: set[str] = set()
        for f in files:
            entry, cols = _open_local_file(f, cache_dir)
            entries.append(entry)
            columns |= cols
        from chatspace.data.identity import local_identity

        identity = local_identity(files, [e.num_rows for e in entries])
        spec = SourceSpec(
            dataset, "local", split, subset, tuple(entries), tuple(sorted(columns)), identity=identity
        )
    else:
        from chatspace.data.hub import open_hub_source

        spec = open_hub_source(dataset, subset=subset, split=split, cache_dir=cache_dir)
    if spec.num_rows == 0:
        raise UsageError(f"dataset {dataset} ({split}) has no rows")
    return Source(spec)
