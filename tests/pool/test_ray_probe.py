"""Which chatspace a Ray node runs, asked without a cluster: the function a node runs (pickled by
value, as Ray ships it) and the sentence a driver gets when a node differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import chatspace
from chatspace.pool.executors.ray_probe import _chatspace_report, chatspace_mismatch

cloudpickle = pytest.importorskip("ray.cloudpickle", reason="Ray is an optional extra")


def _run_pickled_report(pythonpath: Path) -> dict:
    """Unpickle and run the report in a fresh Python whose only chatspace is at `pythonpath` (if any):
    no site initialisation, so an installed chatspace (an editable install's finder) is not seen; the
    site-packages folder that holds Ray comes after `pythonpath`."""
    site_packages = Path(cloudpickle.__file__).parents[2]
    code = "import pickle, sys\nreport = pickle.loads(sys.stdin.buffer.read())\nprint(repr(report()))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), str(site_packages)])}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], input=cloudpickle.dumps(_chatspace_report()), capture_output=True,
        env=env, cwd=pythonpath, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return eval(proc.stdout.decode())  # noqa: S307 - the repr of a dict of strings, written above


def test_a_node_reports_the_chatspace_it_imports(tmp_path):
    here = _chatspace_report()()
    assert here["version"] == chatspace.__version__
    assert here["path"] == os.path.dirname(chatspace.__file__)

    other = tmp_path / "site" / "chatspace"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('__version__ = "0.0.9"\n')
    # Shipped by value: it runs where this chatspace's modules do not exist.
    report = _run_pickled_report(other.parent)
    assert report["version"] == "0.0.9" and report["path"] == str(other)

    empty = tmp_path / "empty"
    empty.mkdir()
    report = _run_pickled_report(empty)
    assert report["version"] is None and "No module named 'chatspace'" in report["error"]


def _node(ip: str, node_id: str) -> dict:
    return {"NodeID": node_id, "NodeManagerAddress": ip, "NodeManagerHostname": f"host-{ip}", "Alive": True}


def test_only_the_nodes_that_differ_are_named_with_the_fix():
    same = (_node("10.0.0.1", "a" * 56), {"hostname": "h1", "version": "0.1.0", "path": "/v/chatspace"})
    assert chatspace_mismatch("10.0.0.1:6379", "0.1.0", [same]) is None
    old = (_node("10.0.0.2", "b" * 56), {"hostname": "h2", "version": "0.0.9", "path": "/o/chatspace"})
    missing = (_node("10.0.0.3", "c" * 56), {"version": None, "error": "ModuleNotFoundError: x"})
    line = chatspace_mismatch("10.0.0.1:6379", "0.1.0", [same, old, missing])
    assert line == (
        "the Ray cluster at 10.0.0.1:6379 does not run this driver's chatspace 0.1.0: "
        "node h2 (10.0.0.2, Ray node bbbbbbbb) runs chatspace 0.0.9 from /o/chatspace; "
        "node host-10.0.0.3 (10.0.0.3, Ray node cccccccc) cannot import chatspace "
        "(ModuleNotFoundError: x). Install chatspace 0.1.0 where each of those nodes runs `ray start` "
        "(then restart it), or run one chatspace version everywhere"
    )
