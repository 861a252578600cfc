"""The output lock: one run at a time per model/dataset/split, and a way for readers to tell whether a
run that says `running` is really alive (its supervisor holds the lock) or was killed outright."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from chatspace.errors import UsageError
from chatspace.store.layout import RunLayout, lock_path_of

# A reader probing the lock holds it for microseconds; a starting run retries that long and more.
ACQUIRE_RETRY_S = 1.0


def acquire_output_lock(layout: RunLayout):
    """Hold the output's lock for the life of the run; a second supervisor would redo and race the first."""
    lock_path = layout.lock_path
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the run
    deadline = time.monotonic() + ACQUIRE_RETRY_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise UsageError(
                    f"another chatspace run is writing to {layout.index_dir}; wait for it or stop it"
                ) from None
            time.sleep(0.05)


def run_is_live(index_dir: Path) -> bool:
    """True while a supervisor holds the lock of this run's output (a probe; never blocks)."""
    try:
        handle = open(lock_path_of(index_dir))  # noqa: SIM115 - closed below
    except OSError:
        return False  # no lock file: no run has ever held it
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        handle.close()
    return False
