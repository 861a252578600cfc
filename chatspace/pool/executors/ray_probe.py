"""Why a Ray cluster that answers on its port would still refuse this driver, found in seconds.

`ray.init` against such a cluster retries for about 45 seconds and then raises a bare ConnectionError
(or a version-mismatch RuntimeError). Before it is called, the cluster's GCS is asked directly:

- does the port speak gRPC at all (an HTTP/2 server answers the connection preface with SETTINGS)?
  If not, the address names some other service;
- does it accept this driver's token (Ray's token authentication, the default in recent Ray)?
- which Ray and Python versions does the cluster record (its CLUSTER_METADATA), and do they match
  this process's, as `ray.init` would require?

Each refusal becomes one UsageError naming the cause and the fix. Anything the probe cannot decide
(a Ray without these internals, TLS) is left to `ray.init` as before.

Once the driver is connected, `nodes_chatspace_refusal` asks every node which chatspace its workers
import (a zero-CPU task pinned to each node): a node with another version, or none, would run other
code or fail at its first unit, so the run is refused naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
from collections.abc import Iterator
from typing import Any

PROBE_TIMEOUT_S = 3.0
# An HTTP/2 client's connection preface followed by an empty SETTINGS frame (RFC 9113, 3.4 and 6.5).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME = 0x04


def speaks_grpc(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the server at host:port answers an HTTP/2 preface with a SETTINGS frame, as every gRPC
    server (Ray's GCS among them) does at once; an HTTP/1 server, a database or a silent port does not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                more = conn.recv(9 - len(head))
                if not more:
                    break
                head += more
    except OSError:
        return False
    return len(head) == 9 and head[3] == _SETTINGS_FRAME


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Ray's C++ client logs its failed attempts straight to file descriptor 2; the user gets our one
    line instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _auth_hint() -> str:
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"))
    if has_token and mode != "token":
        return "set RAY_AUTH_MODE=token as well, so the token in RAY_AUTH_TOKEN(_PATH) is sent"
    if has_token:
        return (
            "the token in RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH is not the cluster's; use the one its "
            "head was started with"
        )
    return (
        "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (a file holding the cluster's token) or "
        "RAY_AUTH_TOKEN (the token itself)"
    )


def version_mismatch(
    address: str,
    cluster: dict[str, Any],
    ray_version: str,
    python_version: str,
    match_level: str | None = None,
) -> str | None:
    """The refusal `ray.init` would raise for the cluster's recorded versions, as one sentence (None:
    they match). Python must match to the patch level unless RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL is
    "minor", as in Ray itself."""
    level = match_level or os.environ.get("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", "patch")
    cluster_ray, cluster_python = cluster.get("ray_version"), cluster.get("python_version")
    parts = 2 if level == "minor" else 3
    differs = []
    if cluster_ray and cluster_ray != ray_version:
        differs.append(f"Ray {cluster_ray} (this driver has Ray {ray_version})")
    if cluster_python and cluster_python.split(".")[:parts] != python_version.split(".")[:parts]:
        differs.append(f"Python {cluster_python} (this driver runs Python {python_version})")
    if not differs:
        return None
    fix = []
    if cluster_ray and cluster_ray != ray_version:
        fix.append(f"pip install 'ray=={cluster_ray}'")
    if len(differs) > len(fix):
        fix.append(f"use a Python {'.'.join(cluster_python.split('.')[:parts])} environment")
    return (
        f"the Ray cluster at {address} runs {' and '.join(differs)}, and Ray refuses a driver whose "
        f"versions differ: {' and '.join(fix)} here, or run chatspace on the cluster's head node"
    )


def cluster_refusal(address: str, host: str, port: int) -> str | None:
    """Why the GCS at `address` (which accepts TCP connections) would refuse this driver, as one
    sentence with the fix; None when it would not, or when the probe cannot tell."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None  # the preface would need TLS first; left to ray.init
    if not speaks_grpc(host, port):
        return (
            f"{address} answers but is not a Ray cluster (no gRPC reply on port {port}); point "
            "--ray-address / RAY_ADDRESS at the head's GCS port (the --port of `ray start --head`, "
            "6379 by default)"
        )
    try:
        import ray
        from ray._raylet import InnerGcsClient
        from ray.exceptions import AuthenticationError
    except (ImportError, AttributeError):
        return None
    try:
        with _quiet_native_stderr():
            client = InnerGcsClient.standalone(address, None, int(PROBE_TIMEOUT_S * 1000))
            raw = client.internal_kv_get(b"CLUSTER_METADATA", b"cluster", PROBE_TIMEOUT_S)
    except AuthenticationError:
        return f"the Ray cluster at {address} refused this driver's authentication token: {_auth_hint()}"
    except Exception:  # noqa: BLE001 - anything else is for ray.init to report in its own words
        return None
    try:
        cluster = json.loads(raw) if raw else {}
    except ValueError:
        return None
    return version_mismatch(address, cluster, ray.__version__, platform.python_version())


NODE_PROBE_TIMEOUT_S = 60.0  # a node's first Python worker may take this long to start on a busy machine


def _chatspace_report():
    """A function for a Ray node to run: the chatspace its workers import (version and package
    folder), or why they cannot. Defined inside this factory so that Ray pickles it by value: it must
    run where chatspace is missing or is another version, whose modules this one may not match."""

    def report_chatspace() -> dict[str, str | None]:
        import importlib
        import os
        import socket

        report: dict[str, str | None] = {"hostname": socket.gethostname(), "version": None, "path": None}
        try:
            module = importlib.import_module("chatspace")
        except Exception as e:  # noqa: BLE001 - reported to the driver in words
            report["error"] = f"{type(e).__name__}: {e}"
            return report
        report["version"] = getattr(module, "__version__", None)
        report["path"] = os.path.dirname(module.__file__ or "") or None
        return report

    return report_chatspace


def _node_name(node: dict[str, Any], report: dict[str, Any] | None) -> str:
    host = (report or {}).get("hostname") or node.get("NodeManagerHostname") or "?"
    return f"{host} ({node.get('NodeManagerAddress', '?')}, Ray node {node.get('NodeID', '?')[:8]})"


def chatspace_mismatch(
    address: str, driver_version: str, reports: list[tuple[dict[str, Any], dict[str, Any]]]
) -> str | None:
    """One sentence naming each node whose workers import another chatspace than the driver's (or
    none), and the fix; None when every node runs the driver's version. `reports`: (node, report)."""
    differ = []
    for node, report in reports:
        version = report.get("version")
        if version == driver_version:
            continue
        if version is None:
            what = f"cannot import chatspace ({report.get('error') or 'no __version__'})"
        else:
            what = f"runs chatspace {version} from {report.get('path')}"
        differ.append(f"node {_node_name(node, report)} {what}")
    if not differ:
        return None
    return (
        f"the Ray cluster at {address} does not run this driver's chatspace {driver_version}: "
        f"{'; '.join(differ)}. Install chatspace {driver_version} where "
        f"{'that node' if len(differ) == 1 else 'each of those nodes'} runs `ray start` (then restart "
        "it), or run one chatspace version everywhere"
    )


def nodes_chatspace_refusal(ray: Any, address: str, driver_version: str) -> str | None:
    """Ask every live node of the connected cluster which chatspace its workers import (a task of no
    CPU pinned to each node, all at once); the refusal naming the nodes that differ, or None. A node
    that does not answer within NODE_PROBE_TIMEOUT_S is left unchecked with a warning, not refused."""
    import logging

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_chatspace_report())
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(): n
        for n in nodes
    }
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=NODE_PROBE_TIMEOUT_S)
    reports = []
    for ref in ready:
        try:
            reports.append((refs[ref], ray.get(ref)))
        except Exception as e:  # noqa: BLE001 - a node that could not even run the probe
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            reports.append((refs[ref], {"version": None, "error": first}))
    for ref in late:
        with contextlib.suppress(Exception):  # a task Ray cannot cancel is left to end on its own
            ray.cancel(ref, force=True)
        logging.getLogger("chatspace").warning(
            "Ray node %s did not say which chatspace it runs within %.0f s; not checked",
            _node_name(refs[ref], None), NODE_PROBE_TIMEOUT_S,
        )  # fmt: skip
    reports.sort(key=lambda pair: pair[0].get("NodeID", ""))
    return chatspace_mismatch(address, driver_version, reports)
