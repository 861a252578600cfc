"""Removing runs from an output root (`chatspace runs rm`, `chatspace runs prune --failed`).

A run goes whole: its manifest and unit records first (so readers, which start from manifests, stop
seeing it at once), then its shards. A run a live supervisor is writing is refused; the run's lock is
held while it is removed, so no run starts into it half-way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from chatspace.errors import UsageError
from chatspace.store.catalog import find_runs, format_runs, list_runs
from chatspace.store.layout import lock_path_of, run_root_of
from chatspace.store.root import OutputRoot

log = logging.getLogger(__name__)

#: Statuses `prune --failed` removes: runs that stopped and that no live supervisor is finishing.
UNFINISHED = ("failed", "interrupted")


@dataclass(frozen=True)
class FoundRun:
    manifest_path: PurePath
    manifest: dict[str, Any]

    @property
    def index_dir(self) -> PurePath:
        return self.manifest_path.parent

    @property
    def folder(self) -> str:
        """`model/dataset/run folder`, as under `indexes/` and `embeddings/`."""
        root = run_root_of(self.manifest_path, self.manifest)
        return self.index_dir.relative_to(root / "indexes").as_posix()

    def describe(self) -> str:
        totals = self.manifest.get("totals", {})
        return (
            f"{self.folder} ({self.manifest.get('status')}, {totals.get('rows', 0)} rows, "
            f"run {self.manifest.get('run_id')})"
        )


def _names(run: FoundRun) -> set[str]:
    """What a user may call a run by: its run id, its --run-name, its folder (whole, or the last part)."""
    cfg = run.manifest.get("config", {})
    names = {run.manifest.get("run_id"), cfg.get("run_name"), run.folder, run.index_dir.name}
    names.discard(None)
    return names


def select_for_removal(root: str | Path, names: tuple[str, ...], filters: dict[str, Any]) -> list[FoundRun]:
    """The runs named (run id, run name or folder) and matching `filters` (as load_embeddings takes them);
    UsageError naming the runs there when a name matches none."""
    from chatspace.store.reader import matching_runs

    _, runs = find_runs(root)
    found = [FoundRun(p, m) for p, m in runs]
    if any(v is not None for v in filters.values()):
        picked = {str(p) for p, _ in matching_runs(root, **filters)}
        found = [r for r in found if str(r.manifest_path) in picked]
    if names:
        unknown = [n for n in names if not any(n in _names(r) for r in found)]
        if unknown:
            raise UsageError(
                f"no run called {', '.join(map(repr, unknown))} under {root} (a run id, run name or folder); "
                f"runs there:\n{format_runs(list_runs(root))}"
            )
        found = [r for r in found if _names(r) & set(names)]
    return found


def unfinished_runs(root: str | Path) -> list[FoundRun]:
    """The runs `prune --failed` removes: failed, or interrupted (a killed supervisor's)."""
    _, runs = find_runs(root)
    return [FoundRun(p, m) for p, m in runs if m.get("status") in UNFINISHED]


def remove_run(output: OutputRoot, run: FoundRun) -> None:
    """Remove one run's manifest, unit records and shards; UsageError while a live run holds it."""
    lock = output.lock(
        lock_path_of(run.index_dir),
        f"{run.folder} is being written by a running chatspace run; stop it first, or wait for it",
    )
    try:
        root = run_root_of(run.manifest_path, run.manifest)
        embeddings = run.manifest.get("layout", {}).get("embeddings_dir")
        output.remove_tree(run.index_dir)  # readers stop seeing it here
        if embeddings:
            output.remove_tree(root / embeddings)
            _remove_empty_parents(output, root / embeddings, root / "embeddings")
        if output.is_local:  # the lock file (an object store's lock object goes with close())
            output.remove(lock_path_of(run.index_dir))
    finally:
        lock.close()
    _remove_empty_parents(output, run.index_dir, root / "indexes")


def _remove_empty_parents(output: OutputRoot, folder: PurePath, top: PurePath) -> None:
    """The model and dataset folders a removed run leaves empty."""
    for parent in [folder, *folder.parents]:
        if parent == top or top not in parent.parents:
            return
        output.remove_empty_dir(parent)
