"""An approximate-nearest-neighbour index per run, kept beside the run: `{run's index folder}/ann/`
holds `index.faiss` and `ann.json`, a small manifest of what it was built from.

faiss-cpu builds it (flat, IVF or HNSW; vectors stored as float32, int8 or sign bits). Vectors are
scaled to length 1 first, so inner product is cosine similarity. The manifest records the run's id,
config hash and every shard's checksum: when the run changes (a resume, an --overwrite), the index is
stale, search says so and falls back to exact search, and `verify` reports it.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson

from chatspace.errors import ChatspaceError, UsageError
from chatspace.store.manifest import now_iso, read_json
from chatspace.store.root import OutputRoot

ANN_DIR = "ann"
INDEX_FILE = "index.faiss"
INDEX_MANIFEST = "ann.json"
FORMAT = "chatspace-ann/1"
KINDS = ("flat", "ivf", "hnsw")
QUANTIZATIONS = ("none", "int8", "binary")
#: Candidates per result fetched from a binary index and re-scored with the stored vectors.
BINARY_RERANK = 10
#: IVF trains its centroids on at most this many vectors (faiss asks for at least 39 per list).
MAX_TRAINING_VECTORS = 200_000


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError("faiss is not installed: pip install faiss-cpu (or 'chatspace[query]')") from None
    return faiss


@dataclass(frozen=True)
class IndexParams:
    kind: str = "hnsw"
    quantize: str = "none"
    nlist: int | None = None  # IVF lists (None: 4 * sqrt(rows))
    nprobe: int | None = None  # IVF lists searched per query (None: nlist / 8, at least 16)
    m: int = 32  # HNSW links per node
    ef_construction: int = 100
    ef_search: int = 128

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"--kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.quantize not in QUANTIZATIONS:
            raise UsageError(f"--quantize {self.quantize!r}: one of {', '.join(QUANTIZATIONS)}")
        for name in ("nlist", "nprobe", "m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, not {value}")

    def resolved(self, rows: int) -> IndexParams:
        """The parameters with IVF's list counts worked out for `rows` vectors."""
        if self.kind != "ivf":
            return IndexParams(
                self.kind, self.quantize, None, None, self.m, self.ef_construction, self.ef_search
            )
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(rows)), rows // 39 or 1))
        nprobe = min(nlist, self.nprobe or max(16, nlist // 8))
        return IndexParams(
            self.kind, self.quantize, nlist, nprobe, self.m, self.ef_construction, self.ef_search
        )


def ann_dir(manifest_path: PurePath) -> PurePath:
    return manifest_path.parent / ANN_DIR


def fingerprint(run_manifest: dict[str, Any]) -> dict[str, Any]:
    """What an index was built from: changes whenever the run's rows could have."""
    shards = sorted(run_manifest.get("shards", []), key=lambda s: s["unit"])
    return {
        "run_id": run_manifest.get("run_id"),
        "config_hash": run_manifest.get("config_hash"),
        "shards": [[s["path"], s.get("sha256"), int(s["rows"])] for s in shards],
    }


# --- building -----------------------------------------------------------------------------------------


def _new_index(faiss, params: IndexParams, dim: int):
    ip = faiss.METRIC_INNER_PRODUCT
    if params.quantize == "binary":
        bits = dim + (-dim) % 8
        if params.kind == "flat":
            return faiss.IndexBinaryFlat(bits)
        if params.kind == "hnsw":
            index = faiss.IndexBinaryHNSW(bits, params.m)
            index.hnsw.efConstruction = params.ef_construction
            return index
        return faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, params.nlist)
    sq = faiss.ScalarQuantizer.QT_8bit
    if params.kind == "flat":
        return (
            faiss.IndexFlatIP(dim) if params.quantize == "none" else faiss.IndexScalarQuantizer(dim, sq, ip)
        )
    if params.kind == "hnsw":
        index = (
            faiss.IndexHNSWFlat(dim, params.m, ip)
            if params.quantize == "none"
            else faiss.IndexHNSWSQ(dim, sq, params.m, ip)
        )
        index.hnsw.efConstruction = params.ef_construction
        return index
    coarse = faiss.IndexFlatIP(dim)
    if params.quantize == "none":
        index = faiss.IndexIVFFlat(coarse, dim, params.nlist, ip)
    else:
        index = faiss.IndexIVFScalarQuantizer(coarse, dim, params.nlist, sq, ip)
    return index  # faiss' Python wrapper keeps `coarse` alive with the index


def sign_bits(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (set where positive), packed 8 to a byte, as binary quantization stores it."""
    return np.packbits(vectors > 0, axis=1)


def _as_stored(params: IndexParams, vectors: np.ndarray) -> np.ndarray:
    return sign_bits(vectors) if params.quantize == "binary" else np.ascontiguousarray(vectors)


def training_sample(blocks, rows: int) -> np.ndarray:
    """An even spread of at most MAX_TRAINING_VECTORS rows, from one pass over the shards."""
    step = max(1, math.ceil(rows / MAX_TRAINING_VECTORS))
    picked, seen = [], 0
    for _, vectors in blocks:
        offset = (-seen) % step
        picked.append(vectors[offset::step])
        seen += len(vectors)
    return np.concatenate(picked) if picked else np.zeros((0, 0), np.float32)


def build(faiss, params: IndexParams, dim: int, rows: int, blocks_factory, progress=None):
    """A faiss index over the vectors `blocks_factory()` streams (twice where it trains first: IVF lists,
    int8 ranges)."""
    index = _new_index(faiss, params, dim)
    if not index.is_trained:
        index.train(_as_stored(params, training_sample(blocks_factory(), rows)))
    for _, vectors in blocks_factory():
        index.add(_as_stored(params, vectors))
        if progress is not None:
            progress(len(vectors))
    return index


def serialize(faiss, index, params: IndexParams) -> bytes:
    data = (
        faiss.serialize_index_binary(index) if params.quantize == "binary" else faiss.serialize_index(index)
    )
    return np.asarray(data).tobytes()


def write_index(
    output: OutputRoot,
    manifest_path: PurePath,
    run_manifest: dict[str, Any],
    params: IndexParams,
    data: bytes,
    rows: int,
    dim: int,
    build_seconds: float,
) -> dict[str, Any]:
    """The index file first, its manifest second: a manifest always describes a complete file."""
    import faiss

    folder = ann_dir(manifest_path)
    output.write_atomic(folder / INDEX_FILE, data)
    info = {
        "format": FORMAT,
        "library": "faiss",
        "library_version": faiss.__version__,
        "metric": "cosine (inner product of unit vectors)",
        "params": asdict(params),
        "rows": rows,
        "dimension": dim,
        "built_from": fingerprint(run_manifest),
        "file": {"path": INDEX_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "build_seconds": round(build_seconds, 3),
        "built_at": now_iso(),
    }
    output.write_atomic(folder / INDEX_MANIFEST, orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return info


# --- reading back -------------------------------------------------------------------------------------


def read_info(output: OutputRoot, manifest_path: PurePath) -> dict[str, Any] | None:
    path = ann_dir(manifest_path) / INDEX_MANIFEST
    if not output.is_file(path):
        return None
    try:
        info = read_json(output, path)
    except (OSError, orjson.JSONDecodeError):
        return {"format": None}
    return info if isinstance(info, dict) else {"format": None}


def stale_reason(info: dict[str, Any], run_manifest: dict[str, Any]) -> str | None:
    """Why an index no longer stands for its run (None when it does)."""
    if info.get("format") != FORMAT:
        return "its manifest is unreadable"
    built, now = info.get("built_from", {}), fingerprint(run_manifest)
    if built.get("run_id") != now["run_id"]:
        return f"it was built from run {built.get('run_id')}, the run there now is {now['run_id']}"
    if built.get("config_hash") != now["config_hash"]:
        return "the run's config changed since it was built"
    if built.get("shards") != now["shards"]:
        return "the run's shards changed since it was built"
    return None


def check(output: OutputRoot, manifest_path: PurePath, run_manifest: dict[str, Any]) -> list[str]:
    """Problems with a run's index (none when it has none): stale, missing or altered file."""
    info = read_info(output, manifest_path)
    if info is None:
        return []
    where = output.url(ann_dir(manifest_path))
    reason = stale_reason(info, run_manifest)
    if reason:
        return [f"{where}: index is stale ({reason}); rebuild it with `chatspace index`"]
    path = ann_dir(manifest_path) / info["file"]["path"]
    if not output.is_file(path):
        return [f"{where}: {info['file']['path']} is missing"]
    if output.size(path) != info["file"]["bytes"] or output.sha256(path) != info["file"]["sha256"]:
        return [f"{where}: {info['file']['path']} does not match its checksum"]
    return []


@dataclass
class LoadedIndex:
    index: Any
    info: dict[str, Any]
    params: IndexParams

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores or -hamming distances, row numbers in the run), each [queries, k]; -1 where fewer."""
        k = min(k, self.index.ntotal)
        if self.params.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.params.ef_search, k)
        elif self.params.kind == "ivf":
            self.index.nprobe = self.params.nprobe
        if self.params.quantize == "binary":
            distances, labels = self.index.search(sign_bits(queries), k)
            return -distances.astype(np.float32), labels
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def load(
    output: OutputRoot, manifest_path: PurePath, run_manifest: dict[str, Any], nprobe: int | None = None
) -> tuple[LoadedIndex | None, str | None]:
    """(the run's index, None), or (None, why not: no index, or a stale one)."""
    info = read_info(output, manifest_path)
    if info is None:
        return None, None
    reason = stale_reason(info, run_manifest)
    if reason:
        return None, f"the index of run {run_manifest.get('run_id')} is stale ({reason})"
    faiss = require_faiss()
    params = IndexParams(**info["params"])
    if nprobe is not None:
        params = IndexParams(**{**asdict(params), "nprobe": nprobe})
    data = np.frombuffer(output.read_bytes(ann_dir(manifest_path) / info["file"]["path"]), dtype=np.uint8)
    try:
        index = (
            faiss.deserialize_index_binary(data)
            if params.quantize == "binary"
            else faiss.deserialize_index(data)
        )
    except RuntimeError as e:
        raise ChatspaceError(
            f"{output.url(ann_dir(manifest_path))}: the index cannot be read ({e})"
        ) from None
    return LoadedIndex(index, info, params), None


def index_runs(selection, params: IndexParams, progress=None) -> list[dict[str, Any]]:
    """Build (or rebuild) the index of every run in a Selection (vectors.Selection); each run's index
    manifest, in order. Runs that did not finish are refused: their index would be stale at once."""
    faiss = require_faiss()
    params.validate()
    unfinished = [m for _, m in selection.runs if m.get("status") != "complete"]
    if unfinished:
        raise UsageError(
            f"run {unfinished[0].get('run_id')} is {unfinished[0].get('status')}: finish it with --resume "
            "before indexing it"
        )
    built = []
    for run, (manifest_path, manifest) in enumerate(selection.runs):
        shards = [s for s in selection.shards if s.run == run]
        rows = sum(s.rows for s in shards)
        if rows == 0:
            raise UsageError(f"run {manifest.get('run_id')} holds no rows to index")
        run_params = params.resolved(rows)
        t0 = time.perf_counter()
        index = build(
            faiss, run_params, selection.dimension, rows, lambda s=shards: selection.blocks(s), progress
        )
        data = serialize(faiss, index, run_params)
        seconds = time.perf_counter() - t0
        built.append(
            write_index(
                selection.output,
                manifest_path,
                manifest,
                run_params,
                data,
                rows,
                selection.dimension,
                seconds,
            )
        )
    return built


def check_indexes(target: str) -> list[str]:
    """`verify`'s look at the ANN indexes under a root: each is fresh and its file matches its checksum."""
    from chatspace.store.catalog import find_runs

    output, runs = find_runs(target)
    return [line for path, m in runs for line in check(output, path, m)]
