"""OpenAI-mode settings from the environment or a `.env` file; the API key never leaves this object in text.

Variables: OPENAI_API_KEY (needed only to call the API), OPENAI_BASE_URL (any OpenAI-compatible server:
vLLM, TEI, infinity), OPENAI_EMBED_MODEL (the default model), OPENAI_TIMEOUT (seconds per request).
A `.env` file fills in only variables that are not already set.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chatspace.config import DEFAULT_OPENAI_MODEL
from chatspace.errors import UsageError

API_KEY_VAR = "OPENAI_API_KEY"
BASE_URL_VAR = "OPENAI_BASE_URL"
MODEL_VAR = "OPENAI_EMBED_MODEL"
TIMEOUT_VAR = "OPENAI_TIMEOUT"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 120.0


def parse_dotenv(text: str) -> dict[str, str]:
    """`KEY=value` pairs of a .env file, read by python-dotenv: `export` prefixes, comments, quotes
    (double quotes with escapes, spanning lines), `${VAR}` and `${VAR:-default}` expanded. As in
    load_dotenv an existing variable wins, so `${VAR}` expands to the environment's value first, then
    to the file's earlier lines. A bare `KEY` with no `=` is left out."""
    from dotenv.main import DotEnv

    values = DotEnv(None, stream=io.StringIO(text), interpolate=True, override=False).dict()
    return {k: v for k, v in values.items() if v is not None}


def load_dotenv(path: str | Path = ".env") -> dict[str, str]:
    """Set the variables of a .env file that are not set already (an existing variable always wins,
    even when empty; `${VAR}` expands to it). Returns the variables it set; a missing file sets nothing."""
    p = Path(path).expanduser()
    if not p.is_file():
        return {}
    try:
        values = parse_dotenv(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {p}: {e}") from None
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    return added


def safe_url(url: str) -> str:
    """`url` fit for logs and manifests: no user:password part, no query string (either may hold a key)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class OpenAISettings:
    """Where and how to call the embeddings API. `repr`, `str` and `to_dict` never show the key."""

    api_key: str | None = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_OPENAI_MODEL
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        key = "'<redacted>'" if self.api_key else "None"
        return (
            f"OpenAISettings(api_key={key}, base_url={self.display_url!r}, model={self.model!r}, "
            f"timeout={self.timeout!r})"
        )

    __str__ = __repr__

    @property
    def display_url(self) -> str:
        return safe_url(self.base_url)

    @property
    def is_default_endpoint(self) -> bool:
        return self.base_url.rstrip("/") == DEFAULT_BASE_URL

    def to_dict(self) -> dict[str, Any]:
        """What the manifest may record: everything but the key (only whether one was set)."""
        return {
            "base_url": self.display_url,
            "model": self.model,
            "timeout": self.timeout,
            "api_key_set": bool(self.api_key),
        }


def openai_settings(require_key: bool, *, dotenv: str | Path | None = ".env") -> OpenAISettings:
    """Read the OpenAI settings (after filling unset variables from `dotenv`, if that file exists).

    With `require_key` (an --execute run), a missing or empty OPENAI_API_KEY is one UsageError line.
    """
    if dotenv is not None:
        load_dotenv(dotenv)
    key = (os.environ.get(API_KEY_VAR) or "").strip() or None
    if require_key and key is None:
        raise UsageError(
            f"{API_KEY_VAR} is not set: export it or put it in a .env file to run with --execute "
            "(a dry run without --execute needs no key)"
        )
    base_url = (os.environ.get(BASE_URL_VAR) or "").strip() or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"{BASE_URL_VAR} must be an http:// or https:// URL, not {base_url!r}")
    model = (os.environ.get(MODEL_VAR) or "").strip() or DEFAULT_OPENAI_MODEL
    raw_timeout = (os.environ.get(TIMEOUT_VAR) or "").strip()
    timeout = DEFAULT_TIMEOUT
    if raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = -1.0
        if not (timeout > 0 and timeout != float("inf")):
            raise UsageError(f"{TIMEOUT_VAR} must be a positive number of seconds, not {raw_timeout!r}")
    return OpenAISettings(api_key=key, base_url=base_url.rstrip("/"), model=model, timeout=timeout)
