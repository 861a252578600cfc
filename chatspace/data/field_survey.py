"""Which fields of a sample are worth embedding, ranked the way a person would pick them.

Candidates are the columns and the paths into nested values (`meta.title`, `choices.0.turns`), each
classed by what its sampled values hold: a conversation, free text, a list of strings, or something
not to embed — short categorical labels (`category`) and id-like values (`q-00081`, hashes), which are
offered as `--id-field` candidates instead. Ranking: fields that give text in (nearly) as many sampled rows
as the best-covered field first — a long field most rows lack (MT-bench's `reference`, in 30 of 80
questions) is no substitute for one every row has (`turns`); then conversations, then long free text,
then lists of strings, then short free text; within a class, longer text first.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter
from typing import Any

import orjson

from chatspace.config import EXTRACT_MODES
from chatspace.data.extract import MissingField, Skip, extract_text, lookup

CONVERSATION_MODES = tuple(m for m in EXTRACT_MODES if m not in ("text", "each-turn"))  # one text a row
MAX_DEPTH = 4  # dots in a candidate path
MAX_PATHS = 64  # candidate paths looked at, at most
LONG_TEXT_CHARS = 80  # mean length from which free text counts as long
LABEL_MAX_CHARS = 40  # labels are short ...
LABEL_MAX_DISTINCT = 0.5  # ... and repeat: at most this fraction of the sampled values are distinct
ID_MAX_CHARS = 100
# A field counts as well covered when it gives text in at least this fraction of the rows that the
# best-covered field does; fields that fall short rank after all that reach it.
WELL_COVERED = 0.9
_RANK = {"conversation": 0, "long-text": 1, "list": 2, "text": 3}


def as_conversation(value: Any) -> list | None:
    """The message list when `value` is conversation-shaped (role/content or from/value dicts)."""
    if isinstance(value, str):
        s = value.strip()
        if not s.startswith("["):
            return None
        try:
            value = orjson.loads(s)
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list | tuple) or not value:
        return None
    if all(
        isinstance(m, dict) and (("role" in m and "content" in m) or ("from" in m and "value" in m))
        for m in value
    ):
        return list(value)
    return None


def length_stats(values: list[int]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 1),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def candidate_paths(rows: list[dict], columns: list[str]) -> list[str]:
    """Columns, then paths into their nested values: struct keys, and element 0 of lists of structs."""
    out: list[str] = []
    for col in columns:
        _walk_paths(col, [r[col] for r in rows if col in r], 0, out)
    return out[:MAX_PATHS]


def _walk_paths(path: str, values: list[Any], depth: int, out: list[str]) -> None:
    out.append(path)
    values = [v for v in values if v is not None]
    if depth >= MAX_DEPTH or not values or len(out) >= MAX_PATHS:
        return
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v if isinstance(k, str)))
        for key in keys:
            _walk_paths(f"{path}.{key}", [v[key] for v in values if key in v], depth + 1, out)
    elif all(isinstance(v, list) and v and isinstance(v[0], dict) for v in values) and not any(
        as_conversation(v) for v in values
    ):
        _walk_paths(f"{path}.0", [v[0] for v in values], depth + 1, out)


def _values_at(rows: list[dict], path: str) -> list[Any]:
    present = []
    for r in rows:
        with contextlib.suppress(MissingField):
            present.append(lookup(r, path))
    return present


def _is_string_list(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(x, str | None) for x in v)


def _usable_lengths(values: list[Any], mode: str) -> list[int]:
    lengths = []
    for v in values:
        with contextlib.suppress(Skip):
            lengths.append(len(extract_text(v, mode)))
    return lengths


def _text_usage(values: list[Any], sampled: int) -> dict[str, Any]:
    """How many of the sampled rows give text as a plain field, and how long it is."""
    lengths = _usable_lengths(values, "text")
    return {
        "usable": len(lengths),
        "fraction": round(len(lengths) / sampled, 3),
        "chars": length_stats(lengths),
    }


def survey_fields(
    rows: list[dict], columns: list[str], features: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(text fields, best first; fields left out, with why) of the sampled rows."""
    fields, left_out = [], []
    paths = candidate_paths(rows, columns)
    for path in paths:
        if f"{path}.messages" in paths:  # {"messages": [...], ...}: offered as path.messages itself
            continue
        present = _values_at(rows, path)
        values = [v for v in present if v is not None]
        if not values:
            continue
        base = {
            "field": path,
            "type": features.get(path, {}).get("type"),
            "sampled": len(rows),
            "nulls": len(present) - len(values),
            "missing": len(rows) - len(present),
        }
        conversations = [c for v in values if (c := as_conversation(v)) is not None]
        strings = [v for v in values if isinstance(v, str)]
        lists = [v for v in values if _is_string_list(v)]
        if conversations and len(conversations) * 2 >= len(values):
            fields.append(_conversation_field(base, values, conversations, bool(strings), len(rows)))
        elif lists and len(lists) * 2 >= len(values):
            why = _not_text_reason(["\n\n".join(x for x in v if x) for v in lists])
            if why and why.startswith("short labels"):  # tags: ["docs", "python"] on every row
                left_out.append({"field": path, "why": why})
                continue
            fields.append(
                {
                    **base,
                    "kind": "list",
                    "lists": len(lists),
                    "strings_per_row": length_stats([len(v) for v in lists]),
                    **_text_usage(values, len(rows)),
                }
            )
        elif strings and len(strings) * 2 >= len(values):
            why = _not_text_reason(strings)
            if why:
                left_out.append({"field": path, "why": why})
                continue
            fields.append({**base, "kind": "text", "strings": len(strings), **_text_usage(values, len(rows))})
    best_coverage = max((coverage(f) for f in fields), default=0)
    fields.sort(key=lambda f: _rank(f, best_coverage))
    return fields, left_out


def best_extract(field: dict[str, Any]) -> str:
    """The --extract mode to suggest for a conversation field: first-assistant where any row has one."""
    found = {m: field["extract"][m]["found"] for m in CONVERSATION_MODES}
    return "first-assistant" if found["first-assistant"] else max(found, key=found.__getitem__)


def usable_rows(field: dict[str, Any]) -> int:
    """How many sampled rows give text to embed from this field (with its suggested --extract)."""
    if field["kind"] == "conversation":
        return field["extract"][best_extract(field)]["found"]
    return field.get("usable", 0)


def coverage(field: dict[str, Any]) -> float:
    return usable_rows(field) / field["sampled"] if field["sampled"] else 0.0


def _rank(field: dict[str, Any], best_coverage: float) -> tuple[bool, int, float]:
    mean = (field.get("chars") or {}).get("mean") or 0
    kind = field["kind"]
    if kind == "conversation":
        mean = (field["extract"]["first-assistant"].get("chars") or {}).get("mean") or 0
    elif kind == "text" and mean >= LONG_TEXT_CHARS:
        kind = "long-text"
    return coverage(field) < WELL_COVERED * best_coverage, _RANK[kind], -mean


def _not_text_reason(strings: list[str]) -> str | None:
    """Why string values are not worth embedding (None: they are)."""
    lengths = [len(s) for s in strings]
    distinct = len(set(strings))
    if len(strings) < 2:
        return None
    no_spaces = all(s.strip() and not any(c.isspace() for c in s) for s in strings)
    if distinct == len(strings) and max(lengths) <= ID_MAX_CHARS and no_spaces:
        return "id-like (distinct, no spaces)"
    if distinct <= max(1, LABEL_MAX_DISTINCT * len(strings)) and statistics.fmean(lengths) < LABEL_MAX_CHARS:
        return f"short labels ({distinct} distinct in {len(strings)} rows)"
    return None


def _conversation_field(
    base: dict[str, Any], values: list[Any], conversations: list[list], json_string: bool, n_rows: int
) -> dict[str, Any]:
    modes = {}
    for mode in CONVERSATION_MODES:
        lengths = _usable_lengths(values, mode)
        modes[mode] = {
            "found": len(lengths),
            "fraction": round(len(lengths) / n_rows, 3),
            "chars": length_stats(lengths),
        }
    roles: Counter[str] = Counter()
    for conv in conversations:
        roles.update(str(m.get("role", m.get("from"))) for m in conv)
    message_chars = [
        len(text)
        for conv in conversations
        for m in conv
        if isinstance(text := m.get("content", m.get("value")), str)
    ]
    return {
        **base,
        "kind": "conversation",
        "conversations": len(conversations),
        "json_string": json_string,
        "turns": length_stats([len(c) for c in conversations]),
        "roles": dict(roles.most_common()),
        # What --extract each-turn would make of them: one row per message.
        "messages": {"count": len(message_chars), "chars": length_stats(message_chars)},
        "extract": modes,
    }


def id_candidates(rows: list[dict], columns: list[str]) -> list[str]:
    """Fields (nested ones too) whose sampled values are all present, scalar and distinct."""
    if len(rows) < 2:
        return []
    out = []
    for path in candidate_paths(rows, columns):
        values = []
        for r in rows:
            try:
                values.append(lookup(r, path))
            except MissingField:
                break
        if len(values) < len(rows):
            continue
        if any(v is None or isinstance(v, bool | float | list | dict) for v in values):
            continue
        if any(isinstance(v, str) and (not v.strip() or len(v) > 200) for v in values):
            continue
        if len(set(map(str, values))) == len(values):
            out.append(path)
    return out
