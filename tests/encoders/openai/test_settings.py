"""OpenAI-mode settings: the key, base URL, model and timeout from the environment and .env files."""

from __future__ import annotations

import os

import pytest

from chatspace.encoders.openai.encoder import OpenAIEncoder
from chatspace.encoders.openai.settings import (
    load_dotenv,
    openai_settings,
    parse_dotenv,
    safe_url,
)
from chatspace.errors import UsageError
from tests.encoders.openai.common import KEY, make_cfg

pytestmark = pytest.mark.timeout(60)


def test_missing_key_is_one_usage_error_naming_it():
    with pytest.raises(UsageError) as info:
        openai_settings(require_key=True)
    assert "OPENAI_API_KEY" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        OpenAIEncoder(make_cfg().encoder)
    assert openai_settings(require_key=False).api_key is None
    OpenAIEncoder(make_cfg(execute=False).encoder)  # a dry run needs no key


def test_settings_from_environment_and_key_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("OPENAI_EMBED_MODEL", "text-embedding-3-large")
    monkeypatch.setenv("OPENAI_TIMEOUT", "2.5")
    s = openai_settings(require_key=True)
    assert (s.api_key, s.base_url, s.model, s.timeout) == (
        KEY,
        "http://127.0.0.1:9/v1",
        "text-embedding-3-large",
        2.5,
    )
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in repr(s.to_dict())
    assert s.to_dict()["api_key_set"] is True
    assert safe_url("https://user:pw@host.example/v1?api-key=abc") == "https://host.example/v1?<redacted>"
    monkeypatch.setenv("OPENAI_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="OPENAI_TIMEOUT"):
        openai_settings(require_key=False)


def test_dotenv_fills_only_unset_variables(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "# comment\n"
        "export OPENAI_API_KEY=sk-from-dotenv-123456\n"
        "OPENAI_BASE_URL='http://127.0.0.1:1234/v1'\n"
        'OPENAI_EMBED_MODEL="text-embedding-3-large"  # inline\n'
        "OPENAI_TIMEOUT=7 # seconds\n"
        "not an assignment\n"
    )
    monkeypatch.setenv("OPENAI_EMBED_MODEL", "mine")
    monkeypatch.setenv("OPENAI_TIMEOUT", "")  # set, even if empty: not overridden
    added = load_dotenv(tmp_path / ".env")
    assert set(added) == {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    assert os.environ["OPENAI_EMBED_MODEL"] == "mine" and os.environ["OPENAI_TIMEOUT"] == ""
    s = openai_settings(require_key=True)  # reads ./.env (cwd is tmp_path) without overriding either
    assert (s.api_key, s.base_url, s.model) == ("sk-from-dotenv-123456", "http://127.0.0.1:1234/v1", "mine")
    assert load_dotenv(tmp_path / "missing.env") == {}


def test_parse_dotenv_quotes():
    assert parse_dotenv('A="x\\ny"\nB=\'#not comment\'\nC=plain # c\nD=\nE="multi\nline"\n') == {
        "A": "x\ny",
        "B": "#not comment",
        "C": "plain",
        "D": "",
        "E": "multi\nline",
    }


def test_dotenv_expands_variables_from_the_environment_then_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_HOST", "10.0.0.7")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("CHATSPACE_TEST_PORT", raising=False)
    (tmp_path / ".env").write_text(
        "CHATSPACE_TEST_PORT=8042\n"
        "OPENAI_BASE_URL=http://${LLM_HOST}:${CHATSPACE_TEST_PORT}/v1\n"
        'OPENAI_API_KEY="${CHATSPACE_TEST_MISSING:-sk-fallback-123}"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = openai_settings(require_key=True)
    assert s.base_url == "http://10.0.0.7:8042/v1" and s.api_key == "sk-fallback-123"
