"""Atomic shard writes: a hidden temporary name, fsync, then rename; the checksum is of the final bytes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    rows: int
    bytes: int
    sha256: str
    norm_min: float | None
    norm_max: float | None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_shard(path: Path, table: pa.Table, embeddings: np.ndarray) -> ShardInfo:
    """Write `table` to `path` atomically; `embeddings` (float32, as stored) give the norm range."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=4096)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    norms = np.linalg.norm(embeddings.astype(np.float32), axis=1) if len(embeddings) else None
    return ShardInfo(
        path,
        table.num_rows,
        size,
        digest,
        float(norms.min()) if norms is not None else None,
        float(norms.max()) if norms is not None else None,
    )


def remove_stale_temporaries(directory: Path) -> int:
    """Temporary shard files left by a killed run; they never count as output."""
    if not directory.exists():
        return 0
    stale = list(directory.glob(".shard-*.parquet.tmp-*"))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
