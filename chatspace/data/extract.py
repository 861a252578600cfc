"""Turn one row's field into the exact text to embed, or a reason to skip the row.

Conversations come in two shapes: OpenAI-style messages (`role`/`content`, content possibly a list of
`{"type": "text", "text": ...}` parts) and ShareGPT-style (`from`/`value`, `human`/`gpt`). A plain list
of strings (MT-bench's `turns`) is one text: its strings joined by a blank line, in order. Field names
may be dotted paths into nested values (see chatspace.data.fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from chatspace.config.data import ASSISTANT_ROLE_NAMES, USER_ROLE_NAMES
from chatspace.data.fields import MissingField, columns_for, lookup

# Skip reasons, as counted in the manifest.
MISSING_FIELD = "missing_field"
NULL = "null"
EMPTY = "empty"
NOT_TEXT = "not_text"
NOT_CONVERSATION = "not_conversation"
NO_MATCHING_TURN = "no_matching_turn"
MISSING_ID = "missing_id"
INVALID_ROW = "invalid_row"

_ASSISTANT_ROLES = ASSISTANT_ROLE_NAMES
_USER_ROLES = USER_ROLE_NAMES
_ROLE_LABELS = {"assistant": "Assistant", "user": "User", "system": "System", "tool": "Tool"}


class Skip(Exception):
    """Raised by extraction with the reason the row is not embedded."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


LIST_JOINER = "\n\n"  # between the strings of a list-of-strings field


def _plain_text(value: Any) -> str:
    if value is None:
        raise Skip(NULL)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str | None) for v in value):
        value = LIST_JOINER.join(v for v in value if v is not None and v.strip())
    if not isinstance(value, str):
        raise Skip(NOT_TEXT)
    if not value.strip():
        raise Skip(EMPTY)
    return value


def _content_text(content: Any) -> str | None:
    """The text of one message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts) if parts else None
    return None


def _normalise_role(message: dict) -> str | None:
    role = message.get("role", message.get("from"))
    if not isinstance(role, str):
        return None
    role = role.strip().lower()
    if role in _ASSISTANT_ROLES:
        return "assistant"
    if role in _USER_ROLES:
        return "user"
    return role


def _messages(value: Any) -> list[tuple[str | None, str | None]]:
    """(role, text) pairs of a conversation; raises Skip when the value is not one."""
    if value is None:
        raise Skip(NULL)
    if isinstance(value, str):
        # A conversation stored as a JSON string (CSV exports do this).
        stripped = value.strip()
        if not stripped.startswith("["):
            raise Skip(NOT_CONVERSATION)
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            raise Skip(NOT_CONVERSATION) from None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list | tuple):
        raise Skip(NOT_CONVERSATION)
    if not value:
        raise Skip(EMPTY)
    out = []
    for message in value:
        if not isinstance(message, dict):
            raise Skip(NOT_CONVERSATION)
        content = message.get("content", message.get("value"))
        out.append((_normalise_role(message), _content_text(content)))
    return out


def conversation(row: Any, text_field: str) -> list[tuple[str | None, str | None]]:
    """(role, text) pairs of the conversation in a row's `text_field`; raises Skip when there is none."""
    if row is None or not isinstance(row, dict):
        raise Skip(INVALID_ROW)
    try:
        value = lookup(row, text_field)
    except MissingField:
        raise Skip(MISSING_FIELD) from None
    return _messages(value)


def extract_text(value: Any, mode: str) -> str:
    """The text to embed for a field value under `mode`; raises Skip(reason) when there is none."""
    if mode == "text":
        return _plain_text(value)
    messages = _messages(value)
    if mode in ("first-assistant", "first-user"):
        wanted = "assistant" if mode == "first-assistant" else "user"
        for role, text in messages:
            if role == wanted and text is not None and text.strip():
                return text
        raise Skip(NO_MATCHING_TURN)
    if mode == "all-turns":
        lines = [
            f"{_ROLE_LABELS.get(role or '', (role or 'unknown').capitalize())}: {text}"
            for role, text in messages
            if text is not None and text.strip()
        ]
        if not lines:
            raise Skip(EMPTY)
        return "\n\n".join(lines)
    raise ValueError(f"unknown extraction mode {mode!r}")


def extract_row(row: dict, text_field: str, mode: str) -> str:
    """Text for one row dict; a row without the field at all is skipped as missing_field."""
    if not isinstance(row, dict):
        raise Skip(INVALID_ROW)
    try:
        value = lookup(row, text_field)
    except MissingField:
        raise Skip(MISSING_FIELD) from None
    return extract_text(value, mode)


def row_id(row: dict, id_field: str | None, split: str, index: int) -> str:
    """The row's id: its --id-field value as a string, or a stable `{split}-{global index}`."""
    if id_field is None:
        return f"{split}-{index}"
    try:
        value = lookup(row, id_field) if isinstance(row, dict) else None
    except MissingField:
        value = None
    if (
        value is None
        or isinstance(value, list | dict | bool)
        or (isinstance(value, str) and not value.strip())
    ):
        raise Skip(MISSING_ID)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def needed_columns(text_field: str, id_field: str | None) -> list[str]:
    """The only columns a run reads (for a dotted name: the name itself and its leading parts)."""
    names = [text_field] + ([id_field] if id_field else [])
    return list(dict.fromkeys(c for name in names for c in columns_for(name)))


def extract_rows(
    indices: Iterable[int],
    rows: Iterable[dict | None],
    *,
    text_field: str,
    mode: str,
    id_field: str | None,
    split: str,
    skipped: dict[str, int],
) -> Iterator[tuple[int, str, str]]:
    """(global index, id, text) of each usable row; the others are counted in `skipped` by reason.

    A row that could not be parsed at all arrives as None and is counted as invalid_row.
    """
    plain = mode == "text"
    for index, row in zip(indices, rows, strict=True):
        # The common case without a function call per row: a top-level string field and id (the same
        # values the general path below gives).
        if plain and type(row) is dict:
            text = row.get(text_field)
            if type(text) is str and text.strip():
                if id_field is None:
                    yield index, f"{split}-{index}", text
                    continue
                rid = row.get(id_field)
                if type(rid) is int or (type(rid) is str and rid.strip()):
                    yield index, str(rid), text
                    continue
        try:
            if row is None:
                raise Skip(INVALID_ROW)
            text = extract_row(row, text_field, mode)
            rid = row_id(row, id_field, split, index)
        except Skip as s:
            skipped[s.reason] = skipped.get(s.reason, 0) + 1
            continue
        yield index, rid, text
