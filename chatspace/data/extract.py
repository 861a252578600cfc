"""Turn one row into the exact texts to embed, or a reason to skip the row.

Field names may reach inside a row: `meta.category`, `choices.0.turns`, `conversation.1.content`. A
name is first looked up as a column of its own (a column named "meta.category" wins when it exists);
otherwise it is a dotted path: the longest leading part that is a column, then one step per dot: a key
of a mapping (struct), or an integer index into a list (negative counts from the end).

Conversations come in two shapes: OpenAI-style messages (`role`/`content`, content possibly a list of
`{"type": "text", "text": ...}` parts) and ShareGPT-style (`from`/`value`, `human`/`gpt`). A plain list
of strings (MT-bench's `turns`) is one text: its strings joined by a blank line, in order.

`--extract each-turn` makes one row per message whose role is kept and whose text is not empty: id
`{id}:{turn}` (turn: the message's index in the conversation, counting every message), and
`metadata.turn = {index, role, count}` (count: the conversation's messages). Under `all-turns`,
`--roles` keeps only the kept roles' messages in the joined text. `extract_items` is the one entry a
worker (and every check that extracts as a worker would) calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from chatspace.config.data import ASSISTANT_ROLE_NAMES, USER_ROLE_NAMES

# --- field names that reach inside a row ----------------------------------------------------------

_MISSING = object()


class MissingField(LookupError):
    """The row has no value at this path."""


def columns_for(name: str) -> list[str]:
    """The top-level columns a lookup of `name` may need: the name itself and each dotted prefix."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(len(parts), 0, -1)]


def top_column(name: str, columns: Iterable[str]) -> str | None:
    """The column a lookup of `name` starts from, given the dataset's columns (None: none fits)."""
    cols = set(columns)
    return next((c for c in columns_for(name) if c in cols), None)


def lookup(row: dict, name: str) -> Any:
    """The value at `name` in `row`; raises MissingField when the path leads nowhere."""
    if name in row:
        return row[name]
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:k])
        if head in row:
            value = _walk(row[head], parts[k:])
            if value is _MISSING:
                raise MissingField(name)
            return value
    raise MissingField(name)


def _walk(value: Any, steps: list[str]) -> Any:
    for step in steps:
        if value is None:  # a null part-way down: the value is null, not missing
            return None
        if isinstance(value, dict):
            value = value.get(step, _MISSING)
        elif isinstance(value, list | tuple):
            try:
                value = value[int(step)]
            except (ValueError, IndexError):
                return _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return value
    return value


def where_path_stops(row: dict, name: str) -> str | None:
    """Where a dotted path stops leading anywhere: `request.mesages` -> the keys `request` holds."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value = lookup(row, ".".join(parts[:cut]))
        except MissingField:
            continue
        if isinstance(value, dict):
            return f"{'.'.join(parts[:cut])} holds keys {', '.join(sorted(map(str, value))[:8])}"
        if isinstance(value, list):
            return f"{'.'.join(parts[:cut])} is a list of {len(value)}"
        return f"{'.'.join(parts[:cut])} is a {type(value).__name__}"
    return None


# --- one row's text ---------------------------------------------------------------------------------

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


# --- the rows to embed: one per row, or one per message (each-turn, --roles) ------------------------

#: (global row index, row id, text, metadata to add or None)
Item = tuple[int, str, str, dict[str, Any] | None]


def _kept(role: str | None, roles: set[str] | None) -> bool:
    return roles is None or (role or "unknown") in roles


def _has_text(text: str | None) -> bool:
    return text is not None and bool(text.strip())


def joined_turns(messages: list[tuple[str | None, str | None]], roles: set[str] | None) -> str:
    """`all-turns` text: `Role: text` of each kept message, a blank line between them."""
    lines = [
        f"{_ROLE_LABELS.get(role or '', (role or 'unknown').capitalize())}: {text}"
        for role, text in messages
        if _has_text(text) and _kept(role, roles)
    ]
    if not lines:
        raise Skip(
            NO_MATCHING_TURN if roles is not None and any(_has_text(t) for _, t in messages) else EMPTY
        )
    return "\n\n".join(lines)


def extract_items(
    indices: Iterable[int],
    rows: Iterable[dict | None],
    *,
    text_field: str,
    mode: str,
    roles: str | None,
    id_field: str | None,
    split: str,
    skipped: dict[str, int],
    counts: dict[str, int],
) -> Iterator[Item]:
    """The rows to embed from the unit's source rows; skipped source rows are counted in `skipped` by
    reason, and `counts` gets `messages` (rows the conversations became) and `messages_left_out` by why
    (`empty`, `other_role`)."""
    wanted = set(roles.split(",")) if roles else None
    if mode not in ("each-turn", "all-turns") or (mode == "all-turns" and wanted is None):
        for index, rid, text in extract_rows(
            indices, rows, text_field=text_field, mode=mode, id_field=id_field, split=split, skipped=skipped
        ):
            yield index, rid, text, None
        return
    for index, row in zip(indices, rows, strict=True):
        try:
            messages = conversation(row, text_field)
            rid = row_id(row, id_field, split, index)
            if mode == "all-turns":
                yield index, rid, joined_turns(messages, wanted), None
                continue
            kept = [
                (turn, role, text)
                for turn, (role, text) in enumerate(messages)
                if _has_text(text) and _kept(role, wanted)
            ]
            if not kept:
                raise Skip(
                    NO_MATCHING_TURN
                    if wanted is not None and any(_has_text(t) for _, t in messages)
                    else EMPTY
                )
        except Skip as s:
            skipped[s.reason] = skipped.get(s.reason, 0) + 1
            continue
        empty = sum(1 for _, text in messages if not _has_text(text))
        _add(counts, "messages", len(kept))
        _add(counts, "messages_empty", empty)
        _add(counts, "messages_other_roles", len(messages) - empty - len(kept))
        for turn, role, text in kept:
            yield (
                index,
                f"{rid}:{turn}",
                text,
                {"turn": {"index": turn, "role": role, "count": len(messages)}},
            )


def _add(counts: dict[str, int], key: str, n: int) -> None:
    if n:
        counts[key] = counts.get(key, 0) + n
