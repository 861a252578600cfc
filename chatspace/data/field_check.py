"""A source's fields checked before any worker starts (well under a second), so a wrong `--text-field`
or `--id-field` (a column the data lacks, a number column, a typo inside a nested path, plain text
where conversations are wanted) is one line at once, not a failed run after every model has loaded.

`check_source_fields` is the one entry: the columns, then a few rows read and extracted as a worker
would (chatspace.data.extract), naming what the field holds when none gives text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from chatspace.config import DataConfig
from chatspace.data.extract import (
    MissingField,
    Skip,
    _messages,
    columns_for,
    extract_items,
    lookup,
    top_column,
    where_path_stops,
)
from chatspace.errors import UsageError

SAMPLE_ROWS = 64


def check_source_fields(source: Any, data: DataConfig) -> None:
    """UsageError, before any work starts, when the run's data options cannot give text from `source`
    (a chatspace.data.sources.Source): a field it lacks, a turn extraction over a field without
    conversations, a text field whose first rows give nothing to embed."""
    check_fields(source.columns, data.text_field, data.id_field, data.dataset, flat=source.spec.flat_columns)
    check_holds_conversations(source, data.text_field, data.extract)
    check_text_values(source, data.text_field, data.extract, data.roles)


def check_fields(
    columns: Iterable[str], text_field: str, id_field: str | None, dataset: str, *, flat: bool = False
) -> None:
    """A field the dataset does not have at all is a usage error, before any work starts.

    A dotted name passes when its leading part is a column (rows lacking the rest are skipped as
    missing_field); `flat` sources (CSV) have no nested values, so there a name must be a column.
    """
    cols = sorted(set(columns))
    for flag, name in (("--text-field", text_field), ("--id-field", id_field)):
        if name is None or name in cols:
            continue
        have = ", ".join(cols[:20]) or "none"
        if "." in name and flat:
            raise UsageError(
                f"{flag} {name!r}: CSV columns are flat text, so a dotted path cannot reach inside one, "
                f"and {dataset} has no column of that name (columns: {have})"
            )
        if top_column(name, cols) is None:
            what = "a column or a dotted path into one" if "." in name else "a column"
            raise UsageError(f"{flag} {name!r} is not {what} of {dataset} (columns: {have})")


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
        where = next((w for w in (where_path_stops(r, text_field) for r in dicts) if w), None)
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


# --- checked before a run: does the field hold conversations at all? -------------------------------

CONVERSATION_SAMPLE_ROWS = 32


def _what_it_holds(values: list[Any]) -> str:
    kinds = {type(v).__name__ for v in values}
    if kinds == {"str"}:
        example = " ".join(values[0].split())
        example = example if len(example) <= 60 else example[:57] + "..."
        return f"plain text (e.g. {example!r})"
    if kinds <= {"int", "float", "bool"}:
        return "numbers"
    if kinds == {"dict"}:
        keys = sorted({k for v in values for k in v})[:6]
        return f"objects with keys {', '.join(map(str, keys))}"
    if kinds <= {"list", "tuple"}:
        inner = sorted({type(x).__name__ for v in values for x in v}) or ["nothing"]
        return f"lists of {', '.join(inner)}"
    return f"values of type {', '.join(sorted(kinds))}"


def check_holds_conversations(source: Any, text_field: str, mode: str) -> None:
    """Refuse a turn extraction (`first-assistant`, `first-user`, `all-turns`) up front when none of the
    dataset's first rows holds a conversation in `text_field`: every row would be skipped otherwise.

    `source` is a chatspace.data.sources.Source (its `num_rows` and `read`).
    """
    if mode == "text" or not source.num_rows:
        return
    rows = source.read(list(range(min(CONVERSATION_SAMPLE_ROWS, source.num_rows))), columns_for(text_field))
    values = []
    for r in rows:
        if isinstance(r, dict):
            try:
                values.append(lookup(r, text_field))
            except MissingField:
                continue
    values = [v for v in values if v is not None and v != [] and v != ""]
    if not values:
        return  # nothing but nulls and empty values here: the run counts them by reason
    for value in values:
        try:
            _messages(value)
            return
        except Skip:
            continue
    raise UsageError(
        f"--extract {mode}: field {text_field!r} holds {_what_it_holds(values)}, not conversations, in "
        f"the {len(rows)} rows sampled; use --extract text, or --text-field naming the conversation column"
    )
