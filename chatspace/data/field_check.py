"""The text field checked on a few rows before any worker starts (well under a second), so a wrong
`--text-field` (a number column, a typo inside a nested path) is one line at once, not a failed run
after every model has loaded."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chatspace.data.fields import MissingField, columns_for, lookup
from chatspace.data.turns import extract_items
from chatspace.errors import UsageError

SAMPLE_ROWS = 64


def _what(values: list[Any]) -> str:
    kinds = sorted({type(v).__name__ for v in values})
    examples = ", ".join(repr(v)[:30] for v in values[:3])
    if set(kinds) <= {"int", "float", "bool"}:
        return f"numbers (e.g. {examples})"
    if kinds == ["list"]:
        inner = sorted({type(x).__name__ for v in values for x in v}) or ["nothing"]
        return f"lists of {', '.join(inner)}"
    if kinds == ["dict"]:
        keys = sorted({str(k) for v in values for k in v})[:8]
        return f"objects with keys {', '.join(keys)}"
    return f"values of type {', '.join(kinds)} (e.g. {examples})"


def _deepest(row: dict, name: str) -> str | None:
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


def check_text_values(source: Any, text_field: str, mode: str, roles: str | None = None) -> None:
    """UsageError when none of the dataset's first SAMPLE_ROWS rows gives text to embed from
    `text_field` under `mode` (and `--roles`), naming what the field holds there; rows that are null or
    empty are left to the run (it counts them by reason)."""

    if not source.num_rows:
        return
    rows = source.read(list(range(min(SAMPLE_ROWS, source.num_rows))), columns_for(text_field))
    reasons: Counter[str] = Counter()
    for index, row in enumerate(rows):
        why: dict[str, int] = {}  # extracted as a worker would: every --extract mode, --roles
        items = extract_items(
            [index], [row], text_field=text_field, mode=mode, id_field=None, split="check", roles=roles,
            skipped=why, counts={},
        )  # fmt: skip
        if next(items, None) is not None:
            return  # one usable row is enough: the run goes ahead
        reasons.update(why)
    if set(reasons) <= {"null", "empty", "invalid_row"}:
        return  # nulls and blanks: the run counts them, and says so if it finds nothing else
    counted = ", ".join(f"{k}: {v}" for k, v in reasons.most_common())
    dicts = [r for r in rows if isinstance(r, dict)]
    if reasons.get("missing_field") == sum(reasons.values()):
        where = next((w for w in (_deepest(r, text_field) for r in dicts) if w), None)
        raise UsageError(
            f"--text-field {text_field!r} leads nowhere in the {len(rows)} rows sampled"
            + (f" ({where})" if where else "")
            + "; check the path (`chatspace describe-dataset` lists the fields)"
        )
    values = []
    for r in dicts:
        try:
            value = lookup(r, text_field)
        except MissingField:
            continue
        if value is not None:
            values.append(value)
    if set(reasons) == {"no_matching_turn"}:
        turn = {"first-assistant": "an assistant turn", "first-user": "a user turn"}.get(
            mode, f"a message of --roles {roles}" if roles else "a message"
        )
        raise UsageError(
            f"--text-field {text_field!r} holds conversations, but none of the {len(rows)} rows sampled has "
            f"{turn} to embed ({counted}); use another --extract, or check the field"
        )
    holds = _what(values) if values else "nothing usable"
    extract = f" with --extract {mode}" if mode != "text" else ""
    raise UsageError(
        f"--text-field {text_field!r} holds {holds}: none of the {len(rows)} rows sampled gives text to "
        f"embed{extract} ({counted}); name a text field (`chatspace describe-dataset` lists them)"
    )
