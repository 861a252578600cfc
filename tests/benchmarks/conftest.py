"""The gpu-check rehearsals, and the bench cases' commands, start as soon as a one-process run has
collected their tests.

Each rehearsal is a chain of processes using about one core for a minute; the rest of a one-process run
leaves a core idle much of the time, so they run beside it, and their tests (moved to the run's end) wait
for their own and assert on it as before (tests/benchmarks/test_gpu_check.py). The bench cases' commands
(one core each, tests/benchmarks/test_bench_cases.py and test_scale_case.py) run one after another once
the rehearsals have ended, and their tests, also at the end, take the finished commands. Not
in an xdist run (its workers share the cores already), nor when only collecting; whatever is still
running at the session's end is stopped.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from tests.helpers.background import STARTED_EARLY, Maker

_FOLDERS: list[Path] = []


def _plain_run(config: pytest.Config) -> bool:
    return not (
        config.option.collectonly or hasattr(config, "workerinput") or config.getoption("numprocesses", 0)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a plain run their tests come last, so their commands have the whole run to finish beside it."""
    if not _plain_run(config):
        return
    last = {*_rehearsals(), *_bench_commands()}
    items.sort(key=lambda item: item.name in last)  # stable: every other test keeps its place


def _rehearsals() -> dict[str, Maker]:
    from tests.benchmarks.test_gpu_check import REHEARSALS

    return REHEARSALS


def _bench_commands() -> dict[str, Maker]:
    from tests.benchmarks import test_bench_cases, test_scale_case

    return {**test_bench_cases.BESIDE_THE_RUN, **test_scale_case.BESIDE_THE_RUN}


def _make_early(name: str, maker: Maker, wanted: set[str]):
    make, needs = maker
    if name not in wanted or not all(importlib.util.find_spec(module) for module in needs):
        return None
    folder = Path(tempfile.mkdtemp(prefix="chatspace-early-"))
    _FOLDERS.append(folder)
    STARTED_EARLY[name] = command = make(folder)
    return command


def pytest_collection_finish(session: pytest.Session) -> None:
    if not _plain_run(session.config):
        return
    wanted = {item.name for item in session.items}
    made = {name: _make_early(name, maker, wanted) for name, maker in _rehearsals().items()}
    first = [command.start() for command in made.values() if command is not None]
    made = {name: _make_early(name, maker, wanted) for name, maker in _bench_commands().items()}
    commands = [command for command in made.values() if command is not None]
    if commands:
        # After the rehearsals: the run has a core to spare for longer than they take.
        threading.Thread(target=_one_after_another, args=(first, commands), daemon=True).start()


def _one_after_another(first: list, commands: list) -> None:
    for rehearsal in first:
        rehearsal.wait()
    for command in commands:
        command.run()  # nothing, where its test took it already or the session stopped it


def pytest_sessionfinish(session: pytest.Session) -> None:
    for early in STARTED_EARLY.values():  # its test was deselected at run time, or never reached
        early.stop()
    STARTED_EARLY.clear()
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)
