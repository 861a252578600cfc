"""No credential reaches stderr, logs/ or manifest.json, even when the server quotes the request back."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from chatspace.redact import REDACTED, known_secrets, redact
from tests.helpers import run_cli, write_jsonl
from tests.helpers.openai_fake_server import FakeEmbeddingServer

KEY = "sk-proj-KEYSECRET0123456789"
PASSWORD = "PW/SECRET+4567"  # characters a URL must percent-encode
QUERY_KEY = "QKEY-SECRET-89ab"
SIG = "SIG-SECRET-cdef"
BASIC = base64.b64encode(f"proxyuser:{PASSWORD}".encode()).decode()  # as an HTTP client sends it
SECRETS = (KEY, PASSWORD, quote(PASSWORD, safe=""), QUERY_KEY, SIG, BASIC)


def _env(port: int) -> dict[str, str]:
    password = quote(PASSWORD, safe="")
    return {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": f"http://proxyuser:{password}@127.0.0.1:{port}/v1?api-key={QUERY_KEY}&sig={SIG}",
    }


def test_redact_every_form_of_every_secret():
    secrets = known_secrets(_env(1234))
    text = (
        f"POST /v1/embeddings?api-key={QUERY_KEY}&sig={SIG} 'Authorization': 'Bearer {KEY}' "
        f"Basic {BASIC} url=http://proxyuser:{quote(PASSWORD, safe='')}@host/v1 password {PASSWORD} "
        f"quoted {quote(PASSWORD, safe='')} key={KEY}"
    )
    clean = redact(text, secrets)
    for s in SECRETS:
        assert s not in clean
    assert "proxyuser:" not in clean
    assert clean.count(REDACTED) >= 8
    # Ordinary words survive: a user name with a password is not a secret by itself.
    assert "POST /v1/embeddings" in clean and "Authorization" in clean and "password" in clean


def test_redact_credential_shapes_without_knowing_them():
    text = "GET https://bob:hunter22@example.com/x?token=abcdef&page=2 with sk-live-0123456789abcdef"
    clean = redact(text, [])
    assert "hunter22" not in clean and "abcdef&" not in clean and "0123456789abcdef" not in clean
    assert "page=2" in clean and "example.com/x" in clean


def _no_secret_anywhere(out: Path, *texts: str) -> None:
    for text in texts:
        for s in SECRETS:
            assert s not in text, (s, text)
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for s in SECRETS:
                assert s.encode() not in data, (s, p)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (["echo:500"] * 4, "gave up after 1 retries"),  # retried, then given up
        (["echo:422"] * 4, "refused a request"),  # refused at once
    ],
)
def test_a_server_echoing_the_request_leaks_nothing(tmp_path, script, expected):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "out"
    with FakeEmbeddingServer(dimension=8) as server:
        server.script(*script)
        proc = run_cli(
            "embed-dataset",
            "--dataset",
            str(data),
            "--output-root",
            str(out),
            "--model",
            "m",
            "--dimensions",
            "8",
            "--execute",
            "--max-retries",
            "1",
            "--concurrency",
            "1",
            "--no-progress",
            "-v",  # library loggers too (httpx logs each request's URL at debug level)
            env=_env(server.port),
        )
        received = server.requests
    # The echo really carried the secrets back: this test would see them if they leaked.
    assert received and received[0].action.startswith("echo")
    assert QUERY_KEY in received[0].target and SIG in received[0].target
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("chatspace: error:") and expected in last, proc.stderr
    assert "bad request: POST /v1/embeddings?api-key=" + REDACTED in proc.stderr
    manifest = next(out.glob("indexes/*/*/*/manifest.json")).read_text()
    assert '"status": "failed"' in manifest and REDACTED in manifest
    assert REDACTED in next(out.glob("logs/*.log")).read_text()
    _no_secret_anywhere(out, proc.stdout, proc.stderr)
