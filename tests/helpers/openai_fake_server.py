"""A local stand-in for an OpenAI-compatible embeddings server, for tests.

`FakeEmbeddingServer` speaks `POST /v1/embeddings` (and `/embeddings`) on 127.0.0.1 at a free port,
answers in the OpenAI response format with deterministic vectors (seeded by a hash of each input, so
the same text always gets the same vector, whatever request it travels in), honours `dimensions` and
`encoding_format` (float or base64), and can be scripted to misbehave:

    with FakeEmbeddingServer(dimension=8) as server:
        server.script("429:0.2", "500", "slow:5", "malformed", "drop")  # one action per request, then "ok"
        server.fail_after = 3  # every request after the 3rd success answers 500 (a server dying mid-run)
        ...
        server.requests  # every request received, in arrival order

Actions: ``ok``; ``429[:retry_after_seconds]`` (a rate limit, with a Retry-After header when given);
``500`` / ``502`` / ``503`` / any status code (an error body); ``slow:SECONDS`` (answer correctly after
sleeping, to trip the client's timeout); ``malformed`` (200 with a body that is not JSON); ``partial``
(200 with valid JSON missing one embedding); ``drop`` (close the connection without an answer);
``echo[:status]`` (an error, 400 by default, whose message quotes the request line, headers and body
back, as some servers do).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DEFAULT_MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def fake_vector(text: str, dimension: int) -> np.ndarray:
    """The unit vector the fake server returns for `text`: a pure function of (text, dimension)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    return v / np.float32(np.linalg.norm(v))


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body (None if it was not JSON)
    action: str  # what the server did with it
    target: str = ""  # the request target as sent: path and query string
    received_at: float = field(default_factory=time.monotonic)

    @property
    def inputs(self) -> list:
        if not isinstance(self.body, dict):
            return []
        inp = self.body.get("input")
        return [inp] if isinstance(inp, str) else list(inp or [])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeEmbeddingServer:
    """See the module docstring. Thread-safe; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        dimension: int = 16,
        model_dimensions: dict[str, int] | None = None,
        shuffle: bool = True,
        api_key: str | None = None,
        max_inputs: int | None = None,
    ):
        self.dimension = dimension  # for models not in model_dimensions
        self.model_dimensions = dict(
            DEFAULT_MODEL_DIMENSIONS if model_dimensions is None else model_dimensions
        )
        self.shuffle = shuffle  # answer `data` in reverse order, so clients must use `index`
        self.api_key = api_key  # when set, a request without `Authorization: Bearer <api_key>` gets 401
        self.max_inputs = max_inputs  # when set, a request with more inputs gets 400
        self.fail_after: int | None = None  # after this many successes, answer every request with 500
        self.fail_status = 500
        self.requests: list[ReceivedRequest] = []
        self.successes = 0
        self._granted = 0  # requests let through to answer 200: counted when decided, under the lock
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------------------

    def script(self, *actions: str) -> FakeEmbeddingServer:
        """Queue one action per coming request (after the queue runs out, requests succeed)."""
        with self._lock:
            self._script.extend(actions)
        return self

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.successes = 0
            self._granted = 0
            self.max_in_flight = 0
            self.fail_after = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeEmbeddingServer:
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in "slow"
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeEmbeddingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- behaviour ------------------------------------------------------------------------------

    def _next_action(self) -> str:
        # Decided and counted in one step: two concurrent requests must not both slip in under
        # fail_after while neither has finished (successes counts only answers already sent).
        with self._lock:
            if self.fail_after is not None and self._granted >= self.fail_after:
                return str(self.fail_status)
            action = self._script.popleft() if self._script else "ok"
            if action.partition(":")[0] in ("ok", "slow", "partial"):
                self._granted += 1
            return action

    def _embeddings_body(self, body: dict) -> tuple[int, dict]:
        model = body.get("model")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(model, str) or not isinstance(inputs, list) or not inputs:
            return 400, _error("'model' and a non-empty 'input' are required", "invalid_request_error")
        if self.max_inputs is not None and len(inputs) > self.max_inputs:
            return 400, _error(f"too many inputs: {len(inputs)} > {self.max_inputs}", "invalid_request_error")
        if any(not isinstance(t, str) or t == "" for t in inputs):
            return 400, _error("inputs must be non-empty strings", "invalid_request_error")
        dim = body.get("dimensions") or self.model_dimensions.get(model, self.dimension)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            v = fake_vector(text, int(dim))
            emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if as_base64 else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if self.shuffle:
            data.reverse()
        tokens = sum(max(1, len(t) // 4) for t in inputs)
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                path = self.path.split("?", 1)[0].rstrip("/")
                if path not in ("/v1/embeddings", "/embeddings"):
                    self._send_json(404, _error(f"no route {self.path}", "not_found"))
                    return
                action = server._next_action()
                with server._lock:
                    server.requests.append(ReceivedRequest(path, dict(self.headers), body, action, self.path))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._act(action, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _act(self, action: str, body: Any) -> None:
                name, _, arg = action.partition(":")
                if (
                    server.api_key is not None
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    self._send_json(401, _error("Incorrect API key provided.", "invalid_request_error"))
                    return
                if name == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if name == "slow":
                    if server._stopping.wait(float(arg or 5)):
                        return
                    name = "ok"
                if name == "429":
                    headers = {"Retry-After": arg} if arg else {}
                    self._send_json(429, _error("Rate limit reached", "requests"), headers)
                    return
                if name == "echo":
                    # Like servers that quote the request back in their error: URL, headers and body.
                    echoed = f"{self.command} {self.path} headers={dict(self.headers)} body={body}"
                    self._send_json(
                        int(arg or 400), _error(f"bad request: {echoed}", "invalid_request_error")
                    )
                    return
                if name.isdigit():
                    self._send_json(int(name), _error(f"fake server error {name}", "server_error"))
                    return
                if name == "malformed":
                    self._send_raw(
                        200, b'{"object": "list", "data": [{"index": 0, "embed', "application/json"
                    )
                    return
                status, payload = server._embeddings_body(body if isinstance(body, dict) else {})
                if status == 200 and name == "partial":
                    payload["data"] = payload["data"][:-1]
                if status == 200:
                    with server._lock:
                        server.successes += 1
                self._send_json(status, payload)

            def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _send_raw(
                self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout); nothing to answer

        return Handler


def _error(message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}
