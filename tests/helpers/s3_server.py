"""A real S3-compatible server on loopback for the object-store tests: moto's server mode (HTTP, in its
own process), so every request goes through s3fs, botocore and the network stack as it would against
AWS, MinIO or R2."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    env: dict[str, str]  # what a user sets: AWS_* credentials, region and AWS_ENDPOINT_URL

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            key=self.env["AWS_ACCESS_KEY_ID"],
            secret=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.endpoint,
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def make_bucket(self, name: str) -> str:
        self.filesystem().mkdir(name)
        return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_s3_server(timeout: float = 60) -> Iterator[S3Server]:
    """Start `python -m moto.server` on a free loopback port; stop it (and say why if it never came up)."""
    port = _free_port()
    # The server logs every request: into a file, since a pipe nobody reads fills up and stalls it.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"moto's S3 server exited at start: {log.read()[-2000:].decode()}")
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not answer on {endpoint}") from None
                time.sleep(0.2)
        env = {
            "AWS_ACCESS_KEY_ID": "chatspace-test",
            "AWS_SECRET_ACCESS_KEY": "chatspace-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        yield S3Server(endpoint, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
