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
