"""Runs under faults: a CLI started in the background, or run in this process while a thread acts on its
workers; its worker processes; its shards' state."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.helpers import CHATSPACE, REPO, run_cli

T = TypeVar("T")


def start_cli(args, env: dict | None = None) -> subprocess.Popen:
    """`chatspace ARGS` started in its own session (signals reach only what the test aims at), with
    Ctrl-C's default handling, as from a terminal, even where the tests run as a background job (which
    starts with SIGINT ignored, and a child would inherit that)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [*CHATSPACE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_units(out: Path, count: int, proc: subprocess.Popen, timeout: float = 180, pattern=None) -> None:
    """Wait until `count` unit records exist under `out` (default: of the visible run)."""
    pattern = pattern or "indexes/*/*/*/units/unit-*.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(out.glob(pattern))) >= count:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the run made no progress")


def worker_processes(proc: subprocess.Popen):
    """The run's worker processes: its descendants but multiprocessing's resource tracker and the fork
    server the workers are forked from (a child of the CLI whose own children are the workers)."""
    import psutil

    kids = psutil.Process(proc.pid).children(recursive=True)
    return [k for k in kids if not _helper_process(k, proc.pid)]


def _helper_process(p, cli_pid: int) -> bool:
    import psutil

    try:
        line = " ".join(p.cmdline())
        return "resource_tracker" in line or ("forkserver" in line and p.ppid() == cli_pid)
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(procs, timeout: float = 10) -> None:
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"orphaned processes: {[p.pid for p in alive]}"


def shard_state(out: Path) -> dict[str, tuple[str, int]]:
    """Each shard of the run under `out`: (sha256, mtime_ns), to show which were rewritten."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(out.glob("embeddings/*/*/*/shard-*.parquet"))
    }


def start_until_units(args, out: Path, units: int) -> tuple[subprocess.Popen, list]:
    """`chatspace ARGS` started in the background, once `units` unit records exist: (process, workers)."""
    proc = start_cli(args)
    wait_for_units(out, units, proc)
    return proc, worker_processes(proc)


class CommandHere:
    """A command that `run_cli_alongside` runs in this process, as the thread acting on it sees it:
    `poll()` is None while it runs, as a Popen's is (so `wait_for_units` takes it too)."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    def poll(self) -> int | None:
        return 0 if self.ended.is_set() else None

    def communicate(self) -> tuple[str, str]:
        return "", "the command ended first"


def run_cli_alongside(
    args, hand: Callable[[CommandHere], T], env: dict | None = None, timeout: float = 240
) -> tuple[subprocess.CompletedProcess, T]:
    """`chatspace ARGS` run in this process (`run_cli`) while `hand` acts on it from a thread, say kills
    or freezes one of its workers: (the command's result, what `hand` returned; its exception, raised).

    For faults of a worker, whose handling is the supervisor's code either way: the workers are real
    processes here too, forked from this process's fork server (`workers_here`). A fault of the
    command's own process (a signal to it, a kill, its exit) needs `start_cli`."""
    command, outcome = CommandHere(), {}

    def act() -> None:
        try:
            outcome["value"] = hand(command)
        except BaseException as e:  # noqa: BLE001 - raised in the test's thread below
            outcome["error"] = e

    thread = threading.Thread(target=act, name="test-hand", daemon=True)
    thread.start()
    try:
        proc = run_cli(*args, env=env, timeout=timeout)
    finally:
        command.ended.set()
        thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    assert "value" in outcome, "the hand acting on the command did not finish"
    return proc, outcome["value"]


def workers_here() -> list:
    """The worker processes of the command running in this process: the children of the fork server
    this process keeps (pool/executors/local.py), which forks every worker of a command run here."""
    import psutil

    servers = [p for p in psutil.Process().children() if _fork_server(p)]
    return [w for server in servers for w in server.children()]


def _fork_server(p) -> bool:
    import psutil

    try:
        return "multiprocessing.forkserver" in " ".join(p.cmdline())
    except psutil.NoSuchProcess:
        return False
