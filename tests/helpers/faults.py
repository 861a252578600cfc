"""Runs under faults: a CLI started in the background, its worker processes, its shards' state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from tests.helpers import CHATSPACE, REPO


def start_cli(args, env: dict | None = None) -> subprocess.Popen:
    """`chatspace ARGS` started in its own session (signals reach only what the test aims at)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [*CHATSPACE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


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
