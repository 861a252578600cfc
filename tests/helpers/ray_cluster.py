"""What the Ray tests share: a real Ray cluster of the tests' own on this machine (a head and a second
`ray start --address 127.0.0.1:PORT` node, one CPU each, with their own token and temp folder), and a
way to hold a run's workers mid-run (tests/helpers/worker_hook).

A test attaches only to a cluster it (or the session's fixture, tests/conftest.py) started, and every
process a cluster started is stopped with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.helpers import REPO, embed_args, run_cli

RAY = str(Path(sys.executable).with_name("ray"))
HOLD_HOOK = REPO / "tests" / "helpers" / "worker_hook"


class HeldWorkers:
    """While held (`with`), every worker of a run waits at its next text until `release()`: a test takes
    a worker (or its node) down while it certainly holds units, however fast or loaded the machine is.
    `env` is what the run's processes (or a cluster's nodes) need; `held()` says who is waiting."""

    def __init__(self, folder: Path):
        self.flag = folder / "hold"
        self.env = {
            "PYTHONPATH": os.pathsep.join(p for p in (str(HOLD_HOOK), os.environ.get("PYTHONPATH")) if p),
            "CHATSPACE_TEST_HOLD_WHILE": str(self.flag),
        }

    def __enter__(self) -> HeldWorkers:
        for old in self._announced():  # an earlier test's workers, on a shared cluster
            old.unlink()
        self.flag.touch()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _announced(self) -> list[Path]:
        return sorted(self.flag.parent.glob(f"{self.flag.name}.*.json"), key=lambda p: p.stat().st_mtime_ns)

    def held(self) -> list[dict]:
        """The workers that have reached the hold, in the order they did: pid (Ray actor and node ids)."""
        return [json.loads(p.read_text()) for p in self._announced()]

    def wait_for(self, count: int, proc: subprocess.Popen, timeout: float = 300) -> list[dict]:
        """Until `count` workers wait in the hold (the run's process `proc` must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self.held()
            if len(held) >= count:
                return held
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
        raise AssertionError(f"{len(self.held())} of {count} workers reached the hold")

    def release(self) -> None:
        self.flag.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def cluster_auth(base: Path) -> dict[str, str]:
    """Ray's token authentication with this cluster's own token (not the user's ~/.ray/auth_token):
    every node and every driver of the test reads it."""
    token = base / "auth_token"
    if not token.exists():
        token.write_text(uuid.uuid4().hex)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


class LoopbackCluster:
    """`ray start --block` per node, each in its own session so teardown reaches all it started. (Ray
    registers nodes under the machine's own IP, which it puts for 127.0.0.1.) Its nodes hold workers
    while `held_workers()` says so."""

    def __init__(self, base: Path, env: dict[str, str]):
        self.base = base
        self.env = env
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        temp = self.base / name  # short: Ray puts unix sockets under it
        temp.mkdir()
        log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.nodes.append(
            subprocess.Popen(
                [RAY, "start", "--block", "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(temp),
                 "--disable-usage-stats", *args],
                stdout=log, stderr=subprocess.STDOUT, env=env or self.env, start_new_session=True,
            )
        )  # fmt: skip

    def start(self, node2_env: dict[str, str] | None = None) -> None:
        self._start("head", "--head", "--port", str(self.port), "--include-dashboard", "false")
        self._wait_for_port()
        self._start("node2", "--address", self.address, env=node2_env and {**self.env, **node2_env})
        self._wait_for_nodes(2)

    def _wait_for_port(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.nodes[0].poll() is None, (self.base / "head.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the head node did not open its port")

    def _wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        """Until the head's GCS has registered `count` nodes (its log says so once per node)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, node in enumerate(self.nodes):
                assert node.poll() is None, (self.base / ("head.log" if i == 0 else "node2.log")).read_text()
            logs = (self.base / "head").glob("session_latest/logs/gcs_server.*")
            registered = sum(p.read_text(errors="replace").count("Registering new node.") for p in logs)
            if registered >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"the cluster did not reach {count} nodes")

    def embed_args(self, data: Path, out, *extra: str) -> list[str]:
        """`chatspace embed-hf` arguments for a run on this cluster."""
        return embed_args(data, out, "--executor", "ray", "--ray-address", self.address, *extra)

    def driver_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """A driver's environment: this cluster's token (RAY_ADDRESS is left out by the callers)."""
        return {**cluster_auth(self.base), **(env or {})}

    def embed(self, data: Path, out, *extra: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        """`chatspace embed-hf` on this cluster, as its driver: its address and token, no RAY_ADDRESS."""
        args = self.embed_args(data, out, *extra)
        return run_cli(*args, timeout=600, env=self.driver_env(env), unset=("RAY_ADDRESS",), cwd=cwd)

    def start_embed(
        self, data: Path, out, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """`embed` in the background (tests/helpers/faults.start_cli), for a test that acts mid-run."""
        from tests.helpers.faults import start_cli

        full_env = {**os.environ, **self.driver_env(env)}
        full_env.pop("RAY_ADDRESS", None)
        return start_cli(self.embed_args(data, out, *extra), env=full_env)

    @contextlib.contextmanager
    def held_embed(self, data: Path, out, *extra: str, env: dict[str, str] | None = None):
        """`(proc, hold)`: `start_embed` with its workers held (see `held_workers`); the run's process
        is killed on the way out if the test left it running."""
        with self.held_workers() as hold:
            proc = self.start_embed(data, out, *extra, env=env)
            try:
                yield proc, hold
            finally:
                if proc.poll() is None:
                    proc.kill()

    def held_workers(self) -> HeldWorkers:
        """The hold its nodes were started with (`running_cluster(hold=True)`)."""
        return HeldWorkers(self.base)

    def kill_node(self, index: int) -> None:
        """Take a node down at once, everything it started with it, as a lost machine would go."""
        for proc in process_tree(self.nodes[index].pid):
            with contextlib.suppress(Exception):
                proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.nodes[index].pid, signal.SIGKILL)
        self.nodes[index].wait(timeout=30)

    def processes(self):
        return [p for node in self.nodes for p in process_tree(node.pid)]

    def actors_left(self, timeout: float = 30) -> list[int]:
        """The pids of run actors (RayWorkerActor) still on the nodes after up to `timeout` seconds: a
        finished run must leave none, and the cluster lives on."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p.pid for p in self.processes() if "RayWorkerActor" in " ".join(cmdline(p))]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def stop(self) -> None:
        """Every process the nodes started, killed at once: the cluster is the tests' own and is thrown
        away with its folder, so Ray's graceful stop (seconds, some of it a 30 s grace) buys nothing."""
        for index in reversed(range(len(self.nodes))):
            self.kill_node(index)


@contextlib.contextmanager
def running_cluster(node_env: dict[str, str] | None = None, node2_env=None, hold: bool = False):
    """A two-node cluster for the length of the `with`; `hold`: its nodes' workers honour
    `cluster.held_workers()`."""
    # A short folder directly under /tmp: Ray puts unix sockets under it (at most 107 bytes), and pytest's
    # own temp folders are too deep for that under xdist (.../pytest-N/popen-gw0/...).
    base = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    held = HeldWorkers(base).env if hold else {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_TMPDIR": str(base), **cluster_auth(base), **held}
    env.update(node_env or {})
    env.pop("RAY_ADDRESS", None)
    cluster = LoopbackCluster(base, env)
    try:
        cluster.start(node2_env)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
