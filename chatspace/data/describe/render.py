"""The printed summary of a dataset description, ending with the `embed-hf` line to run next."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from chatspace.data.describe.findings import plural
from chatspace.data.field_survey import CONVERSATION_MODES, best_extract, usable_rows


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def _n(x: float | int) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _stats(s: dict[str, Any] | None, unit: str) -> str:
    if not s:
        return f"no {unit}"
    return f"{unit} mean {_n(s['mean'])}, median {_n(s['median'])}, max {_n(s['max'])}"


def _table(rows: list[tuple[str, ...]], right: set[int] = frozenset(), indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _suggest(info: dict[str, Any]) -> list[str]:
    """`embed-hf` command lines for the text fields, best first (at most three), each followed by a shell
    comment saying how many sampled rows give text from that field."""
    q = shlex.quote
    dataset = f"--dataset {q(info['name'])}"
    if info.get("source") == "huggingface" and info.get("subset") and info.get("subset") != "default":
        dataset += f" --subset {q(info['subset'])}"
    split = info.get("features_split")
    if split and split != "train":
        dataset += f" --split {q(split)}"
    candidates = info.get("id_candidates", [])
    id_like = {f["field"] for f in info.get("not_text_fields", []) if f["why"].startswith("id-like")}
    preferred = [c for c in candidates if re.search(r"(^|[_.])(id|uid|hash|uuid)$", c.lower())]
    id_field = (preferred or [c for c in candidates if c in id_like] or [None])[0]
    id_part = f" --id-field {q(id_field)}" if id_field else ""
    out = []
    for f in info.get("text_fields", []):
        if f["field"] == id_field:
            continue
        usable = usable_rows(f)
        if not usable:
            continue
        field = f"--text-field {q(f['field'])}"
        if f["kind"] == "conversation":
            extract = best_extract(f)
            out.append(
                f"chatspace embed-hf {dataset} {field} --extract {extract}{id_part}  {_coverage_note(usable, f['sampled'])}"
            )
            if (f.get("messages") or {}).get("count"):  # per message, per role, per turn
                out.append(f"chatspace embed-hf {dataset} {field} --extract each-turn{id_part}")
            continue
        out.append(f"chatspace embed-hf {dataset} {field}{id_part}  {_coverage_note(usable, f['sampled'])}")
    return out[:3]


def _coverage_note(usable: int, sampled: int) -> str:
    share = f"{usable / sampled:.0%}" if sampled else "?"
    return f"# text in {usable:,} of {plural(sampled, 'sampled row')} ({share})"


def _each_turn(messages: dict[str, Any] | None) -> str:
    """What --extract each-turn would make of the sampled conversations."""
    if not messages or not messages.get("count"):
        return ""
    return f"; each-turn: {messages['count']:,} messages, " + _stats(messages["chars"], "chars")


def _header_lines(info: dict[str, Any], path: Path | None) -> list[str]:
    """What the dataset is and where it lives: the Hub repo (files, size, revision, license, subsets)
    or the local file."""
    lines = []
    if info["source"] == "huggingface":
        hub = info.get("hub", {})
        head = f"{info['name']} (Hugging Face dataset"
        if info.get("subset"):
            head += f", subset {info['subset']}"
        lines.append(head + ")")
        lines.append(
            f"  repo: {_num(hub.get('files'))} files, {_human_bytes(hub.get('files_bytes'))}"
            + (f", revision {hub['sha'][:12]}" if hub.get("sha") else "")
            + (f", license {hub['license']}" if hub.get("license") else "")
        )
        if info.get("subsets"):
            lines.append(f"  subsets: {', '.join(info['subsets'])}")
    else:
        lines.append(f"{info['name']} (local {info['kind']}: {info['location']})")
    if path is not None:
        lines.append(f"  metadata written to {path}")
    return [*lines, ""]


def _split_lines(info: dict[str, Any]) -> list[str]:
    table = [("split", "rows", "files", "size")]
    for name, s in info["splits"].items():
        table.append((name, _num(s.get("rows")), _num(len(s.get("files", []))), _human_bytes(s.get("bytes"))))
    return [*_table(table, right={1, 2, 3}), ""]


def _feature_lines(info: dict[str, Any]) -> list[str]:
    """Each column's type, with how often the sample lacks it or holds null."""
    feats = info.get("features") or {}
    if not feats:
        return []
    rows = []
    for col, f in feats.items():
        extra = []
        if f.get("missing"):
            extra.append(f"missing in {plural(f['missing'], 'sampled row')}")
        if f.get("nulls"):
            extra.append(f"{f['nulls']:,} null")
        if f.get("note"):
            extra.append(f["note"])
        rows.append((col, f["type"] + (f"  ({'; '.join(extra)})" if extra else "")))
    return [f"features ({info.get('features_split')}):", *_table(rows), ""]


def _text_field_row(f: dict[str, Any]) -> tuple[str, str, str]:
    """(field, kind, what the sample holds) for one text field, as the table prints it."""
    if f["kind"] == "conversation":
        modes = ", ".join(f"{m} {f['extract'][m]['fraction']:.0%}" for m in CONVERSATION_MODES)
        turns = f["turns"]
        desc = (
            f"turns mean {_n(turns['mean'])}, max {_n(turns['max'])}; text found: {modes}; "
            + _stats(f["extract"]["first-assistant"]["chars"], "first-assistant chars")
            + _each_turn(f.get("messages"))
        )
        return f["field"], "conversation" + (" (JSON text)" if f.get("json_string") else ""), desc
    if f["kind"] == "list":
        per_row = f["strings_per_row"]
        desc = (
            f"{_n(per_row['mean'])} strings per row (max {_n(per_row['max'])}), joined: "
            f"{_stats(f['chars'], 'chars')}; usable {f['fraction']:.0%}"
        )
        return f["field"], "list of strings", desc
    return f["field"], "text", f"{_stats(f['chars'], 'chars')}; usable {f['fraction']:.0%}"


def _text_field_lines(info: dict[str, Any]) -> list[str]:
    """The sampled rows' text fields, the fields not worth embedding, and the possible id fields."""
    sample = info.get("sample") or {}
    if not sample:
        return []
    fields = info.get("text_fields") or []
    of = f" of {_num(sample['of'])}" if sample.get("of") is not None else ""
    lines = [f"text fields (sample: {sample['rows']:,}{of} rows of {sample['split']}, {sample['method']}):"]
    if not fields:
        lines.append("  none: no text, list-of-strings or conversation-shaped field")
    else:
        lines.extend(_table([_text_field_row(f) for f in fields]))
    if info.get("not_text_fields"):
        skipped = ", ".join(f"{f['field']} ({f['why']})" for f in info["not_text_fields"])
        lines.append(f"  not worth embedding: {skipped}")
    if info.get("id_candidates"):
        lines.append(f"  unique in the sample (possible --id-field): {', '.join(info['id_candidates'])}")
    return [*lines, ""]


def _closing_lines(info: dict[str, Any]) -> list[str]:
    """The notes, then the command lines to run: other fields first, the best field last."""
    lines = []
    if info.get("notes"):
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in info["notes"])
        lines.append("")
    suggestions = _suggest(info)
    if len(suggestions) > 1:
        lines.append("other fields to embed:")
        lines.extend(f"  {s}" for s in suggestions[1:])
    if suggestions:  # the closing line: the best field
        lines.append("to embed:")
        lines.append(f"  {suggestions[0]}")
    return lines


def render(info: dict[str, Any], path: Path | None = None) -> str:
    """The readable summary of an info dict (as `download_dataset` writes it)."""
    lines = [
        *_header_lines(info, path),
        *_split_lines(info),
        *_feature_lines(info),
        *_text_field_lines(info),
        *_closing_lines(info),
    ]
    return "\n".join(lines).rstrip()
