"""The gpu-check rehearsals start as soon as a one-process run has collected their tests.

Each is a chain of processes using about one core for a minute; the rest of a one-process run leaves a
core idle much of the time, so they run beside it, and their tests (moved to the run's end) wait for
their own and assert on it as before (tests/benchmarks/test_gpu_check.py). Not in an xdist run (its workers share the cores already),
nor when only collecting; whatever is still running at the session's end is stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

#: test name -> its Rehearsal, started early and not yet taken by its test
STARTED_EARLY: dict = {}
_FOLDERS: list[Path] = []


def _plain_run(config: pytest.Config) -> bool:
    return not (
        config.option.collectonly or hasattr(config, "workerinput") or config.getoption("numprocesses", 0)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a plain run their tests come last, so the rehearsals have the whole run to finish beside it."""
    if not _plain_run(config):
        return
    from tests.benchmarks.test_gpu_check import REHEARSALS

    items.sort(key=lambda item: item.name in REHEARSALS)  # stable: every other test keeps its place


def pytest_collection_finish(session: pytest.Session) -> None:
    if not _plain_run(session.config):
        return
    wanted = {item.name for item in session.items}
    from tests.benchmarks.test_gpu_check import REHEARSALS, Rehearsal

    for name, (extra, hang) in REHEARSALS.items():
        if name in wanted:
            out = Path(tempfile.mkdtemp(prefix="chatspace-gpu-check-"))
            _FOLDERS.append(out)
            STARTED_EARLY[name] = Rehearsal(out, *extra, hang=hang)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for rehearsal in STARTED_EARLY.values():  # its test was deselected at run time, or never reached
        rehearsal.stop()
    STARTED_EARLY.clear()
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)
