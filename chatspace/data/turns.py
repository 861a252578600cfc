"""One row per message (`--extract each-turn`) and the `--roles` filter over a conversation's turns.

A conversation row becomes one row per message whose role is kept and whose text is not empty: id
`{id}:{turn}` (turn: the message's index in the conversation, counting every message), and
`metadata.turn = {index, role, count}` (count: the conversation's messages). Under `all-turns`,
`--roles` keeps only the kept roles' messages in the joined text. Other modes are chatspace.data.extract's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from chatspace.data.extract import (
    _ROLE_LABELS,
    EMPTY,
    NO_MATCHING_TURN,
    Skip,
    conversation,
    extract_rows,
    row_id,
)

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
    id_field: str | None,
    split: str,
    roles: str | None,
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
