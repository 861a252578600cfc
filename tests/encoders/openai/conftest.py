"""Every OpenAI-mode test runs without real OpenAI variables or a .env, with a tiny back-off; `server`
is a fake OpenAI-compatible embeddings server."""

from __future__ import annotations

import pytest

from chatspace.encoders.openai import client as openai_client
from tests.encoders.openai.common import ENV_VARS
from tests.helpers.openai_fake_server import FakeEmbeddingServer


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No real OpenAI variables, no .env from the checkout, tiny back-off."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(openai_client, "BACKOFF_BASE_S", 0.01)
    monkeypatch.setattr(openai_client, "BACKOFF_MAX_S", 0.05)


@pytest.fixture
def server():
    with FakeEmbeddingServer(dimension=8) as s:
        yield s
