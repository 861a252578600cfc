"""`chatspace verify`: re-read every shard of every run under a root and check it against its manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePath

import numpy as np
import pyarrow as pa

from chatspace.store import duplicates
from chatspace.store.layout import manifest_paths, open_root, run_root_of
from chatspace.store.lock import run_is_live
from chatspace.store.manifest import failed_before_any_unit, read_manifest
from chatspace.store.records import RecordError, ShardFile, manifest_shards
from chatspace.store.root import OutputRoot
from chatspace.store.schema import embedding_schema, schema_matches
from chatspace.store.shards import read_shard


def verify_manifest(output: OutputRoot, manifest_path: PurePath) -> list[str]:
    """Damage found in one run, one line each: what it claims and does not hold. Empty when intact.

    A run that did not finish is not damage (`unfinished_runs` lists those): what it lists is checked,
    and shards it does not list yet are left to its `--resume`. A live run is not checked at all.

    Repeated ids are a problem unless they are exactly those the run found in its dataset (see
    chatspace.store.duplicates), and never when one dataset row was embedded twice.
    """
    problems: list[str] = []
    manifest = read_manifest(output, manifest_path)
    if manifest is None:
        return [f"{output.url(manifest_path)}: not a readable chatspace manifest"]
    root = run_root_of(manifest_path, manifest)
    label = manifest_path.parent.relative_to(root)
    if failed_before_any_unit(manifest):
        return []  # it wrote nothing to check, and a plain rerun replaces it
    complete = manifest.get("status") == "complete"
    if not complete and run_is_live(output, manifest_path.parent):
        return []  # its supervisor is writing it now
    dim = manifest.get("model", {}).get("dimension")
    emb_dtype = manifest.get("config", {}).get("embedding_dtype", "float32")
    expected = embedding_schema(dim, emb_dtype) if dim else None
    ids: Counter = Counter()
    readable: list[PurePath] = []
    total_rows = 0
    listed = set()
    try:
        entries = manifest_shards(manifest)  # the one reader of a manifest's shard list
    except RecordError as e:
        return [f"{label}: {e}"]
    for entry in entries:
        path = root / entry.file.path
        listed.add(path)
        table = _checked_shard(output, path, entry.file, dim, expected, problems)
        if table is None:
            continue
        ids.update(table.column("id").to_pylist())
        readable.append(path)
        total_rows += table.num_rows
    problems.extend(_duplicate_problems(output, label, ids, readable, manifest.get("duplicate_ids")))
    totals = manifest.get("totals", {})
    if totals.get("rows") is not None and totals["rows"] != total_rows and not problems:
        problems.append(f"{label}: shards hold {total_rows} rows, manifest totals say {totals['rows']}")
    emb_dir = root / manifest.get("layout", {}).get("embeddings_dir", "")
    for extra in output.glob(emb_dir, "shard-*.parquet") if complete else []:
        if extra not in listed:
            problems.append(f"{extra.relative_to(root).as_posix()}: shard not listed in the manifest")
    return problems


def _checked_shard(
    output: OutputRoot, path: PurePath, shard: ShardFile, dim: int | None, expected, problems: list[str]
) -> pa.Table | None:
    """The shard's table when it can be read and holds what its entry says; what is wrong goes to
    `problems` (None when its ids cannot be trusted: missing, changed, unreadable, another schema)."""
    name = shard.path
    if not output.is_file(path):
        problems.append(f"{name}: missing")
        return None
    size = output.size(path)
    if size != shard.bytes:
        problems.append(f"{name}: size {size} != recorded {shard.bytes}")
    if output.sha256(path) != shard.sha256:
        problems.append(f"{name}: sha256 mismatch (the file changed after it was written)")
        return None
    try:
        table = read_shard(output, path)
    except Exception as e:  # noqa: BLE001 - any read failure is a finding
        problems.append(f"{name}: unreadable: {str(e).splitlines()[0]}")
        return None
    if table.num_rows != shard.rows:
        problems.append(f"{name}: {table.num_rows} rows, manifest says {shard.rows}")
    emb_type = table.schema.field("embedding").type if "embedding" in table.column_names else None
    if dim and emb_type is not None and pa.types.is_fixed_size_list(emb_type) and emb_type.list_size != dim:
        problems.append(f"{name}: embedding dimension {emb_type.list_size}, expected {dim}")
        return None
    if expected is not None and not schema_matches(table.schema, expected):
        problems.append(f"{name}: schema differs from the run's declared schema")
        return None
    emb = table.column("embedding").combine_chunks()
    values = np.asarray(emb.values.to_numpy(zero_copy_only=False))
    if not np.isfinite(values).all():
        problems.append(f"{name}: embeddings hold NaN or infinite values")
    return table


def _duplicate_problems(
    output: OutputRoot, label, ids: Counter, paths: list[PurePath], recorded: dict | None
) -> list[str]:
    repeats = duplicates.repeated(ids)
    if not repeats:
        return [] if not recorded else [f"{label}: the manifest records repeated ids, the shards hold none"]
    examples = ", ".join(repr(k) for k in sorted(repeats)[:3])
    twice = duplicates.twice_embedded(duplicates.rows_of(output, paths, set(repeats)))
    if twice:
        return [f"{label}: dataset rows embedded more than once: {', '.join(twice[:3])}"]
    if not recorded:
        return [f"{label}: {len(repeats)} duplicate id(s), e.g. {examples}"]
    if recorded.get("digest") != duplicates.digest(repeats):
        return [
            f"{label}: the repeated ids ({len(repeats)}, e.g. {examples}) are not the "
            f"{recorded.get('distinct_ids_repeated')} the run found in its dataset"
        ]
    return []


def verify(target: str | Path) -> tuple[list[PurePath], list[str]]:
    """(manifests found, damage found) for an output root, a run's index folder or one manifest."""
    output, path = open_root(target)
    manifests = manifest_paths(output, path)
    problems: list[str] = []
    for m in manifests:
        problems.extend(verify_manifest(output, m))
    return manifests, problems


def unfinished_runs(target: str | Path) -> list[str]:
    """One line per run under `target` that is not complete (failed, interrupted, running): not damage,
    but readers leave it out, so `verify` names it."""
    from chatspace.store.catalog import find_runs

    output, runs = find_runs(target)
    lines = []
    for path, m in runs:
        if m.get("status") == "complete":
            continue
        totals = m.get("totals", {})
        error = (m.get("error") or {}).get("message")
        lines.append(
            f"{path.parent.relative_to(run_root_of(path, m)).as_posix()}: {m.get('status')} "
            f"({totals.get('units_done', 0)}/{totals.get('units_planned', '?')} units, "
            f"{totals.get('rows', 0)} rows; run {m.get('run_id')})" + (f": {error}" if error else "")
        )
    return lines
