"""The input file formats: one table from a file's suffix to how it becomes rows, and the row readers.

Every file is opened into a `FileEntry` whose row count is known up front: Parquet and Arrow carry it,
JSONL gets a one-time line index (cached), and the formats without random access are converted once
into one that has it (CSV to an all-string Parquet file, a JSON array to JSONL). Rows are then read back
by the reader of the entry's storage format (`READERS`), which is what a run's manifest records.

Adding a format: a function that opens a local file into a `FileEntry`, and a row of `FORMATS`; a new
storage format also needs a reader in `READERS`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import mmap
import os
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from chatspace.errors import ChatspaceError, UsageError

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FileEntry:
    """One readable file of a source: its storage format, path (or hub URL) and number of rows."""

    fmt: str  # parquet | jsonl | arrow: the reader in READERS
    path: str
    num_rows: int
    index_path: str | None = None  # jsonl: the cached line-offset index (.npy)
    origin: str | None = None  # the user's file, when `path` is a converted copy of it (CSV, JSON array)

    @property
    def user_path(self) -> str:
        """The file as the user knows it (what row provenance records)."""
        return self.origin or self.path


# --- opening local files ---------------------------------------------------------------------------


def cache_key(path: Path) -> str:
    """Names what was derived from a file (index, converted copy): changes when the file does."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def parquet_entry(path: str, fs=None) -> tuple[FileEntry, set[str]]:
    """A Parquet file (local, or on `fs`) from its footer alone: rows and column names."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(fs.open(path, "rb") if fs else path)
    except Exception as e:  # noqa: BLE001 - a corrupt file is the user's to fix
        raise UsageError(f"cannot read Parquet file {path}: {str(e).splitlines()[0]}") from None
    return FileEntry("parquet", path, pf.metadata.num_rows), set(pf.schema_arrow.names)


def index_jsonl(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    """Line offsets of the non-blank lines, cached; also the union of keys seen (for field checks)."""
    key = cache_key(path)
    idx_path = cache_dir / "jsonl-index" / f"{key}.npy"
    keys_path = cache_dir / "jsonl-index" / f"{key}.keys.json"
    if idx_path.exists() and keys_path.exists():
        offsets = np.load(idx_path, mmap_mode="r")
        return FileEntry("jsonl", str(path), len(offsets), str(idx_path)), set(
            orjson.loads(keys_path.read_bytes())
        )
    offsets = array("q")  # 8 bytes a line, not a Python int object each (~36 bytes)
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
    np.save(tmp, np.frombuffer(offsets, dtype=np.int64))
    os.replace(tmp, idx_path)
    keys_path.write_bytes(orjson.dumps(sorted(keys)))
    return FileEntry("jsonl", str(path), len(offsets), str(idx_path)), keys


def _open_json(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    """A `.json` file is JSON lines, or one array (or object) that is converted to JSON lines once."""
    if not _starts_with_bracket(path):
        return index_jsonl(path, cache_dir)
    entry, columns = index_jsonl(_json_array_to_jsonl(path, cache_dir), cache_dir)
    return dataclasses.replace(entry, origin=str(path)), columns


def _starts_with_bracket(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(UTF8_BOM).lstrip()
    return head.startswith(b"[")


def _json_array_to_jsonl(path: Path, cache_dir: Path) -> Path:
    out = cache_dir / "converted" / f"{cache_key(path)}.jsonl"
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


def _open_csv(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    entry, columns = parquet_entry(str(_csv_to_parquet(path, cache_dir)))
    return dataclasses.replace(entry, origin=str(path)), columns


def _csv_to_parquet(path: Path, cache_dir: Path) -> Path:
    """CSV (quoted newlines and all) to a cached all-string Parquet file, read like any other."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = cache_dir / "converted" / f"{cache_key(path)}.parquet"
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


def _open_arrow(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    table = read_arrow_table(str(path))
    return FileEntry("arrow", str(path), table.num_rows), set(table.column_names)


def read_arrow_table(path: str):
    """An Arrow IPC file's table, memory-mapped."""
    return _open_arrow_ipc(path).read_all()


def _open_arrow_ipc(path: str):
    """The stream format `datasets.save_to_disk` writes, or else the file format."""
    import pyarrow as pa

    source = pa.memory_map(path, "r")
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source)


# --- the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFormat:
    """A format as the user names it, the suffixes that mean it, and how a local file of it is opened."""

    name: str  # what describe-dataset reports: parquet | jsonl | json | csv | arrow
    suffixes: tuple[str, ...]
    open: Callable[[Path, Path], tuple[FileEntry, set[str]]]  # (file, cache dir) -> entry, columns


FORMATS = (
    FileFormat("parquet", (".parquet", ".pq"), lambda path, cache_dir: parquet_entry(str(path))),
    FileFormat("jsonl", (".jsonl", ".ndjson"), index_jsonl),
    FileFormat("json", (".json",), _open_json),
    FileFormat("csv", (".csv", ".tsv"), _open_csv),
    FileFormat("arrow", (".arrow",), _open_arrow),
)
_BY_SUFFIX = {suffix: f for f in FORMATS for suffix in f.suffixes}
SUFFIXES = tuple(_BY_SUFFIX)  # the suffixes of the files a dataset folder is read from
SUPPORTED = ".parquet, .jsonl, .json, .csv or .arrow"  # as messages name them


def file_format(path: str | Path) -> FileFormat | None:
    """The format a file's suffix announces (None: not one chatspace reads)."""
    return _BY_SUFFIX.get(Path(path).suffix.lower())


def format_name(path: str | Path) -> str:
    """The format's name for a report: the table's, else the bare suffix of a file chatspace does not read."""
    known = file_format(path)
    return known.name if known else Path(path).suffix.lower().lstrip(".")


def open_local_file(path: Path, cache_dir: Path) -> tuple[FileEntry, set[str]]:
    """The entry (and the column names) of one local file; indexes or converts it once into `cache_dir`."""
    known = file_format(path)
    if known is None:
        raise UsageError(f"unsupported file type {path.suffix!r}: use {SUPPORTED}")
    return known.open(path, cache_dir)


# --- reading rows -------------------------------------------------------------------------------------


def _filesystem(name: str):
    if name == "hf":
        from huggingface_hub import HfFileSystem

        return HfFileSystem()
    return None


class ParquetReader:
    """Reads whole row groups (Parquet's unit of I/O) and takes the requested rows from them."""

    def __init__(self, entry: FileEntry, filesystem: str):
        import pyarrow.parquet as pq

        fs = _filesystem(filesystem)
        self._path = entry.path
        self._file = pq.ParquetFile(fs.open(entry.path, "rb") if fs else entry.path)
        md = self._file.metadata
        self._rg_starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        self._names = set(self._file.schema_arrow.names)

    @staticmethod
    def schema(path: str):
        import pyarrow.parquet as pq

        return pq.read_schema(path)

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


class JsonlReader:
    """Seeks to each requested line through the cached offset index; a bad line reads as None."""

    def __init__(self, entry: FileEntry, filesystem: str):
        self._offsets = np.load(entry.index_path)
        self._fh = open(entry.path, "rb")  # noqa: SIM115 - closed in close()
        size = os.fstat(self._fh.fileno()).st_size
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    @staticmethod
    def schema(path: str):
        return None  # JSON lines have no schema: types are what the values show

    def read(self, local: np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        rows: list[dict | None] = []
        mm = self._mm
        end = 0
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
        if len(local) and isinstance(mm, mmap.mmap):
            self._release(int(self._offsets[int(local[0])]), len(mm) if end < 0 else end + 1)
        return rows

    def _release(self, start: int, end: int) -> None:
        """Drop the pages just read from this process's resident set (the kernel's page cache keeps
        them): without it a worker's RSS grows by the size of every file it reads, so peak memory
        would grow with the sample, not with the unit."""
        start -= start % mmap.PAGESIZE
        if end > start and hasattr(self._mm, "madvise"):
            self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()
        self._fh.close()


class ArrowReader:
    """Arrow IPC files as written by `datasets.save_to_disk` (stream format), memory-mapped."""

    def __init__(self, entry: FileEntry, filesystem: str):
        self._table = read_arrow_table(entry.path)

    @staticmethod
    def schema(path: str):
        return _open_arrow_ipc(path).schema

    def read(self, local: np.ndarray, columns: Sequence[str]) -> list[dict | None]:
        cols = [c for c in dict.fromkeys(columns) if c in self._table.column_names]
        if not cols:
            return [{} for _ in range(len(local))]
        return self._table.select(cols).take(local).to_pylist()

    def close(self) -> None:
        self._table = None


READERS = {"parquet": ParquetReader, "jsonl": JsonlReader, "arrow": ArrowReader}


def file_schema(entry: FileEntry):
    """The Arrow schema of one opened file, or None for JSONL (which has none)."""
    return READERS[entry.fmt].schema(entry.path)
