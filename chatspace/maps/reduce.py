"""`reduce-embeddings`: a sample of one or more runs, projected to 2 or 3 dimensions.

PCA is scikit-learn's (exact SVD); UMAP is umap-learn; t-SNE is openTSNE (FFT-accelerated, so 100k+
points take minutes rather than hours; Barnes-Hut below 3,000 points, where it is faster). The output is
a Parquet table of points with their provenance and a text preview, plus a sidecar JSON that records the
method, parameters, input runs and timings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace import __version__
from chatspace.errors import UsageError
from chatspace.maps.inputs import Selection, describe_inputs, read_sample, resolve_shards
from chatspace.maps.params import ReduceParams

log = logging.getLogger(__name__)

AXES = ("x", "y", "z")


def pca(vectors: np.ndarray, n_components: int) -> np.ndarray:
    """Exact PCA (full SVD, signs fixed by scikit-learn's convention), in float64."""
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, svd_solver="full").fit_transform(vectors.astype(np.float64))


def umap_reduce(vectors: np.ndarray, p: ReduceParams, progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    import umap

    n = vectors.shape[0]
    n_neighbors = min(p.n_neighbors, n - 1)
    # A fixed random_state makes umap-learn deterministic (it then runs single-threaded).
    reducer = umap.UMAP(
        n_components=p.n_components,
        n_neighbors=n_neighbors,
        min_dist=p.min_dist,
        metric=p.metric,
        random_state=p.seed,
        n_jobs=1,  # what a fixed random_state implies anyway; said here so umap does not warn
        verbose=progress and sys.stderr.isatty(),  # its own epoch lines only on a terminal
        tqdm_kwds={"disable": not (progress and sys.stderr.isatty()), "file": sys.stderr},
    )
    return reducer.fit_transform(vectors), {"n_neighbors": n_neighbors}


class _TsneProgress:
    """openTSNE callback: a tqdm bar over optimisation iterations."""

    def __init__(self, total: int, every: int):
        from tqdm import tqdm

        self.every = every
        self.bar = tqdm(total=total, desc="t-SNE", unit="it", file=sys.stderr)

    def __call__(self, iteration, error, embedding):  # noqa: ARG002 - openTSNE's callback signature
        self.bar.update(self.every)
        return False


FFT_FROM_POINTS = 3_000  # near where the two cross (3,000 points: 1.0-1.4x apart; 5,000: FFT 1.4x faster)


def tsne_reduce(vectors: np.ndarray, p: ReduceParams, progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from openTSNE import TSNE

    n = vectors.shape[0]
    # openTSNE needs at least 3 * perplexity neighbours; small samples get the largest that fits.
    perplexity = min(p.perplexity, max(1.0, (n - 1) / 3.0))
    # FFT interpolation costs a fixed grid per iteration: below ~3,000 points Barnes-Hut is faster
    # (240 points: ~4x, 2,000: 2x; from 5,000 FFT is; benchmarks/RESULTS.md). FFT exists only up to 2-D.
    gradient = "fft" if p.n_components <= 2 and n >= FFT_FROM_POINTS else "bh"
    early, late, every = 250, 500, 50
    callbacks = _TsneProgress(early + late, every) if progress and sys.stderr.isatty() else None
    tsne = TSNE(
        n_components=p.n_components,
        perplexity=perplexity,
        metric=p.metric,
        random_state=p.seed,
        negative_gradient_method=gradient,
        early_exaggeration_iter=early,
        n_iter=late,
        n_jobs=1,  # threads would reorder float sums: one thread keeps a seed's layout exact
        callbacks=callbacks,
        callbacks_every_iters=every,
        verbose=False,
    )
    try:
        embedding = np.asarray(tsne.fit(vectors))
    finally:
        if callbacks:
            callbacks.bar.close()
    return embedding, {"perplexity": perplexity, "negative_gradient_method": gradient}


class _ProgressLines:
    """tqdm's update/close, written as a plain `progress:` line at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, total: int, what: str, enabled: bool = True):
        self.total, self.what, self.enabled = total, what, enabled
        self.done, self.last = 0, time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            self._say()

    def _say(self) -> None:
        share = 100.0 * self.done / self.total if self.total else 100.0
        log.info("progress: %s %d/%d rows (%.1f%%)", self.what, self.done, self.total, share)

    def close(self) -> None:
        if self.enabled:
            self._say()
            self.enabled = False


PROGRESS_EVERY_S = 10.0


def _min_points(method: str) -> int:
    return 1 if method == "pca" else 4


def project(
    vectors: np.ndarray, p: ReduceParams, progress: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """(points [n, n_components] float32, the parameters actually used where they differ from asked)."""
    n = vectors.shape[0]
    need = max(_min_points(p.method), p.n_components + 1 if p.method == "pca" else 0)
    if n < need:
        raise UsageError(f"{p.method} needs at least {need} points; the sample has {n}")
    if p.method == "pca":
        coords, used = pca(vectors, p.n_components), {}
    elif p.method == "umap":
        coords, used = umap_reduce(vectors, p, progress)
    else:
        coords, used = tsne_reduce(vectors, p, progress)
    coords = np.asarray(coords, dtype=np.float32)
    if not np.isfinite(coords).all():
        raise RuntimeError(f"{p.method} produced non-finite coordinates")
    return coords, used


def _versions(method: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {"pca": ["scikit-learn"], "umap": ["umap-learn", "scikit-learn"], "tsne": ["openTSNE"]}[method]
    out = {"chatspace": __version__, "numpy": np.__version__, "pyarrow": pa.__version__}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def sidecar_path(output: str | Path) -> Path:
    """`coords.parquet` -> `coords.json`: the sidecar lives next to the points it describes."""
    return Path(output).with_suffix(".json")


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _output_path(output: str | Path) -> Path:
    """--output as a Parquet path whose folder exists (made here when missing)."""
    out = Path(output).expanduser()
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--output must end in .parquet (got {output})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the folder of --output ({out.parent}): {e.strerror or e}") from None
    return out


def _read_with_progress(shards: list, total: int, params: ReduceParams, progress: bool):
    """The sample read from `shards`, with a bar on a terminal and plain lines elsewhere."""
    from tqdm import tqdm

    if progress and sys.stderr.isatty():
        bar = tqdm(total=total, desc="reading", unit="row", file=sys.stderr)
    else:  # piped or in a log: plain lines, as embed-hf writes them, never carriage returns
        bar = _ProgressLines(total, "reading", enabled=progress)
    try:
        return read_sample(
            shards,
            params.max_samples,
            params.sample_seed,
            params.full_text,
            bar.update,
            roles=params.roles,
            turns=params.turns,
        )
    finally:
        bar.close()


def _points_table(sample: Any, coords: np.ndarray, n_components: int) -> pa.Table:
    """The map's rows: who each point is (id, dataset, split, model, run, preview, colour group, the
    text when kept) and its coordinates."""
    table_columns: dict[str, pa.Array] = {
        "id": pa.array(sample.columns["id"], pa.string()),
        "dataset": pa.array(sample.columns["dataset"], pa.string()),
        "split": pa.array(sample.columns["split"], pa.string()),
        "model": pa.array(sample.columns["model"], pa.string()),
        "run_id": pa.array(sample.columns["run_id"], pa.string()),
        "preview": pa.array(sample.columns["preview"], pa.string()),
    }
    table_columns["group"] = pa.array(sample.columns["group"], pa.string())  # what the map colours by
    if "text" in sample.columns:
        table_columns["text"] = pa.array(sample.columns["text"], pa.string())
    for i in range(n_components):
        table_columns[AXES[i]] = pa.array(coords[:, i], pa.float32())
    return pa.table(table_columns)


def reduce_embeddings(
    inputs: list[str],
    output: str | Path,
    params: ReduceParams | None = None,
    selection: Selection | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample `inputs`, project the vectors, write `output` (Parquet) and its sidecar; returns the sidecar.

    The same inputs, `sample_seed` and `seed` give the same points.
    """
    params = params or ReduceParams()
    selection = selection or Selection()
    out = _output_path(output)
    t0 = time.perf_counter()
    shards = resolve_shards(inputs, selection)
    total = sum(s.rows for s in shards)
    sample = _read_with_progress(shards, total, params, progress)
    t_read = time.perf_counter()
    log.info(
        "%d of %d rows from %d shard(s); %s on %d-dimensional vectors",
        len(sample),
        total,
        len(shards),
        params.method,
        shards[0].dimension,
    )
    if progress and not sys.stderr.isatty():
        log.info("progress: %s of %d points (no progress lines until it ends)", params.method, len(sample))
    coords, used = project(sample.vectors, params, progress)
    t_reduce = time.perf_counter()
    if progress and not sys.stderr.isatty():
        log.info("progress: %s done in %.1fs", params.method, t_reduce - t_read)
    table = _points_table(sample, coords, params.n_components)
    meta = {
        "method": params.method,
        "parameters": asdict(params),
        "effective_parameters": used,
        "points": table.num_rows,
        "rows_read": total,
        "per_dataset": sample.per_dataset,
        "model": shards[0].model,
        "dimension": shards[0].dimension,
        "inputs": describe_inputs(shards),
        "selection": asdict(selection),
        "output": str(out),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "versions": _versions(params.method),
    }
    table = table.replace_schema_metadata({b"chatspace.reduce": orjson.dumps(meta)})
    _write_atomic(out, lambda tmp: pq.write_table(table, tmp))
    t_write = time.perf_counter()
    meta["timings"] = {
        "read_s": round(t_read - t0, 3),
        "reduce_s": round(t_reduce - t_read, 3),
        "write_s": round(t_write - t_reduce, 3),
        "total_s": round(t_write - t0, 3),
    }
    side = sidecar_path(out)
    _write_atomic(side, lambda tmp: tmp.write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2)))
    return meta
