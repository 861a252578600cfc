"""The OpenAI encoder, its settings and its dry run, against a local fake OpenAI-compatible server."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from chatspace.encoders.openai import client as openai_client
from chatspace.encoders.openai.client import parse_retry_after
from chatspace.encoders.openai.encoder import OpenAIEncoder
from chatspace.encoders.openai.models import MAX_INPUT_TOKENS
from chatspace.encoders.openai.planning import plan_requests
from chatspace.encoders.openai.settings import (
    OpenAISettings,
)
from chatspace.encoders.openai.tokens import token_counter
from chatspace.errors import ChatspaceError, UsageError
from chatspace.stats import WorkerStats
from tests.encoders.openai.common import (
    EMOJI_LONG,
    KEY,
    LONG,
    expected,
    make_cfg,
    make_encoder,
    n_tokens,
    run,
)

pytestmark = pytest.mark.timeout(60)


# --- encoding -------------------------------------------------------------------------------------


def test_vectors_in_input_order_across_concurrent_requests(server):
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(50)]
    enc = make_encoder(server, request_max_inputs=4, concurrency=4)
    vectors, prepared, stats = run(enc, texts)
    assert vectors.dtype == np.float32 and vectors.shape == (50, 8)
    np.testing.assert_array_equal(vectors, expected(texts))  # server answers reversed: joined by index
    assert stats.requests == len(server.requests) == 13 and stats.retries == 0
    assert server.max_in_flight <= 4
    assert stats.tokens == sum(n_tokens(t) for t in texts)
    body = server.requests[0].body
    assert body["model"] == "text-embedding-3-small" and body["dimensions"] == 8
    assert server.requests[0].headers.get("authorization") == f"Bearer {KEY}"
    enc.close()


def test_batches_respect_input_and_token_limits(server):
    texts = [("alpha beta gamma " * (1 + i % 13)).strip() for i in range(120)]
    counts = [n_tokens(t) for t in texts]
    enc = make_encoder(server, request_max_inputs=10, request_max_tokens=100, concurrency=1)
    vectors, prepared, _ = run(enc, texts)
    np.testing.assert_array_equal(vectors, expected(texts))
    assert list(prepared.token_counts) == counts
    sent = [r.inputs for r in server.requests]
    assert [t for batch in sent for t in batch] == texts  # planned in input order, each sent once
    for batch in sent:
        assert len(batch) <= 10
        assert sum(n_tokens(t) for t in batch) <= 100
    assert prepared.payload.request_tokens == [sum(n_tokens(t) for t in b) for b in sent]


def test_plan_requests_limits():
    assert plan_requests([], 5, 100) == []
    assert plan_requests([10] * 7, 3, 1000) == [(0, 3), (3, 6), (6, 7)]
    assert plan_requests([60, 50, 40, 10, 200, 5], 100, 100) == [(0, 1), (1, 4), (4, 5), (5, 6)]


def test_defaults_are_the_api_limits():
    cfg = make_cfg()
    assert (cfg.encoder.request_max_inputs, cfg.encoder.request_max_tokens, MAX_INPUT_TOKENS) == (
        2048,
        300_000,
        8191,
    )


def test_rate_limit_waits_for_retry_after(server):
    server.script("429:0.4")
    enc = make_encoder(server)
    t0 = time.monotonic()
    vectors, _, stats = run(enc, ["a", "b"])
    assert time.monotonic() - t0 >= 0.4
    np.testing.assert_array_equal(vectors, expected(["a", "b"]))
    assert (stats.requests, stats.retries) == (2, 1)
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.4


def test_retry_after_pauses_other_requests_too(server):
    # Three requests go out together: one is told to wait 0.5 s, two others fail with 500 and would
    # retry after ~0.1 s; the Retry-After holds back every request of the encoder, theirs too.
    server.script("429:0.5", "500", "500")  # given out in arrival order
    enc = make_encoder(server, request_max_inputs=1, concurrency=3)
    enc.client.backoff_base = 0.1
    texts = ["a", "b", "c"]
    vectors, _, stats = run(enc, texts)
    np.testing.assert_array_equal(vectors, expected(texts))
    first = server.requests[0].received_at
    assert len(server.requests) == 6 and stats.retries == 3
    assert all(r.received_at - first >= 0.5 for r in server.requests[3:])


def test_concurrency_requests_in_flight(server):
    server.script(*["slow:0.3"] * 6)
    enc = make_encoder(server, request_max_inputs=1, concurrency=3)
    t0 = time.monotonic()
    vectors, _, stats = run(enc, [f"t{i}" for i in range(6)])
    assert server.max_in_flight == 3 and stats.requests == 6
    assert 0.55 < time.monotonic() - t0 < 1.5


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None


def test_server_errors_are_retried_then_succeed(server):
    server.script("500", "503", "502")
    enc = make_encoder(server, max_retries=3)
    vectors, _, stats = run(enc, ["x", "y", "z"])
    np.testing.assert_array_equal(vectors, expected(["x", "y", "z"]))
    assert (stats.requests, stats.retries) == (4, 3)


def test_retries_exhausted_raise_one_clear_error_without_the_key(server, caplog):
    server.script(*["500"] * 10)
    enc = make_encoder(server, max_retries=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(ChatspaceError) as info:
        run(enc, ["x"])
    msg = str(info.value)
    assert "gave up after 2 retries" in msg and "HTTP 500" in msg and server.base_url in msg
    assert "\n" not in msg and KEY not in msg
    assert KEY not in caplog.text
    assert len(server.requests) == 3


def test_server_dying_mid_run_stops_the_run(server):
    server.fail_after = 3
    enc = make_encoder(server, request_max_inputs=2, concurrency=2, max_retries=2)
    texts = [f"t{i}" for i in range(20)]
    with pytest.raises(ChatspaceError, match="gave up after 2 retries"):
        run(enc, texts)
    assert server.successes == 3
    time.sleep(0.2)  # in-flight retries of the other requests stop instead of going on
    settled = len(server.requests)
    time.sleep(0.3)
    assert len(server.requests) == settled


def test_client_errors_are_not_retried_and_name_the_key_variable(server):
    server.api_key = "sk-other-key-0000000000"
    enc = make_encoder(server)
    with pytest.raises(ChatspaceError, match=r"HTTP 401.*OPENAI_API_KEY") as info:
        run(enc, ["x"])
    assert KEY not in str(info.value)
    assert len(server.requests) == 1


def test_malformed_json_is_retried(server):
    server.script("malformed", "partial")
    enc = make_encoder(server)
    vectors, _, stats = run(enc, ["one", "two"])
    np.testing.assert_array_equal(vectors, expected(["one", "two"]))
    assert stats.retries == 2


def test_malformed_json_every_time_is_a_clear_error(server):
    server.script(*["malformed"] * 5)
    enc = make_encoder(server, max_retries=1)
    with pytest.raises(ChatspaceError, match="malformed response"):
        run(enc, ["one"])


def test_timeout_is_retried(server):
    server.script("slow:3")
    enc = make_encoder(server, timeout=0.3)
    t0 = time.monotonic()
    vectors, _, stats = run(enc, ["slowly"])
    assert time.monotonic() - t0 < 2.5
    np.testing.assert_array_equal(vectors, expected(["slowly"]))
    assert stats.retries == 1


def test_timeouts_exhausted(server):
    server.script("slow:3", "slow:3")
    enc = make_encoder(server, timeout=0.2, max_retries=1)
    with pytest.raises(ChatspaceError, match="timed out"):
        run(enc, ["slowly"])


def test_connection_errors_are_retried(server):
    server.script("drop")
    enc = make_encoder(server)
    vectors, _, stats = run(enc, ["a"])
    np.testing.assert_array_equal(vectors, expected(["a"]))
    assert stats.retries == 1


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("max_retries", [6, 1])
def test_connection_refused_fails_after_a_couple_of_quick_tries(max_retries):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    settings = OpenAISettings(api_key=KEY, base_url=url, timeout=5.0)
    enc = OpenAIEncoder(make_cfg(max_retries=max_retries).encoder, settings=settings)
    enc.client.backoff_base = 30.0  # a backed-off retry would be obvious: the test would take minutes
    enc.load(stats := WorkerStats())
    with pytest.raises(ChatspaceError, match="cannot reach the embeddings API at http://127.0.0.1") as info:
        enc.encode(enc.prepare(["a"], stats), stats)
    assert "connection refused" in str(info.value) and "OPENAI_BASE_URL" in str(info.value)
    assert stats.requests == 1 + min(openai_client.UNREACHABLE_RETRIES, max_retries)


def test_a_host_name_that_does_not_resolve_fails_at_once():
    host = "chatspace-test.invalid"  # RFC 6761: never resolves
    started = time.monotonic()
    try:
        socket.getaddrinfo(host, 80)
        pytest.skip(f"this resolver answers for {host} (NXDOMAIN is rewritten)")
    except socket.gaierror:
        pass
    if time.monotonic() - started > 3:
        pytest.skip("this resolver takes seconds to say no (no DNS server reachable): nothing to test")
    settings = OpenAISettings(api_key=KEY, base_url=f"http://{host}/v1", timeout=5.0)
    enc = OpenAIEncoder(make_cfg(max_retries=6).encoder, settings=settings)
    enc.client.backoff_base = 30.0
    enc.load(stats := WorkerStats())
    with pytest.raises(ChatspaceError, match=f"cannot reach the embeddings API at http://{host}/v1"):
        enc.encode(enc.prepare(["a"], stats), stats)
    assert stats.requests == 1 + openai_client.UNREACHABLE_RETRIES


def test_float_encoding_and_unknown_model_probe(server):
    enc = make_encoder(server, model="my-local-model", dimensions=None)
    assert enc.dimension == 8  # learnt from one probe request
    assert len(server.requests) == 1 and server.requests[0].inputs == [openai_client.PROBE_TEXT]
    assert "dimensions" not in server.requests[0].body
    enc.client.encoding_format = "float"
    vectors, _, _ = run(enc, ["p", "q"])
    np.testing.assert_array_equal(vectors, expected(["p", "q"]))
    d = enc.describe()
    assert d["tokenizer"] == "approx-chars/4" and d["token_counts_approximate"] is True
    assert d["base_url"] == server.base_url and KEY not in repr(d) and KEY not in repr(enc)


def test_known_model_dimension_without_probe(server):
    enc = make_encoder(server, dimensions=None, model="text-embedding-3-large")
    assert enc.dimension == 3072 and server.requests == []
    assert enc.describe()["tokenizer"] == "cl100k_base"


def test_dimension_mismatch_is_fatal(server):
    server.model_dimensions["text-embedding-3-small"] = 12
    enc = make_encoder(server, dimensions=None)
    with pytest.raises(ChatspaceError, match="12-dimensional vectors.*expected 1536"):
        run(enc, ["x"])
    assert len(server.requests) == 1


def test_no_request_without_execute(server):
    settings = OpenAISettings(api_key=KEY, base_url=server.base_url)
    enc = OpenAIEncoder(make_cfg(execute=False).encoder, settings=settings)
    enc.load(WorkerStats())
    prepared = enc.prepare(["x"], WorkerStats())
    with pytest.raises(UsageError, match="--execute"):
        enc.encode(prepared, WorkerStats())
    assert server.requests == []


# --- long inputs ----------------------------------------------------------------------------------


def test_long_inputs_truncated_to_the_limit(server):
    texts = ["short", LONG, EMOJI_LONG]
    enc = make_encoder(server)
    vectors, prepared, stats = run(enc, texts)
    assert list(prepared.truncated) == [False, True, True]
    assert prepared.skipped == {}
    sent = server.requests[0].inputs
    assert sent[0] == "short"
    for original, s in zip(texts[1:], sent[1:], strict=True):
        assert original.startswith(s) and n_tokens(s) <= MAX_INPUT_TOKENS
        assert n_tokens(s) >= MAX_INPUT_TOKENS - 2
    assert list(prepared.token_counts) == [n_tokens(s) for s in sent]
    assert prepared.texts == texts  # the rows keep their full text; only the request is cut
    assert stats.truncated == 2
    np.testing.assert_array_equal(vectors, expected(sent))


def test_long_inputs_skipped_with_reason(server):
    texts = ["short", LONG, "also short", ""]
    enc = make_encoder(server, on_long="skip")
    vectors, prepared, stats = run(enc, texts)
    assert prepared.skipped == {1: "too_long", 3: "empty"}
    assert server.requests[0].inputs == ["short", "also short"]
    np.testing.assert_array_equal(vectors[[0, 2]], expected(["short", "also short"]))
    assert stats.tokens == n_tokens("short") + n_tokens("also short") and stats.truncated == 0


def test_token_counter_matches_bpe_openai():
    count, name, exact = token_counter("text-embedding-3-small")
    assert (name, exact) == ("cl100k_base", True)
    for text in ["hello world", LONG, EMOJI_LONG, "special <|endoftext|> text", "x" * 2_000_000]:
        if len(text) < 1_000_000:
            assert count(text) == n_tokens(text)
        else:
            assert count(text) > 0
    count, name, exact = token_counter("some-org/custom-embedder")
    assert (name, exact) == ("approx-chars/4", False) and count("abcdefghi") == 3


def test_a_batch_is_spread_over_concurrent_requests(server):
    assert plan_requests([1] * 200, 2048, 300_000, spread=4) == [(0, 50), (50, 100), (100, 150), (150, 200)]
    assert plan_requests([1] * 40, 2048, 300_000, spread=4) == [(0, 32), (32, 40)]  # not below 32 each
    assert plan_requests([1] * 200, 30, 300_000, spread=4)[0] == (0, 30)  # the API limits still rule
    texts = [f"row {i}" for i in range(200)]
    enc = make_encoder(server, concurrency=4)
    vectors, _, _ = run(enc, texts)
    assert sorted(len(r.inputs) for r in server.requests) == [50, 50, 50, 50]
    np.testing.assert_array_equal(vectors, expected(texts))
