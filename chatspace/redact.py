"""Keeping credentials out of everything chatspace prints or writes (stderr, logs/, manifest.json).

A server's error message may quote the request back (its URL with a `?api-key=`, its `Authorization`
header), so messages are scrubbed where they leave the process, not only where chatspace formats a URL:
the known secrets (the API key, the user:password of OPENAI_BASE_URL and its secret query values, a Hub
token) in every form a request carries them (as is, URL-encoded, base64 in a Basic auth header), plus
anything shaped like a key, a URL's userinfo, or a secret query parameter.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

REDACTED = "<redacted>"
SECRET_VARIABLES = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
URL_VARIABLES = ("OPENAI_BASE_URL",)
#: Query parameters whose values are credentials (api-key, key, token, access_token, sig, ...).
SECRET_PARAM = r"(?:[\w.-]*(?:key|token|sig|signature|secret|password|passwd|auth|credential)[\w.-]*|code)"
#: Shorter values are not redacted as free text (they would blank out ordinary words); their
#: contexts (a URL's userinfo, a secret query parameter, a Bearer header) still are.
MIN_SECRET_LEN = 4

_KEY_LIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*.]{6,}")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"<>]+@")
_QUERY_SECRET = re.compile(rf"([?&;]{SECRET_PARAM}=)[^&#\s'\"<>]+", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def known_secrets(
    environ: dict[str, str] | None = None, *, values: tuple[str, ...] = (), urls: tuple[str, ...] = ()
) -> list[str]:
    """Every form of every credential the environment (plus `values` and `urls`) gives, longest first."""
    env = os.environ if environ is None else environ
    plain = {v.strip() for v in values if v and v.strip()}
    for name in SECRET_VARIABLES:
        if value := (env.get(name) or "").strip():
            plain.add(value)
    for url in (*(env.get(name) or "" for name in URL_VARIABLES), *urls):
        plain |= _url_secrets(url.strip())
    forms: set[str] = set()
    for s in plain:
        forms |= {s, quote(s, safe=""), quote_plus(s, safe="")}
    return sorted((f for f in forms if len(f) >= MIN_SECRET_LEN), key=len, reverse=True)


def _url_secrets(url: str) -> set[str]:
    if not url:
        return set()
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return set()
    out: set[str] = set()
    if user and password is None:  # `https://TOKEN@host`: a user name alone is the credential
        out.add(unquote(user))
    if password:
        out.add(unquote(password))
    if user is not None and password is not None:
        # How an HTTP client sends userinfo: `Authorization: Basic base64(user:password)`.
        out.add(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and re.fullmatch(SECRET_PARAM, key, re.IGNORECASE):
            out.add(value)
    return out


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every known secret and every credential-shaped span replaced by <redacted>."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    text = _AUTH_HEADER.sub(rf"\1 {REDACTED}", text)
    text = _KEY_LIKE.sub(rf"\1-{REDACTED}", text)
    for secret in known_secrets() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_obj(obj: Any, secrets: list[str] | None = None) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples."""
    secrets = known_secrets() if secrets is None else secrets
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {k: redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v, secrets) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """A handler filter: the record's final message (and traceback) with secrets removed.

    On a handler (not a logger) it also sees records propagated from library loggers (httpx logs
    whole request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets()
        message = record.getMessage()
        clean = redact(message, secrets)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True
