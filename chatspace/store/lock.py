"""The output lock: one run at a time per model/dataset/split, and a way for readers to tell whether a
run that says `running` is really alive (its supervisor holds the lock) or was killed outright.

How the lock is held depends on the root (an fcntl lock locally, a lock object on an object store):
see chatspace.store.root.RootLock.
"""

from __future__ import annotations

from pathlib import PurePath

from chatspace.store.layout import RunLayout, lock_path_of
from chatspace.store.root import OutputRoot, RootLock


def acquire_output_lock(layout: RunLayout) -> RootLock:
    """Hold the output's lock for the life of the run; a second supervisor would redo and race the first."""
    return layout.output.lock(
        layout.lock_path,
        f"another chatspace run is writing to {layout.output.url(layout.index_dir)}; wait for it or stop it",
    )


def run_is_live(root: OutputRoot, index_dir: PurePath) -> bool:
    """True while a supervisor holds the lock of this run's output (a probe; never blocks)."""
    return root.is_locked(lock_path_of(index_dir))
