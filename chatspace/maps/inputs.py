"""Which shards to read, and a reproducible per-dataset sample of their rows, read in a stream.

An input is an output root (every run under it, narrowed by model/dataset/split/subset/run id as
`load_embeddings` does), a run's index folder or manifest, a folder of shard files, or one shard file.
Runs with manifests are read through their manifests' shard lists; a plain folder is read by its
Parquet footers. Each may be local or on an object store (`s3://bucket/prefix`, read through the same
`OutputRoot` as the runs were written). Only the sampled rows are kept: memory follows the sample, not
the dataset.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.errors import ChatspaceError, UsageError
from chatspace.store import reader
from chatspace.store.layout import INDEXES_DIR, MANIFEST_NAME
from chatspace.store.root import OutputRoot, remote_error
from chatspace.store.row_kinds import row_labels, turn_mask

# Columns carried from the shards into the sample (the embedding is turned into a matrix on the way).
CARRIED = ("id", "dataset", "split", "model", "run_id", "text")
PREVIEW_CHARS = 200
READ_BATCH_ROWS = 4096


@dataclass(frozen=True)
class Selection:
    """load_embeddings-style filters applied to inputs that hold manifests."""

    model: str | None = None
    dataset: str | None = None
    split: str | None = None
    subset: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    include_incomplete: bool = False


@dataclass
class Shard:
    root: OutputRoot  # the filesystem it is read through (its input's)
    path: PurePath
    rows: int
    dataset: str
    split: str | None
    model: str | None
    run_id: str | None
    dimension: int
    input: str  # the input argument it came from
    manifest: str | None = None

    @property
    def url(self) -> str:
        return self.root.url(self.path)

    def open(self) -> pq.ParquetFile:
        return pq.ParquetFile(str(self.path), filesystem=self.root.arrow_filesystem)


@dataclass
class Sample:
    """The sampled rows: their columns (preview included) and their vectors, in input order."""

    columns: dict[str, list[Any]]
    vectors: np.ndarray
    per_dataset: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> rows, sampled

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _first_values(root: OutputRoot, path: PurePath) -> tuple[pa.Schema, dict[str, Any], int]:
    """Schema, the first row's provenance columns, and the row count (from the footer) of a shard."""
    try:
        pf = pq.ParquetFile(str(path), filesystem=root.arrow_filesystem)
    except (OSError, pa.ArrowInvalid) as e:
        raise UsageError(f"{root.url(path)}: not a readable Parquet file ({e})") from None
    schema = pf.schema_arrow
    if "embedding" not in schema.names or "id" not in schema.names:
        raise UsageError(f"{root.url(path)}: not a chatspace shard (needs `id` and `embedding` columns)")
    wanted = [c for c in ("dataset", "split", "model", "run_id") if c in schema.names]
    first: dict[str, Any] = {}
    if pf.metadata.num_rows and pf.metadata.num_row_groups:
        row = pf.read_row_group(0, columns=wanted).slice(0, 1).to_pylist()
        first = row[0] if row else {}
    return schema, first, pf.metadata.num_rows


def _dimension(schema: pa.Schema, path: str) -> int:
    t = schema.field("embedding").type
    if pa.types.is_fixed_size_list(t):
        return int(t.list_size)
    raise UsageError(f"{path}: `embedding` is {t}, not a fixed-size list of floats")


def _shard(
    root: OutputRoot, path: PurePath, origin: str, expected_rows: int | None, manifest: str | None
) -> Shard:
    schema, first, rows = _first_values(root, path)
    if expected_rows is not None and rows != expected_rows:
        raise ChatspaceError(
            f"{root.url(path)} holds {rows} rows, its manifest says {expected_rows}; run `chatspace verify`"
        )
    return Shard(
        root=root,
        path=path,
        rows=rows,
        dataset=str(first.get("dataset") or path.parent.name),
        split=first.get("split"),
        model=first.get("model"),
        run_id=first.get("run_id"),
        dimension=_dimension(schema, root.url(path)),
        input=origin,
        manifest=manifest,
    )


def _has_manifests(root: OutputRoot) -> bool:
    """An output root, a run's index folder, or a manifest file (read through load_embeddings' rules)."""
    p = root.path
    if root.is_file(p):
        return p.name == MANIFEST_NAME
    return root.is_file(p / MANIFEST_NAME) or root.is_dir(p / INDEXES_DIR)


def _found(
    raw: str, selection: Selection
) -> tuple[OutputRoot, list[tuple[PurePath, int | None, str | None]]]:
    """The input's filesystem and its shards: (path, rows its manifest lists or None, manifest or None)."""
    root = OutputRoot(raw)
    if not root.exists(root.path):
        raise UsageError(f"input {raw} does not exist")
    if _has_manifests(root):
        filters = asdict(selection)  # model, dataset, split, then the RunFilters
        output, chosen = reader.open_runs(
            raw, filters.pop("model"), filters.pop("dataset"), filters.pop("split"), filters
        )
        found = [
            (shard_path, rows, output.url(manifest_path))
            for manifest_path, _, run_shards in chosen
            for shard_path, rows in run_shards
        ]
        return output, found
    if root.is_file(root.path):
        return root, [(root.path, None, None)]
    files = sorted(f for f in root.fs.find(str(root.path)) if f.endswith(".parquet"))
    if not files:
        raise UsageError(f"input {raw}: no manifest (indexes/) and no .parquet files under it")
    return root, [(root.as_path(f), None, None) for f in files]


def resolve_shards(inputs: Sequence[str | os.PathLike], selection: Selection = Selection()) -> list[Shard]:
    """Every shard the inputs name, each once, with its provenance; refuses inputs of different
    models or dimensions with one line naming them."""
    shards: list[Shard] = []
    seen: set[str] = set()
    for raw in inputs:
        try:
            root, found = _found(str(raw), selection)
            for path, rows, manifest in found:
                if not root.is_file(path):
                    raise ChatspaceError(
                        f"{root.url(path)} is listed in {manifest} but missing; run `chatspace verify`"
                    )
                if root.url(path) in seen:
                    continue
                seen.add(root.url(path))
                shards.append(_shard(root, path, str(raw), rows, manifest))
        except (UsageError, ChatspaceError):
            raise
        except OSError as e:  # an object store that refuses or cannot be reached
            raise UsageError(f"input {raw}: {remote_error(e)}") from None
    if not shards:
        raise UsageError("the inputs hold no shards")
    _check_one_space(shards)
    return shards


def _check_one_space(shards: list[Shard]) -> None:
    spaces: dict[tuple[Any, int], Shard] = {}
    for s in shards:
        spaces.setdefault((s.model, s.dimension), s)
    if len(spaces) > 1:
        listing = "; ".join(
            f"{s.input} ({s.dataset}): model {m}, dimension {d}" for (m, d), s in spaces.items()
        )
        raise UsageError(
            f"inputs come from different models or dimensions and cannot share one map: {listing}"
        )


def dataset_seed(sample_seed: int, dataset: str) -> np.random.SeedSequence:
    """One seed per dataset, so adding another input never changes the rows drawn from this one."""
    return np.random.SeedSequence([sample_seed, zlib.crc32(dataset.encode())])


def sample_positions(total: int, max_samples: int | None, sample_seed: int, dataset: str) -> np.ndarray:
    """Sorted row positions (0..total-1) to keep: all, or `max_samples` drawn without replacement."""
    if max_samples is None or total <= max_samples:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(dataset_seed(sample_seed, dataset))
    return np.sort(rng.choice(total, size=max_samples, replace=False)).astype(np.int64)


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The text on one line, cut at `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise ChatspaceError(f"{arr.null_count} row(s) have no embedding")
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(arr), dim)


def read_sample(
    shards: list[Shard],
    max_samples: int | None,
    sample_seed: int,
    keep_full_text: bool = True,
    on_rows: Callable[[int], None] | None = None,
    roles: str | None = None,
    turns: str | None = None,
) -> Sample:
    """The sampled rows of `shards`, per run, read batch by batch (only kept rows stay in memory).

    `max_samples` applies to each run over all its shards together: to each dataset (the `dataset`
    column) that has one run, and to each run of a dataset that has several (its text, its first user
    turns, ...), which then get a group of their own (`dataset · run folder`) in `group` and on the map.
    `on_rows(n)` is told how many rows each batch read (for a progress bar). `roles`/`turns`
    (comma-separated) keep only those messages of each-turn runs: the sample is drawn among them.
    """
    dim = shards[0].dimension
    groups = run_groups(shards)
    wanted, per_dataset = _sampled_positions(shards, groups, max_samples, sample_seed, roles, turns)
    columns: dict[str, list[Any]] = {c: [] for c in (*CARRIED, "preview", "group")}
    blocks: list[np.ndarray] = []
    for s in shards:
        if wanted[s.url].size:
            kept = _read_kept_rows(s, wanted[s.url], dim, groups[s.url], columns, keep_full_text, on_rows)
            blocks.extend(kept)
    vectors = np.concatenate(blocks) if blocks else np.empty((0, dim), np.float32)
    if not keep_full_text:
        columns.pop("text")
    return Sample(columns=columns, vectors=vectors, per_dataset=per_dataset)


def _sampled_positions(
    shards: list[Shard],
    groups: dict[str, str],
    max_samples: int | None,
    sample_seed: int,
    roles: str | None,
    turns: str | None,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Each shard's sorted local row positions to keep (drawn per group over all its shards, among
    the rows that pass --roles/--turns), and each group's rows and sampled count."""
    by_dataset: dict[str, list[Shard]] = {}
    for s in shards:
        by_dataset.setdefault(groups[s.url], []).append(s)
    wanted: dict[str, np.ndarray] = {}  # shard URL -> sorted local row positions
    per_dataset: dict[str, dict[str, int]] = {}
    matching = None  # shard URL -> local positions of the rows that pass --roles/--turns
    if roles is not None or turns is not None:
        matching = {s.url: _turn_positions(s, roles, turns) for s in shards}
    for name, group in by_dataset.items():
        counts = [s.rows if matching is None else int(matching[s.url].size) for s in group]
        total = sum(counts)
        positions = sample_positions(total, max_samples, sample_seed, name)
        per_dataset[name] = {"rows": total, "sampled": int(positions.size)}
        start = 0
        for s, n in zip(group, counts, strict=True):
            lo, hi = np.searchsorted(positions, [start, start + n])
            local = positions[lo:hi] - start
            wanted[s.url] = local if matching is None else matching[s.url][local]
            start += n
    if matching is not None and not any(w.size for w in wanted.values()):
        raise UsageError(
            f"no row of these runs is a message with --roles {roles or 'any'} --turns {turns or 'any'} "
            "(only runs made with --extract each-turn have messages)"
        )
    return wanted, per_dataset


def _read_kept_rows(
    s: Shard,
    local: np.ndarray,
    dim: int,
    group: str,
    columns: dict[str, list[Any]],
    keep_full_text: bool,
    on_rows: Callable[[int], None] | None,
) -> list[np.ndarray]:
    """Read `s` batch by batch, appending the rows at `local` to `columns`; returns their vectors."""
    pf = s.open()
    present = [c for c in (*CARRIED, "embedding", "metadata") if c in pf.schema_arrow.names]
    blocks: list[np.ndarray] = []
    offset = 0
    for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=present):
        lo, hi = np.searchsorted(local, [offset, offset + batch.num_rows])
        if hi > lo:
            take = batch.take(pa.array(local[lo:hi] - offset))
            blocks.append(_vectors(take.column("embedding"), dim))
            columns["group"].extend([group] * take.num_rows)
            _append_carried(s, take, present, columns, keep_full_text)
        offset += batch.num_rows
        if on_rows:
            on_rows(batch.num_rows)
    if offset != s.rows:
        raise ChatspaceError(f"{s.url} changed while it was read ({offset} rows, expected {s.rows})")
    return blocks


def _append_carried(
    s: Shard, take: pa.RecordBatch, present: list[str], columns: dict[str, list[Any]], keep_full_text: bool
) -> None:
    """The CARRIED columns of the kept rows `take` (and each text's preview) onto `columns`."""
    for c in CARRIED:
        if c in present:
            values = take.column(c).to_pylist()
        else:  # a file written by another tool: the shard's own record stands in
            values = [getattr(s, c, None)] * take.num_rows
        if c == "text":
            # A message's role and turn, a chunk's place, lead the preview (and the hover).
            labels = row_labels(
                take.column("metadata").to_pylist() if "metadata" in present else [None] * take.num_rows
            )
            columns["preview"].extend(lb + preview(v) for lb, v in zip(labels, values, strict=True))
            if not keep_full_text:
                values = [None] * take.num_rows
        columns[c].extend(values)


def _turn_positions(shard: Shard, roles: str | None, turns: str | None) -> np.ndarray:
    """Local row positions of `shard` whose message passes --roles/--turns (its metadata column only)."""
    pf = shard.open()
    if "metadata" not in pf.schema_arrow.names:
        return np.zeros(0, np.int64)
    metadata = pf.read(columns=["metadata"]).column("metadata").to_pylist()
    mask = turn_mask(
        metadata,
        roles.split(",") if roles else None,
        [int(t) for t in turns.split(",")] if turns else None,
    )
    return np.flatnonzero(mask).astype(np.int64)


def run_groups(shards: list[Shard]) -> dict[str, str]:
    """shard URL -> its group: the dataset, or `dataset · run folder` where a dataset has several runs."""
    runs: dict[str, set[str]] = {}
    for s in shards:
        runs.setdefault(s.dataset, set()).add(s.path.parent.name)
    return {
        s.url: s.dataset if len(runs[s.dataset]) == 1 else f"{s.dataset} · {s.path.parent.name}"
        for s in shards
    }


def describe_inputs(shards: list[Shard]) -> list[dict[str, Any]]:
    """One record per run (or shard folder) read, for the sidecar."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in shards:
        key = (s.input, s.run_id, s.dataset, s.split)
        r = runs.setdefault(
            key,
            {
                "input": s.input,
                "run_id": s.run_id,
                "model": s.model,
                "dataset": s.dataset,
                "split": s.split,
                "dimension": s.dimension,
                "manifest": s.manifest,
                "shards": 0,
                "rows": 0,
            },
        )
        r["shards"] += 1
        r["rows"] += s.rows
    return list(runs.values())
