"""Requests to one OpenAI-compatible `/embeddings` endpoint, under chatspace's own retry policy.

429 waits for Retry-After (and holds back every request of the client, not just the one told); 5xx,
timeouts, dropped connections and malformed answers back off exponentially with jitter, up to
`max_retries` retries, after which the run stops with one ChatspaceError. A refused connection or a host
name that does not resolve is tried UNREACHABLE_RETRIES more times, half a second apart, then stops the
run at once: backing off would only delay the news. Vectors come back as float32, placed by the
response's `index`, never by position. The API key is never put in a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import errno
import logging
import math
import random
import re
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import orjson

from chatspace.encoders.openai.settings import API_KEY_VAR, BASE_URL_VAR, OpenAISettings
from chatspace.errors import ChatspaceError
from chatspace.redact import known_secrets, redact
from chatspace.stats import WorkerStats

log = logging.getLogger(__name__)

# Retry policy; module constants so tests can shrink them (read when a client is built).
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
RETRY_AFTER_MAX_S = 300.0
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
#: A server that refuses connections, or a host name that does not resolve, is not coming back within
#: the backoff: a couple of quick tries (a restarting server), then one clear error.
UNREACHABLE_RETRIES = 2
UNREACHABLE_DELAY_S = 0.5
PROBE_TEXT = "chatspace dimension probe"


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Unreachable(_Retryable):
    """Nothing listens at the address, or the name does not resolve: retried briefly, not backed off."""


def _unreachable_reason(error: BaseException) -> str | None:
    """'connection refused' / 'host name does not resolve' / ..., from a connection error's causes."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return f"the host name does not resolve ({cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no route to the host ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    return None


class _Cancelled(Exception):
    """Another request of the same batch failed for good; this one stops quietly."""


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _server_message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for k in ("message", "detail", "error"):
            if body.get(k):
                return str(body[k])
    if isinstance(body, str) and body.strip():
        return body.strip()
    return fallback


class EmbeddingsClient:
    """Sends embeddings requests for one model, `concurrency` at a time, retried under the policy above.

    Nothing is contacted until the first request; `close` ends the connection pool and the threads.
    """

    def __init__(
        self,
        settings: OpenAISettings,
        model: str,
        *,
        dimensions: int | None,
        concurrency: int,
        max_retries: int,
    ):
        self.settings = settings
        self.model = model
        self.dimensions = dimensions  # sent as the request's `dimensions`, when given
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.encoding_format = "base64"  # exact float32 and a quarter of the bytes; "float" if refused
        self.backoff_base = BACKOFF_BASE_S
        self.backoff_max = BACKOFF_MAX_S
        self.retry_after_max = RETRY_AFTER_MAX_S
        self.unreachable_retries = UNREACHABLE_RETRIES
        self.unreachable_delay = UNREACHABLE_DELAY_S
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pause_until = 0.0  # a Retry-After pauses every request of this client, not just one

    def connect(self) -> None:
        """The HTTP client and the request threads (no request is sent)."""
        with self._lock:
            if self._client is None:
                import openai

                # A query in the base URL (`?api-key=...`, `?api-version=...`) goes with every request;
                # left in the URL, the client would put the path after it.
                parts = urlsplit(self.settings.base_url)
                self._client = openai.OpenAI(
                    api_key=self.settings.api_key,
                    base_url=urlunsplit((*parts[:3], "", "")),
                    default_query=dict(parse_qsl(parts.query)) or None,
                    timeout=self.settings.timeout,
                    max_retries=0,  # the retry policy is ours
                )
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai-request")

    def probe_dimension(self, stats: WorkerStats) -> int:
        """The dimension of the model's vectors, from one request of one short text."""
        self.connect()
        return int(self._request([PROBE_TEXT], stats, threading.Event(), None).shape[1])

    def embed(
        self, inputs: list[str], requests: list[tuple[int, int]], stats: WorkerStats, dim: int
    ) -> np.ndarray:
        """(len(inputs), dim) float32 vectors of `inputs`, sent as the [start, end) slices `requests`.

        A request that fails for good stops the others at their next wait, and its error is raised.
        """
        self.connect()
        out = np.zeros((len(inputs), dim), dtype=np.float32)
        stop = threading.Event()
        assert self._pool is not None
        futures: dict[Future, tuple[int, int]] = {
            self._pool.submit(self._request, inputs[s:e], stats, stop, dim): (s, e) for s, e in requests
        }
        try:
            for fut in as_completed(futures):
                s, e = futures[fut]
                out[s:e] = fut.result()
        except BaseException:
            stop.set()  # the others stop at their next wait
            for fut in futures:
                fut.cancel()
            raise
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _request(
        self, inputs: list[str], stats: WorkerStats, stop: threading.Event, dim: int | None
    ) -> np.ndarray:
        """One embeddings request, retried under the policy; (len(inputs), dim) float32 in input order
        (`dim` None: whatever the server answers)."""
        retries = unreachable = 0
        while True:
            self._wait_for_pause(stop)
            with self._lock:
                stats.requests += 1
                if retries:
                    stats.retries += 1
            try:
                return self._send(inputs, dim)
            except _Unreachable as e:
                failure = e
                unreachable += 1
                if unreachable > min(self.unreachable_retries, self.max_retries):
                    raise ChatspaceError(
                        self._scrub(
                            f"cannot reach the embeddings API at {self.settings.display_url}: {e.reason}; "
                            f"check {BASE_URL_VAR}"
                        )
                    ) from None
            except _Retryable as e:
                failure = e
            if retries >= self.max_retries:
                raise ChatspaceError(
                    self._scrub(
                        f"the embeddings API at {self.settings.display_url} failed {retries + 1} times for one "
                        f"request of {len(inputs)} inputs (last: {failure.reason}); gave up after "
                        f"{self.max_retries} retries. Rerun with --resume to continue once it recovers"
                    )
                )
            retries += 1
            if isinstance(failure, _Unreachable):
                delay = self.unreachable_delay
            elif failure.retry_after is not None:
                delay = min(failure.retry_after, self.retry_after_max)
                with self._lock:
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
            else:
                full = min(self.backoff_max, self.backoff_base * 2 ** (retries - 1))
                delay = full / 2 + random.uniform(0, full / 2)
            log.info(
                "embeddings request failed (%s); retry %d/%d in %.2fs",
                self._scrub(failure.reason),
                retries,
                self.max_retries,
                delay,
            )
            if stop.wait(delay):
                raise _Cancelled()

    def _wait_for_pause(self, stop: threading.Event) -> None:
        while True:
            if stop.is_set():
                raise _Cancelled()
            with self._lock:
                remaining = self._pause_until - time.monotonic()
            if remaining <= 0:
                return
            if stop.wait(remaining):
                raise _Cancelled()

    def _send(self, inputs: list[str], dim: int | None) -> np.ndarray:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "input": inputs}
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        while True:
            fmt = self.encoding_format
            try:
                raw = self._client.embeddings.with_raw_response.create(encoding_format=fmt, **kwargs)
                content = raw.http_response.content
            except openai.APITimeoutError:
                raise _Retryable(f"timed out after {self.settings.timeout:g}s") from None
            except openai.APIConnectionError as e:
                if reason := _unreachable_reason(e):
                    raise _Unreachable(reason) from None
                cause = e.__cause__ or e.__context__
                detail = f": {type(cause).__name__}" if cause is not None else ""
                raise _Retryable(f"connection error{detail}") from None
            except openai.APIStatusError as e:
                status = e.status_code
                # Scrubbed before any cut: a server may quote the request (URL, headers) back.
                message = self._scrub(_server_message(e.body, e.message))
                if status in RETRYABLE_STATUS or status >= 500:
                    raise _Retryable(
                        f"HTTP {status}: {message}"[:300], parse_retry_after(e.response.headers)
                    ) from None
                if (
                    status in (400, 422)
                    and fmt == "base64"
                    and re.search(r"base64|encoding_format", message, re.I)
                ):
                    log.info("server refuses base64 embeddings; asking for floats")
                    self.encoding_format = "float"
                    continue
                hint = f" (check {API_KEY_VAR})" if status in (401, 403) else ""
                raise ChatspaceError(
                    self._scrub(
                        f"the embeddings API at {self.settings.display_url} refused a request for model "
                        f"{self.model!r}: HTTP {status}: {message}"[:500]
                        + hint
                    )
                ) from None
            except openai.OpenAIError as e:  # e.g. a client-side failure; not worth retrying
                raise ChatspaceError(
                    self._scrub(f"OpenAI client error: {type(e).__name__}: {e}")[:500]
                ) from None
            return self._parse(content, len(inputs), dim)

    def _parse(self, content: bytes, n: int, expected_dim: int | None) -> np.ndarray:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise _Retryable(f"malformed response: not JSON ({len(content)} bytes)") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise _Retryable("malformed response: no 'data' list")
        if len(data) != n:
            raise _Retryable(f"malformed response: {len(data)} embeddings for {n} inputs")
        out: np.ndarray | None = None
        seen = np.zeros(n, dtype=bool)
        for item in data:
            idx = item.get("index") if isinstance(item, dict) else None
            emb = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(idx, int) or not 0 <= idx < n or seen[idx]:
                raise _Retryable("malformed response: missing, repeated or out-of-range 'index'")
            try:
                if isinstance(emb, str):
                    vec = np.frombuffer(base64.b64decode(emb, validate=True), dtype="<f4")
                elif isinstance(emb, list):
                    vec = np.asarray(emb, dtype=np.float32)
                else:
                    raise ValueError
            except (ValueError, TypeError, binascii.Error):
                raise _Retryable("malformed response: an embedding is neither floats nor base64") from None
            if vec.ndim != 1 or vec.size == 0:
                raise _Retryable("malformed response: an empty embedding")
            if out is None:
                dim = expected_dim or vec.size
                if vec.size != dim:
                    raise ChatspaceError(
                        f"the server at {self.settings.display_url} returned {vec.size}-dimensional vectors for "
                        f"model {self.model!r}, expected {dim}: check the model name and --dimensions"
                    )
                out = np.empty((n, dim), dtype=np.float32)
            if vec.size != out.shape[1]:
                raise _Retryable("malformed response: embeddings of different lengths")
            out[idx] = vec
            seen[idx] = True
        assert out is not None
        return out

    def _scrub(self, text: str) -> str:
        """No credential of these settings (or the environment's) in a message, however it is quoted."""
        secrets = known_secrets(values=(self.settings.api_key or "",), urls=(self.settings.base_url,))
        return redact(text, secrets)
